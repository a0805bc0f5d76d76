"""NCMEC, StopNCII and ThreatExchange through python-threatexchange's own clients, pointed at
servers on loopback (tests/fake_exchanges.py), fetched and written back through the real broker:
pagination, a rate limit, a malformed answer, an expired credential, and every write call
received once despite retries; sharing a bank, with what it held before sharing was switched on."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any, Callable

import pytest
import requests

from connectors.exchanges.config import exchange_record
from connectors.exchanges.control import configure, dead_writes, produce
from connectors.exchanges.fetcher import ExchangeFetcher
from connectors.exchanges.outbox import outbox_record, share_key
from connectors.exchanges.retry import backoff_s
from connectors.exchanges.writer import ExchangeWriter
from ops.kafka.broker import free_port
from pipeline import topics as T
from pipeline.banks import bank_record, bank_signal_record
from pipeline.state.log_reader import read_latest, read_to_end
from tests.fake_exchanges import FakeNCMEC, FakeStopNCII, FakeThreatExchange, NCMECEntry, StopNCIIHash
from tests.test_exchange_fetcher import bank_signals, fetched, started

pytestmark = pytest.mark.kafka
WAIT_S = 90
PDQ = [f"{i:064x}" for i in range(1, 9)]
TE_TOKEN = "1234567890|" + "a" * 24


def wait_for(check: Callable[[], Any], what: str) -> Any:
    """Poll until `check` answers something true (the bound only ends a test that hangs)."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"never happened: {what}")


async def wait_async(check: Callable[[], Any], what: str) -> Any:
    return await asyncio.to_thread(wait_for, check, what)


def write_status(settings, exchange: str) -> dict:
    return read_latest(settings, T.EXCHANGE_WRITE_STATUS).get(exchange) or {}


def quick(settings):
    """Retries without long waits (the backoff still doubles)."""
    return settings.with_overrides(exchange_backoff_s=0.05, exchange_write_attempts=3, exchange_fetch_attempts=3,
                                   exchange_share_interval_s=3600)


@pytest.fixture
def stopncii(monkeypatch):
    fake = FakeStopNCII("fetch-key", "subscription-key").start()
    monkeypatch.setenv("TX_STOPNCII_KEYS", "fetch-key,subscription-key")
    yield fake
    fake.stop()


def test_stopncii_fetch_pages_rate_limit_malformed_answer_and_expired_credential(settings, stopncii, monkeypatch):
    now = int(time.time())
    stopncii.hashes += [StopNCIIHash(v, now - 100 + i) for i, v in enumerate(PDQ[:5])]
    record = exchange_record("STOPNCII_X", "stop_ncii", {}, enabled=False, endpoint=stopncii.endpoint)
    configure(settings, record)

    async def scenario() -> None:
        fetcher = await started(ExchangeFetcher(settings))
        try:
            stopncii.fail("FetchHashes", 429)  # rate limited once: the client waits and asks again
            status = await fetched(settings, record)
            assert status["last_fetch_succeeded"] and status["fetched_items"] == 5
            assert set(bank_signals(settings, "STOPNCII_X")) == set(PDQ[:5])
            assert stopncii.count("GET", "FetchHashes") == 1 + 3  # the 429, then three pages of two
            checkpoint = status["checkpoint_ts"]
            assert checkpoint == now - 96

            stopncii.hashes.append(StopNCIIHash(PDQ[5], now - 50))
            stopncii.fail("FetchHashes", 200, b"<html>maintenance</html>")
            status = await fetched(settings, record)
            assert status["last_fetch_succeeded"] is False and "JSONDecodeError" in status["last_error"]
            assert status["checkpoint_ts"] == checkpoint and len(bank_signals(settings, "STOPNCII_X")) == 5

            monkeypatch.setenv("TX_STOPNCII_KEYS", "fetch-key,expired-key")
            status = await fetched(settings, record)
            assert status["last_fetch_succeeded"] is False and "401" in status["last_error"]
            assert "expired-key" not in status["last_error"]
            assert status["checkpoint_ts"] == checkpoint and len(bank_signals(settings, "STOPNCII_X")) == 5

            monkeypatch.setenv("TX_STOPNCII_KEYS", "fetch-key,subscription-key")  # renewed: nothing was lost
            status = await fetched(settings, record)
            assert status["last_fetch_succeeded"] and status["fetched_items"] == 6
            assert set(bank_signals(settings, "STOPNCII_X")) == set(PDQ[:6])
        finally:
            await fetcher.stop()

    asyncio.run(scenario())


