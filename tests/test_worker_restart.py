"""A worker killed with SIGKILL and restarted: it matches again without waiting for the broker to
drop the killed member, and every record written again carries the id of the first copy."""

from __future__ import annotations

import time
from collections import defaultdict

import numpy as np
import pytest

from pipeline import topics as T
from pipeline.client import Client
from pipeline.uploads import new_upload
from tests.pipeline_env import WorkerProcess, collect_until, create_topics, hmas, pipeline_env, settings_from

pytestmark = pytest.mark.kafka

# Long enough that a restart waiting out the killed member's session would miss the deadline below.
SESSION_TIMEOUT_S = 60
RESTART_DEADLINE_S = 40
BANKED = np.random.default_rng(14).integers(0, 256, 32, dtype=np.uint8).tobytes().hex()


def upload(content_id: str, pdq: str = BANKED) -> dict:
    return new_upload(content_id, "photo", signals={"pdq": pdq})


def produce(settings, *uploads: dict) -> None:
    client = Client(settings)
    for u in uploads:
        client.produce(T.UPLOADS, u["content_id"], u)
    client.flush()


def ids_by_key(settings, spec: T.TopicSpec, key_of=lambda key, record: key) -> dict[str, set]:
    ids: dict[str, set] = defaultdict(set)
    for key, record in Client(settings).read(spec, to_end=True):
        ids[key_of(key, record)].add(record["event_id"])
    return ids


@pytest.fixture
def env(kafka_broker, tmp_path):
    e = pipeline_env(kafka_broker.bootstrap, tmp_path / "state",
                     HMAS_WORKER_SESSION_TIMEOUT_S=str(SESSION_TIMEOUT_S))
    create_topics(e)
    hmas(e, "bank", "create", "RESTART", "--action", "remove")
    hmas(e, "bank", "add", "RESTART", "--signal", f"pdq:{BANKED}")
    return e, tmp_path


def test_a_worker_restarted_after_sigkill_matches_again_at_once_with_the_same_ids(env):
    e, tmp = env
    settings = settings_from(e)
    worker = WorkerProcess(e, tmp / "worker.log").start()
    try:
        produce(settings, upload("before-kill"), upload("unmatched-before", pdq="0" * 64))
        assert "before-kill" in collect_until(settings, T.MATCHES, {"before-kill"}, timeout_s=120)
        produce(settings, *(upload(f"in-flight-{i}") for i in range(50)))
    finally:
        worker.kill()

    killed_at = time.monotonic()
    restarted = WorkerProcess(e, tmp / "restarted.log").start()
    try:
        produce(settings, upload("after-kill"))
        found = collect_until(settings, T.MATCHES, {"after-kill"}, timeout_s=RESTART_DEADLINE_S)
        assert "after-kill" in found, (
            f"no match {time.monotonic() - killed_at:.0f}s after the restart (session timeout {SESSION_TIMEOUT_S}s):\n"
            + restarted.log_tail())
        assert found["after-kill"][0]["matches"][0]["bank"] == "RESTART"

        # The whole input processed again, by a second consumer group: every copy has the first one's id.
        other = WorkerProcess({**e, "HMAS_APP_ID": "reprocess", "HMAS_DATA_DIR": str(tmp / "state-2"),
                               "HMAS_RECENT_ENABLED": "0"}, tmp / "reprocess.log").start()
        try:
            matched = {"before-kill", "after-kill", *(f"in-flight-{i}" for i in range(50))}
            deadline = time.monotonic() + 120
            copies: dict[str, list] = {}
            while time.monotonic() < deadline and not all(len(copies.get(c, ())) >= 2 for c in matched):
                copies = defaultdict(list)
                for key, action in Client(settings).read(T.ACTIONS, to_end=True):
                    copies[key].append(action)
            assert all(len(copies.get(c, ())) >= 2 for c in matched), other.log_tail()
        finally:
            other.stop()
    finally:
        restarted.stop()

    for spec in (T.HASHES, T.MATCHES, T.ACTIONS):
        ids = ids_by_key(settings, spec)
        assert matched <= ids.keys()
        assert {key: len(found) for key, found in ids.items() if len(found) != 1} == {}, spec.suffix
        assert None not in set().union(*ids.values())
    hits = ids_by_key(settings, T.FLOOD_HITS, key_of=lambda key, record: record["content_id"])
    assert matched <= hits.keys()
    assert {key: len(found) for key, found in hits.items() if len(found) != 1} == {}
