"""`hmas replay` through the broker: finds uploads the ring has dropped, resumes, never acts twice."""

from __future__ import annotations

import re
import time

import numpy as np
import pytest

from pipeline import topics as T
from pipeline.banks import bank_record, bank_signal_record
from pipeline.client import Client
from pipeline.replay import parse_time
from pipeline.uploads import new_upload
from tests.pipeline_env import (
    WorkerProcess, collect_until, create_topics, hmas, pipeline_env, settings_from, wait_until,
)

UPLOADS = 40
HORIZON_MS, BUCKET_MS = 2000, 1000  # the ring keeps 2 s of uploads, dropped a whole 1 s bucket at a time


def test_time_forms():
    assert parse_time("-2h", now=10_000) == (10_000 - 7200) * 1000
    assert parse_time("-1.5m", now=10_000) == (10_000 - 90) * 1000
    assert parse_time("1764000000") == 1764000000000
    assert parse_time("2026-11-24T00:00:00Z") == 1795478400000
    with pytest.raises(ValueError, match="cannot read time"):
        parse_time("yesterday")
    with pytest.raises(ValueError, match="cannot read time"):
        parse_time("-2weeks")


@pytest.mark.kafka
def test_replay_matches_what_the_ring_dropped_resumes_and_never_acts_twice(kafka_broker, tmp_path):
    env = pipeline_env(kafka_broker.bootstrap, tmp_path / "state", HMAS_RECENT_HORIZON_MS=str(HORIZON_MS),
                       HMAS_RECENT_BUCKET_MS=str(BUCKET_MS))
    create_topics(env)
    settings = settings_from(env)
    rng = np.random.default_rng(12)
    code = rng.integers(0, 256, 32, dtype=np.uint8)
    start = int(time.time()) - 1
    worker = WorkerProcess(env, tmp_path / "worker.log").start()
    try:
        client = Client(settings)
        ids = [f"old-{i:02d}" for i in range(UPLOADS)]
        for i, cid in enumerate(ids):
            variant = code.copy()
            variant[i % 32] ^= 1 << (i % 8)
            client.produce(T.UPLOADS, cid, new_upload(cid, "photo", signals={"pdq": variant.tobytes().hex()}))
        client.flush()
        assert set(collect_until(settings, T.MATCHES, set(ids))) >= set(ids)
        # The ring drops uploads by wall-clock age, which nothing outside the worker shows: waiting past the
        # horizon (and the bucket that holds the last of them) is the point of this test, not a guess.
        time.sleep((HORIZON_MS + 2 * BUCKET_MS) / 1000)

        client.produce(T.BANKS, "REPLAYED", bank_record("REPLAYED"))
        key, record = bank_signal_record("REPLAYED", client.claim_content_id("REPLAYED"), "pdq", code.tobytes().hex())
        client.produce(T.BANK_SIGNALS, key, record)
        client.flush()
        wait_until(lambda: "retroactive search" in worker.log_path.read_text(errors="replace"), 30,
                   "the worker to search its ring for the banked signal", detail=worker.log_tail)
        assert not [r for _, r in Client(settings).read(T.RETRO_MATCHES, timeout_s=2)]  # the ring had nothing

        first = hmas(env, "replay", "--from", str(start), "--stop-after", "10")
        # stderr is not a terminal here: progress comes as log lines, no bar
        assert re.search(r"msg=progress task=replay done=10 total=\d+ unit=records", first.stderr)
        assert "\r" not in first.stderr
        hmas(env, "replay", "--from", str(start))  # resumes where the first stopped
        hmas(env, "replay", "--from", str(start))  # nothing left: writes nothing again
        actions = collect_until(settings, T.ACTIONS, set(ids), timeout_s=60)
        assert {cid: len(actions.get(cid, [])) for cid in ids} == {cid: 1 for cid in ids}
        assert all(a[0]["retroactive"] for a in actions.values() if a[0]["content_id"] in ids)
        retro = [r for _, r in Client(settings).read(T.RETRO_MATCHES, timeout_s=3)]
        assert sorted(r["content_id"] for r in retro) == sorted(ids)
    finally:
        worker.stop()