def test_writes_are_retried_delivered_once_and_dead_lettered(settings, stopncii):
    settings = quick(settings)
    record = exchange_record("STOPNCII_W", "stop_ncii", {}, enabled=False, report_feedback=True,
                             endpoint=stopncii.endpoint)
    configure(settings, record)
    confirm = outbox_record("STOPNCII_W", "confirm", "pdq", PDQ[0], "feedback/STOPNCII_W/one", "content-1")
    doomed = outbox_record("STOPNCII_W", "deconfirm", "pdq", PDQ[1], "feedback/STOPNCII_W/two", "content-2")

    async def scenario() -> None:
        writer = ExchangeWriter(settings)
        await writer.start()
        await asyncio.wait_for(writer.leader.wait(), WAIT_S)
        try:
            stopncii.fail("SubmitFeedback", 503)  # the exchange fails the first attempt
            produce(settings, [(T.EXCHANGE_OUTBOX, confirm["idempotency_key"], confirm)])
            await wait_async(lambda: write_status(settings, "STOPNCII_W").get("delivered") == 1, "delivery")
            produce(settings, [(T.EXCHANGE_OUTBOX, confirm["idempotency_key"], confirm)])  # a copy of it
            await wait_async(lambda: write_status(settings, "STOPNCII_W").get("skipped") == 1, "the copy skipped")

            stopncii.fail("SubmitFeedback", 503, times=3)  # every attempt fails
            produce(settings, [(T.EXCHANGE_OUTBOX, doomed["idempotency_key"], doomed)])
            await wait_async(lambda: write_status(settings, "STOPNCII_W").get("dead_lettered") == 1, "dead letter")
            [dead] = await asyncio.to_thread(dead_writes, settings, "STOPNCII_W")
            assert dead == doomed
            produce(settings, [(T.EXCHANGE_OUTBOX, dead["idempotency_key"], dead)])  # `hmas exchange redeliver`
            await wait_async(lambda: write_status(settings, "STOPNCII_W").get("delivered") == 2, "the redelivery")
        finally:
            await writer.stop()

    asyncio.run(scenario())
    assert stopncii.applied == [("SubmitFeedback", PDQ[0], "Blocked"), ("SubmitFeedback", PDQ[1], "NotBlocked")]
    assert stopncii.count("POST", "SubmitFeedback") == 2 + 3 + 1  # a failure and its retry; three failures; redelivery
    status = write_status(settings, "STOPNCII_W")
    assert status["retries"] == 1 + 2 and status["delivered"] == 2 and status["dead_lettered"] == 1
    assert "feedback/STOPNCII_W/one" in read_latest(settings, T.EXCHANGE_DELIVERED)
    [dead] = [r for _, r in read_to_end(settings, T.DEAD_LETTERS) if r and r["stage"] == "exchange-writer"]
    assert dead["topic"] == T.EXCHANGE_OUTBOX.name(settings) and "after 3 attempt(s)" in dead["reason"]
    assert "503" in dead["reason"]
    assert [backoff_s(settings, n) for n in (1, 2, 3)] == [0.05, 0.1, 0.2]


