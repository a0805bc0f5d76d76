"""Lookups through the API: concurrent requests searched together (pipeline/api/coalescer.py) get
the answers each would get alone, an error stays with its request; and the API restarted from
its view snapshot (one process, or several sharing the view) answers as before and has the bank
changes made while it was down."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from ops.kafka.broker import free_port
from pipeline import topics as T
from pipeline.api.coalescer import LookupCoalescer
from pipeline.banks import bank_signal_record
from pipeline.client import Client
from pipeline.config import Settings
from pipeline.matching import match_batch
from pipeline.state.snapshot import snapshot_path
from tests.pipeline_env import (
    ApiProcess, checked, conformed_bank, create_topics, flip, hashed, pipeline_env, random_pdq, settings_from,
    view_with,
)

TOKEN = "lookup-token"
CODES = [random_pdq() for _ in range(40)]


def comparable(record: dict) -> dict:
    """A match record without its timestamp."""
    return {k: v for k, v in record.items() if k != "matched_at"}


def queries() -> list[dict]:
    """Exact and near copies of banked codes (some past the narrow bank's distance), and random codes."""
    out = []
    for i, code in enumerate(CODES):
        out.append(hashed(f"exact-{i}", code))
        out.append(hashed(f"near-{i}", flip(code, i % 40)))
        out.append(hashed(f"random-{i}", random_pdq()))
    return out


@pytest.fixture
def view():
    return view_with((conformed_bank("WIDE"), CODES), (conformed_bank("NARROW", distances={"pdq": 8}), CODES[:20]))


def test_concurrent_lookups_get_the_answers_each_would_get_alone(view):
    settings = Settings()
    coalescer = LookupCoalescer(view, settings)
    wanted = queries()

    async def all_at_once() -> list[dict]:
        return await asyncio.gather(*(coalescer.match(h, sample=i % 3 != 0) for i, h in enumerate(wanted)))

    answers = asyncio.run(all_at_once())
    coalescer.stop()
    for i, (upload, answer) in enumerate(zip(wanted, answers)):
        [alone] = match_batch([upload], view, settings, sample=i % 3 != 0)
        assert comparable(answer) == comparable(alone), upload["content_id"]
    assert any(a["matches"] for a in answers) and any(not a["matches"] for a in answers)
    assert coalescer.lookups == len(wanted) and coalescer.batches < len(wanted)  # searched together


def test_a_failing_lookup_fails_alone(view):
    coalescer = LookupCoalescer(view, Settings())
    good = queries()[:30]
    bad = hashed("bad", "zz" * 32)  # not hex: the index refuses it (the routes check signals before)

    async def mixed() -> list:
        return await asyncio.gather(*(coalescer.match(h) for h in good[:15] + [bad] + good[15:]),
                                    return_exceptions=True)

    answers = asyncio.run(mixed())
    coalescer.stop()
    assert isinstance(answers[15], ValueError)
    rest = answers[:15] + answers[16:]
    assert [a["content_id"] for a in rest] == [h["content_id"] for h in good]
    assert coalescer.batches > 1  # the batch that failed was answered one lookup at a time


def test_a_request_that_goes_away_leaves_the_others_answered(view):
    coalescer = LookupCoalescer(view, Settings())
    wanted = queries()[:10]

    async def one_cancelled() -> list:
        tasks = [asyncio.create_task(coalescer.match(h)) for h in wanted]
        await asyncio.sleep(0)  # all queued
        tasks[3].cancel()
        return await asyncio.gather(*tasks, return_exceptions=True)

    answers = asyncio.run(one_cancelled())
    coalescer.stop()
    assert isinstance(answers[3], asyncio.CancelledError)
    assert [a["content_id"] for i, a in enumerate(answers) if i != 3] == [h["content_id"] for i, h in enumerate(wanted) if i != 3]


# -- over HTTP, on the real broker ------------------------------------------------------------------
def raw_lookup(base: str, code: str) -> requests.Response:
    """One request on a connection of its own (several API processes share the port: each may answer)."""
    return requests.get(f"{base}/m/raw_lookup", params={"signal_type": "pdq", "signal": code, "include_distance": "1"},
                        timeout=30)


def answers_of(base: str, codes: list[str]) -> list[list[dict]]:
    with ThreadPoolExecutor(16) as pool:
        return [checked(r)["matches"] for r in pool.map(lambda c: raw_lookup(base, c), codes)]


@pytest.mark.kafka
@pytest.mark.parametrize("processes, event_loop", [(1, "asyncio"), (2, "uvloop")])
def test_the_api_restarts_from_its_snapshot_with_the_changes_made_meanwhile(kafka_broker, tmp_path, processes,
                                                                             event_loop):
    env = pipeline_env(kafka_broker.bootstrap, tmp_path / "state", HMAS_API_TOKEN=TOKEN,
                       HMAS_API_PROCESSES=str(processes), HMAS_API_EVENT_LOOP=event_loop)
    create_topics(env)
    settings = settings_from(env)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    port = free_port()
    api = ApiProcess(env, tmp_path / "api.log", port).start()
    checked(requests.post(f"{api.base}/c/banks", json={"name": "SNAP"}, headers=auth), 201)
    ids = [checked(requests.post(f"{api.base}/c/bank/SNAP/signal", json={"pdq": code}, headers=auth))["id"]
           for code in CODES[:12]]
    probes = CODES[:12] + [flip(c, 5) for c in CODES[:12]] + [random_pdq() for _ in range(12)]
    probes += ["0" * 63, "not hex"]  # a bad hash among concurrent good ones is still a 400
    with ThreadPoolExecutor(16) as pool:
        responses = list(pool.map(lambda c: raw_lookup(api.base, c), probes))
    assert [r.status_code for r in responses[-2:]] == [400, 400]
    # lookups are the lean front's to answer (pipeline/api/lean_front.py), errors too; the rest aiohttp's
    assert {r.headers["Server"] for r in responses} == {"hma-streams"}
    assert requests.get(f"{api.base}/c/banks", headers=auth).headers["Server"] != "hma-streams"
    before = [r.json()["matches"] for r in responses[:-2]]
    assert before[:12] == [[{"bank_content_id": i, "distance": "0"}] for i in ids]
    assert before[12:24] == [[{"bank_content_id": i, "distance": "5"}] for i in ids]
    api.stop()
    assert snapshot_path(settings, "api").is_file()

    client = Client(settings)  # while the API is down: one signal added, one removed
    added = CODES[20]
    client.produce(T.BANK_SIGNALS, *bank_signal_record("SNAP", 999, "pdq", added))
    key, _ = bank_signal_record("SNAP", ids[0], "pdq", CODES[0])
    client.produce(T.BANK_SIGNALS, key, None)
    client.flush()

    api = ApiProcess(env, tmp_path / "api.log", port).start()
    try:
        assert "bank view loaded from snapshot" in (tmp_path / "api.log").read_text()
        for _ in range(3):  # new connections each time: with several processes, each answers some
            after = answers_of(api.base, probes[:-2] + [added])
            assert after[0] == [] and after[12] == []  # the removed signal, and a near copy of it
            assert after[1:12] == before[1:12] and after[13:36] == before[13:36]
            assert after[36] == [{"bank_content_id": 999, "distance": "0"}]
    finally:
        api.stop()
