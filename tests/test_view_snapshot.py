"""Bank view snapshots: the round trip of the arrays, and a worker that restarts from one.

The restart test stops a worker (it saves its view on the way out), changes the bank while it is
down, and starts it again: it must load the snapshot, read only the records after it, and match
the bank as it is now.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from pipeline import topics as T
from pipeline.banks import bank_record, bank_signal_record
from pipeline.client import Client
from pipeline.config import Settings
from pipeline.services.bank_view import BankViewService, LoadedView, load_view
from pipeline.state.bank_view import BankView
from pipeline.state.log_reader import CompactedTopicFollower, StalePositions
from pipeline.state.snapshot import export_snapshot, read_snapshot, snapshot_path, write_snapshot
from pipeline.uploads import new_upload
from tests.pipeline_env import (
    VIEW_MODEL_BANKS, WorkerProcess, check_view, collect_until, conformed_bank, create_topics, pipeline_env, run_ops,
    settings_from,
)

TOPICS = {"bank-signals": "x.bank-signals"}


def random_codes(n: int, seed: int) -> list[str]:
    return [c.tobytes().hex() for c in np.random.default_rng(seed).integers(0, 256, (n, 32), dtype=np.uint8)]


def test_a_snapshot_restores_the_same_view(tmp_path):
    view = BankView()
    for bank in VIEW_MODEL_BANKS:
        view.apply_bank(bank, conformed_bank(bank))
    batches = [[("add", "ALPHA", i, i + 1, 1, i % 2 == 0) for i in range(20)],
               [("md5", "BETA", 1), ("remove", 3), ("add", "GAMMA", 2, 7, 0, False), ("remove", 8)]]
    model = run_ops(view, batches)
    view.quarantine["abc"] = {"state": "quarantined"}
    settings = Settings(data_dir=tmp_path)
    path = snapshot_path(settings, "worker")
    write_snapshot(export_snapshot(view, {"x.bank-signals": 42}), path, settings, TOPICS)

    snap = read_snapshot(path, settings, TOPICS)
    restored = BankView()
    restored.load(snap.arrays, snap.meta)
    assert snap.positions == {"x.bank-signals": 42}
    check_view(restored, model)
    assert restored.banks == view.banks and restored.quarantine == view.quarantine
    # it keeps following changes after the load
    run_ops(restored, [[("remove", 0), ("add", "ALPHA", 5, 99, 1, True)]], dict(model))
    # another prefix's or another shard's snapshot is not used
    assert read_snapshot(path, settings, {"bank-signals": "y.bank-signals"}) is None
    assert read_snapshot(path, settings.with_overrides(index_shards=2, index_shard=1), TOPICS) is None
    path.write_bytes(b"not a snapshot")
    assert read_snapshot(path, settings, TOPICS) is None


@pytest.mark.kafka
def test_positions_the_topic_does_not_have_are_refused(settings):
    hmas_env_topics(settings)

    async def start() -> None:
        follower = CompactedTopicFollower(settings, [T.BANK_SIGNALS], lambda spec, changes: None,
                                          start_positions={T.BANK_SIGNALS.name(settings): 10**9})
        await follower.start()

    with pytest.raises(StalePositions):
        asyncio.run(start())


def hmas_env_topics(settings: Settings) -> None:
    from pipeline.admin import ensure_topics

    ensure_topics(settings.bootstrap_servers, settings)


@pytest.mark.kafka
def test_a_restarted_worker_loads_its_snapshot_and_reads_the_tail(kafka_broker, tmp_path):
    env = pipeline_env(kafka_broker.bootstrap, tmp_path / "state", HMAS_RECENT_ENABLED="0")
    create_topics(env)
    settings = settings_from(env)
    codes = random_codes(3000, seed=4)
    client = Client(settings)
    client.produce(T.BANKS, "KNOWN", bank_record("KNOWN"))
    for i, code in enumerate(codes):
        client.produce(T.BANK_SIGNALS, *bank_signal_record("KNOWN", i + 1, "pdq", code))
    client.flush()

    def submit_and_match(prefix: str, wanted: dict[str, str]) -> dict[str, dict]:
        for name, code in wanted.items():
            client.produce(T.UPLOADS, f"{prefix}-{name}", new_upload(f"{prefix}-{name}", "photo", signals={"pdq": code}))
        client.flush()
        got = collect_until(settings, T.MATCHES, {f"{prefix}-{name}" for name in wanted}, timeout_s=120)
        return {name: got[f"{prefix}-{name}"][-1] for name in wanted}

    worker = WorkerProcess(env, tmp_path / "worker-1.log").start()
    try:
        first = submit_and_match("first", {"old": codes[10]})
        assert first["old"]["matches"][0]["bank_content_id"] == 11
    finally:
        worker.stop()
    path = snapshot_path(settings, f"{settings.topic_prefix}{settings.app_id}")
    assert path.is_file(), worker.log_tail()

    # while the worker is down: a new signal, a removed one
    new_code = random_codes(1, seed=99)[0]
    client.produce(T.BANK_SIGNALS, *bank_signal_record("KNOWN", 5000, "pdq", new_code))
    removed_key, _ = bank_signal_record("KNOWN", 21, "pdq", codes[20])
    client.produce(T.BANK_SIGNALS, removed_key, None)
    client.flush()

    worker = WorkerProcess(env, tmp_path / "worker-2.log").start()
    try:
        after = submit_and_match("after", {"old": codes[10], "new": new_code, "removed": codes[20]})
        log = (tmp_path / "worker-2.log").read_text()
        assert "bank view loaded from snapshot" in log and "signals=3000" in log, log[-3000:]
        assert [h["bank_content_id"] for h in after["old"]["matches"]] == [11]
        assert [h["bank_content_id"] for h in after["new"]["matches"]] == [5000]
        assert after["removed"]["matches"] == []
    finally:
        worker.stop()


def test_a_forked_view_saves_its_snapshot_again_only_when_the_tail_moved_it(kafka_broker, tmp_path):
    """The API's processes share a view loaded before they fork (load_view); the first saves it.
    Loaded from a snapshot that holds it all, saving again would only copy 10M rows for nothing
    (a stall of a second on the serving loop at 10M); after a tail, the snapshot is behind."""
    env = pipeline_env(kafka_broker.bootstrap, tmp_path / "state")
    create_topics(env)
    settings = settings_from(env)
    client = Client(settings)
    client.produce(T.BANKS, "KNOWN", bank_record("KNOWN"))
    for i, code in enumerate(random_codes(50, seed=7)):
        client.produce(T.BANK_SIGNALS, *bank_signal_record("KNOWN", i + 1, "pdq", code))
    client.flush()
    path = tmp_path / "api.snapshot"

    async def load_and_save() -> tuple[LoadedView, bool]:
        loaded = await load_view(settings, path)
        service = BankViewService(settings, loaded.view, "forked", snapshot_path=path, loaded=loaded)
        await service.ready()
        before = path.stat().st_mtime_ns if path.is_file() else None
        await service.save_snapshot()
        await service.stop(save=False)
        return loaded, path.stat().st_mtime_ns != before

    loaded, saved = asyncio.run(load_and_save())  # no snapshot yet: read from the topics, then saved
    assert loaded.saved == {} and saved and loaded.view.signal_count() == 50
    loaded, saved = asyncio.run(load_and_save())  # the snapshot holds everything: not saved again
    assert loaded.saved == loaded.positions and not saved
    client.produce(T.BANK_SIGNALS, *bank_signal_record("KNOWN", 51, "pdq", random_codes(1, seed=8)[0]))
    client.flush()
    loaded, saved = asyncio.run(load_and_save())  # one record after the snapshot: saved again
    assert loaded.saved != loaded.positions and saved and loaded.view.signal_count() == 51