def test_a_shared_bank_publishes_what_it_held_before_and_its_changes(settings, stopncii, tmp_path):
    settings = quick(settings)
    listed = tmp_path / "shared.txt"
    listed.write_text("")
    configure(settings, exchange_record("STOPNCII_S", "stop_ncii", {}, enabled=False, endpoint=stopncii.endpoint))
    configure(settings, exchange_record("FILE_S", "local_file", {"filename": str(listed)}, enabled=False))
    signals = dict(bank_signal_record("SHARED", i + 1, "pdq", v) for i, v in enumerate(PDQ[:3]))
    produce(settings, [(T.BANKS, "SHARED", T.BANKS.codec.conform(bank_record("SHARED")))]
            + [(T.BANK_SIGNALS, k, r) for k, r in signals.items()])

    async def scenario() -> None:
        writer = ExchangeWriter(settings)
        await writer.start()
        await asyncio.wait_for(writer.leader.wait(), WAIT_S)
        try:
            assert await writer.share() == 0  # not shared yet
            produce(settings, [(T.BANKS, "SHARED", T.BANKS.codec.conform(
                bank_record("SHARED", share_to=["STOPNCII_S", "FILE_S"])))])
            assert await writer.share() == 6  # the bank's earlier content, to both exchanges
            assert await writer.share() == 0  # already on the outbox
            await wait_async(lambda: write_status(settings, "FILE_S").get("delivered") == 3, "file shares")
            await wait_async(lambda: write_status(settings, "STOPNCII_S").get("delivered") == 3, "StopNCII shares")

            gone = next(k for k, r in signals.items() if r["value"] == PDQ[0])
            produce(settings, [(T.BANK_SIGNALS, gone, None)])
            assert await writer.share() == 2
            await wait_async(lambda: write_status(settings, "FILE_S").get("delivered") == 4, "file withdrawal")
            await wait_async(lambda: write_status(settings, "STOPNCII_S").get("delivered") == 4, "StopNCII withdrawal")
        finally:
            await writer.stop()
        again = ExchangeWriter(settings, name="again")  # a new writer knows what was sent
        await again.start()
        await asyncio.wait_for(again.leader.wait(), WAIT_S)
        try:
            assert await again.share() == 0
        finally:
            await again.stop()

    asyncio.run(scenario())
    assert stopncii.submitted == {PDQ[0]: "Blocked", PDQ[1]: "Blocked", PDQ[2]: "Blocked"}
    assert stopncii.feedback == {PDQ[0]: "Withdrawn"}
    assert sorted(listed.read_text().split("\n")) == ["", f"pdq {PDQ[1]}", f"pdq {PDQ[2]}"]
    delivered = read_latest(settings, T.EXCHANGE_DELIVERED)
    assert share_key("FILE_S", "pdq", PDQ[0]) not in delivered and share_key("FILE_S", "pdq", PDQ[1]) in delivered


