"""Flood counts are not inflated by replayed hits: a hit written twice (same event id) counts once."""

from __future__ import annotations

import pytest

from pipeline import event_ids
from pipeline import topics as T
from pipeline.client import Client
from pipeline.clock import now_ms
from tests.pipeline_env import WorkerProcess, collect_until, create_topics, hmas, pipeline_env, settings_from

pytestmark = pytest.mark.kafka

LIMIT = 3
SIGNAL = "replayed-signal"


def hit(content_id: str) -> dict:
    match_id = event_ids.derive("match", content_id)
    return {"signal_id": SIGNAL, "bank": "FLOODED", "content_id": content_id, "matched_at": now_ms(),
            "event_id": event_ids.flood_hit(match_id, SIGNAL)}


def test_a_hit_written_twice_counts_once(kafka_broker, tmp_path):
    env = pipeline_env(kafka_broker.bootstrap, tmp_path / "state")
    create_topics(env)
    hmas(env, "bank", "create", "FLOODED", "--flood-max", str(LIMIT), "--flood-window", "600")
    settings = settings_from(env)
    worker = WorkerProcess(env, tmp_path / "worker.log").start()
    try:
        client = Client(settings)
        # LIMIT hits, each written twice as a replay writes it, then one more: only that one is over the limit.
        for content_id in [f"c{i}" for i in range(LIMIT) for _ in range(2)] + ["over"]:
            client.produce(T.FLOOD_HITS, SIGNAL, hit(content_id))
        client.flush()
        [quarantine] = collect_until(settings, T.QUARANTINE, {SIGNAL}, timeout_s=120)[SIGNAL]
    finally:
        worker.stop()
    assert quarantine["state"] == "quarantined"
    assert (quarantine["count"], quarantine["sample_content_ids"]) == (LIMIT + 1, ["c0", "c1", "c2", "over"])