def test_ncmec_pages_and_feedback_votes(settings):
    from cryptography.fernet import Fernet

    settings = quick(settings).with_overrides(secret_key=Fernet.generate_key().decode())
    fake = FakeNCMEC("user", "password").start()
    now = int(time.time())
    fake.entries += [NCMECEntry(42, f"entry{i}", now - 3000 + 100 * i, v) for i, v in enumerate(PDQ[:5])]
    record = exchange_record("NCMEC_X", "ncmec", {"environment": "https://exttest.cybertip.org/hashsharing"},
                             enabled=False, report_feedback=True, endpoint=fake.base)
    configure(settings, record)

    async def scenario() -> None:
        fetcher = await started(ExchangeFetcher(settings))
        writer = ExchangeWriter(settings)
        await writer.start()
        try:
            status = await fetched(settings, record)
            assert status["last_fetch_succeeded"] is False and "missing authentification" in status["last_error"]
            other_key = settings.with_overrides(secret_key=Fernet.generate_key().decode())
            for sealed_with in (other_key, settings):  # sealed with another key: a clear status, then the right one
                produce(settings, [(T.EXCHANGE_CREDENTIALS, "ncmec", stored_credentials(
                    sealed_with, "ncmec", {"user": "user", "password": "password"}))])
                if sealed_with is other_key:
                    status = await fetched(settings, record)
                    assert status["last_fetch_succeeded"] is False
                    assert "do not open with HMAS_SECRET_KEY" in status["last_error"]
            status = await fetched(settings, record)
            held = bank_signals(settings, "NCMEC_X")
            assert status["last_fetch_succeeded"] and set(held) == set(PDQ[:5])
            assert held[PDQ[0]]["metadata"]["exchange_record"] == "42-entry0"

            fake.entries[1].deleted = True  # deleted after the checkpoint, seen once NCMEC's 5 s lag passed
            fake.entries[1].timestamp = status["checkpoint_ts"] + 1
            await wait_async(lambda: time.time() - 5 > fake.entries[1].timestamp, "the deletion to be fetchable")
            status = await fetched(settings, record)
            assert set(bank_signals(settings, "NCMEC_X")) == set(PDQ[:5]) - {PDQ[1]}

            await asyncio.wait_for(writer.leader.wait(), WAIT_S)
            fake.fail("/feedback", 500)
            for op, value, rid in (("confirm", PDQ[0], "42-entry0"), ("deconfirm", PDQ[2], "42-entry2")):
                write = outbox_record("NCMEC_X", op, "pdq", value, f"feedback/NCMEC_X/{value}", "c", rid)
                produce(settings, [(T.EXCHANGE_OUTBOX, write["idempotency_key"], write)])
            await wait_async(lambda: write_status(settings, "NCMEC_X").get("delivered") == 2, "votes")
        finally:
            await writer.stop()
            await fetcher.stop()

    try:
        asyncio.run(scenario())
    finally:
        fake.stop()
    assert fake.votes == {(42, "entry0", "PDQ"): "affirmative", (42, "entry2", "PDQ"): "negative"}
    assert [a[1:4] for a in fake.applied] == [(42, "entry0", "PDQ"), (42, "entry2", "PDQ")]


def stored_credentials(settings, api: str, credential_json: dict) -> dict:
    from connectors.exchanges.config import exchange_api
    from connectors.exchanges.credentials import sealed_record

    return sealed_record(exchange_api(api), credential_json, settings.secret_key)


def test_threatexchange_pages_reactions_and_descriptor_upload_and_delete(settings, monkeypatch):
    settings = quick(settings)
    fake = FakeThreatExchange(TE_TOKEN, 777).start()
    monkeypatch.setenv("TX_ACCESS_TOKEN", TE_TOKEN)
    now = int(time.time())
    for i, v in enumerate(PDQ[:5]):
        fake.add(555, v, now - 100 + i, tags=["te-tag"])
    record = exchange_record("TE_X", "fb_threatexchange", {"privacy_group": 777}, enabled=False,
                             report_feedback=True, endpoint=fake.endpoint)
    configure(settings, record)
    configure(settings, exchange_record("TE_OUT", "fb_threatexchange", {"privacy_group": 777}, enabled=False,
                                        endpoint=fake.endpoint))

    async def scenario() -> None:
        fetcher = await started(ExchangeFetcher(settings))
        writer = ExchangeWriter(settings)
        await writer.start()
        try:
            status = await fetched(settings, record)
            held = bank_signals(settings, "TE_X")
            assert status["last_fetch_succeeded"] and set(held) == set(PDQ[:5])
            assert json.loads(held[PDQ[0]]["metadata"]["exchange_tags"]) == ["te-tag"]
            assert fake.count("GET", "threat_updates") == 3

            fake.add(555, PDQ[5], int(time.time()))
            fake.fail("threat_updates", 429)  # the client does not retry this one: the fetcher does
            status = await fetched(settings, record)
            assert status["last_fetch_succeeded"] and PDQ[5] in bank_signals(settings, "TE_X")
            fake.fail("threat_updates", 429, times=3)  # as often as the fetcher tries: it fails, visibly
            checkpoint = status["checkpoint_ts"]
            status = await fetched(settings, record)
            assert status["last_fetch_succeeded"] is False and "429" in status["last_error"]
            assert status["checkpoint_ts"] == checkpoint

            await asyncio.wait_for(writer.leader.wait(), WAIT_S)
            fake.fail("/threat_descriptors", 500)  # the upload's first search fails
            writes = [outbox_record("TE_X", "confirm", "pdq", PDQ[0], "feedback/TE_X/1", "c"),
                      outbox_record("TE_OUT", "share_add", "pdq", PDQ[7], share_key("TE_OUT", "pdq", PDQ[7]), "B"),
                      outbox_record("TE_OUT", "share_add", "pdq", PDQ[7], share_key("TE_OUT", "pdq", PDQ[7]), "B"),
                      outbox_record("TE_OUT", "share_remove", "pdq", PDQ[7], share_key("TE_OUT", "pdq", PDQ[7]), "")]
            produce(settings, [(T.EXCHANGE_OUTBOX, w["idempotency_key"], w) for w in writes])
            await wait_async(lambda: write_status(settings, "TE_OUT").get("delivered") == 2, "upload and delete")
            await wait_async(lambda: write_status(settings, "TE_X").get("delivered") == 1, "reaction")
        finally:
            await writer.stop()
            await fetcher.stop()

    try:
        asyncio.run(scenario())
    finally:
        fake.stop()
    assert sorted(fake.applied, key=str) == sorted([("react", 1001, "HELPFUL"), ("upload", PDQ[7]), ("delete", PDQ[7])],
                                                   key=str)
    assert write_status(settings, "TE_OUT")["skipped"] == 1


def test_feedback_through_the_api_reaches_an_exchange_that_opted_in(kafka_broker, tmp_path):
    from tests.pipeline_env import ApiProcess, HmasProcess, hmas, pipeline_env

    fake = FakeStopNCII("fetch-key", "subscription-key").start()
    fake.hashes += [StopNCIIHash(v, int(time.time()) - 100 + i) for i, v in enumerate(PDQ[:2])]
    env = pipeline_env(kafka_broker.bootstrap, tmp_path / "state", HMAS_API_TOKEN="t",
                       TX_STOPNCII_KEYS="fetch-key,subscription-key", HMAS_EXCHANGE_BACKOFF_S="0.05")
    hmas(env, "topics", "create")
    fetcher = HmasProcess(env, tmp_path / "fetcher.log", "fetcher").start()
    api = ApiProcess(env, tmp_path / "api.log", free_port()).start()

    def call(method: str, path: str, **kwargs) -> Any:
        answer = requests.request(method, api.base + path, headers={"Authorization": "Bearer t"}, **kwargs)
        assert answer.status_code in (200, 201), answer.text
        return answer.json()

    try:
        call("POST", "/c/exchanges", json={"bank": "NCII", "api": "stop_ncii", "api_json": {},
                                           "report_feedback": True, "endpoint": fake.endpoint})
        assert call("GET", "/c/exchange/NCII") == {"name": "NCII", "api": "stop_ncii", "enabled": True,
                                                   "report_feedback": True, "endpoint": fake.endpoint}
        done = json.loads(hmas(env, "exchange", "fetch", "NCII", "--wait", "120").stdout)
        assert done["last_fetch_succeeded"] and done["fetched_items"] == 2
        sid = wait_for(lambda: [s["signal_id"] for s in read_latest_env(env).values() if s["value"] == PDQ[0]],
                       "the fetched signal")[0]
        wait_for(lambda: requests.get(api.base + f"/c/signal/{sid}/tallies").status_code == 200, "the API's view")
        fake.fail("SubmitFeedback", 429)
        answer = call("POST", "/c/feedback", json={"content_id": "c-1", "verdict": "benign", "signals": [sid]})
        assert answer["exchange_reports"] == 1
        wait_for(lambda: call("GET", "/c/exchange/NCII/status")["write"]["delivered"] == 1, "the report")
        assert fake.applied == [("SubmitFeedback", PDQ[0], "NotBlocked")]
        assert call("GET", "/c/exchange/NCII/status")["write"]["retries"] == 1
        assert json.loads(hmas(env, "exchange", "status", "NCII").stdout)["write"]["delivered"] == 1

        call("PUT", "/c/exchange/NCII", json={"report_feedback": False})
        assert call("POST", "/c/feedback", json={"content_id": "c-2", "verdict": "harmful",
                                                 "signals": [sid]})["exchange_reports"] == 0
    finally:
        api.stop()
        fetcher.stop()
        fake.stop()


def read_latest_env(env: dict) -> dict:
    from tests.pipeline_env import settings_from

    return read_latest(settings_from(env), T.BANK_SIGNALS)


def test_one_writer_of_two_delivers_and_the_other_takes_over(settings, stopncii):
    settings = quick(settings)
    configure(settings, exchange_record("STOPNCII_1", "stop_ncii", {}, enabled=False, endpoint=stopncii.endpoint))
    writes = [outbox_record("STOPNCII_1", "confirm", "pdq", v, f"feedback/STOPNCII_1/{v}", "c") for v in PDQ[:2]]

    async def scenario() -> None:
        first, second = ExchangeWriter(settings, name="first"), ExchangeWriter(settings, name="second")
        await first.start()
        await asyncio.wait_for(first.leader.wait(), WAIT_S)
        await second.start()
        try:
            produce(settings, [(T.EXCHANGE_OUTBOX, writes[0]["idempotency_key"], writes[0])])
            await wait_async(lambda: write_status(settings, "STOPNCII_1").get("delivered") == 1, "the first write")
            await wait_async(lambda: first.leader.is_set() != second.leader.is_set(), "one writer")
            leader, standby = (first, second) if first.leader.is_set() else (second, first)
            await leader.stop()
            await asyncio.wait_for(standby.leader.wait(), WAIT_S)
            produce(settings, [(T.EXCHANGE_OUTBOX, writes[1]["idempotency_key"], writes[1])])
            await wait_async(lambda: write_status(settings, "STOPNCII_1").get("delivered") == 2, "the second write")
        finally:
            await first.stop()
            await second.stop()

    asyncio.run(scenario())
    assert stopncii.applied == [("SubmitFeedback", PDQ[0], "Blocked"), ("SubmitFeedback", PDQ[1], "Blocked")]


def test_a_writer_killed_after_a_delivery_leaves_it_to_the_next_one(kafka_broker, stopncii, tmp_path):
    """Killed between the exchange's acceptance and the commit: the next writer makes the same
    state-setting call again; the exchange holds one feedback, the status counts one delivery."""
    from pipeline.admin import ensure_topics
    from tests.pipeline_env import HmasProcess, pipeline_env, settings_from

    env = pipeline_env(kafka_broker.bootstrap, tmp_path / "state", TX_STOPNCII_KEYS="fetch-key,subscription-key",
                       HMAS_EXCHANGE_BACKOFF_S="0.05")
    settings = settings_from(env)
    ensure_topics(settings.bootstrap_servers, settings)
    configure(settings, exchange_record("STOPNCII_K", "stop_ncii", {}, enabled=False, endpoint=stopncii.endpoint))
    write = outbox_record("STOPNCII_K", "confirm", "pdq", PDQ[0], "feedback/STOPNCII_K/one", "content-1")

    stopncii.hold_writes.set()
    first = HmasProcess(env, tmp_path / "first.log", "fetcher").start()
    try:
        produce(settings, [(T.EXCHANGE_OUTBOX, write["idempotency_key"], write)])
        assert stopncii.write_held.wait(WAIT_S), "the write never reached the exchange"
        first.kill()  # the exchange took it; the writer never hears back
    finally:
        stopncii.hold_writes.clear()
        stopncii.release.set()
        first.stop()
    assert write_status(settings, "STOPNCII_K") == {}  # nothing was committed

    second = HmasProcess(env, tmp_path / "second.log", "fetcher").start()
    try:
        wait_for(lambda: write_status(settings, "STOPNCII_K").get("delivered") == 1, "the redelivery")
    finally:
        second.stop()
    assert stopncii.feedback == {PDQ[0]: "Blocked"}
    assert stopncii.applied == [("SubmitFeedback", PDQ[0], "Blocked")] * 2  # the same call, made again
    assert "feedback/STOPNCII_K/one" in read_latest(settings, T.EXCHANGE_DELIVERED)
