"""A follower far behind a state topic reads it in bulk (librdkafka) and then follows on with
aiokafka from where the bulk read stopped: same view as reading record by record, nothing lost
or read twice at the hand-over."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from pipeline import topics as T
from pipeline.banks import bank_record, bank_signal_record
from pipeline.client import Client
from pipeline.state import log_reader
from pipeline.state.bank_view import BankView
from pipeline.state.log_reader import CompactedTopicFollower, read_latest


def codes(n: int, seed: int) -> list[str]:
    return [c.tobytes().hex() for c in np.random.default_rng(seed).integers(0, 256, (n, 32), dtype=np.uint8)]


@pytest.mark.kafka
def test_a_follower_far_behind_reads_in_bulk_then_follows(settings, monkeypatch, caplog):
    monkeypatch.setattr(log_reader, "BULK_FROM", 200)  # a bank of 1,000 is "far behind"
    monkeypatch.setattr(log_reader, "BULK_BATCH", 150)  # several bulk fetches, duplicates across them
    client = Client(settings)
    client.produce(T.BANKS, "BULK", bank_record("BULK"))
    values = codes(1000, 1)
    for i, value in enumerate(values):
        client.produce(T.BANK_SIGNALS, *bank_signal_record("BULK", i + 1, "pdq", value))
    for i in range(0, 1000, 7):  # removed, and some changed again: a key seen twice, a tombstone
        key, record = bank_signal_record("BULK", i + 1, "pdq", values[i])
        client.produce(T.BANK_SIGNALS, key, None if i % 2 else {**record, "disable_until_ts": 0})
    client.flush()
    view = BankView()
    later = codes(5, 2)

    async def follow() -> None:
        follower = CompactedTopicFollower(settings, T.VIEW_TOPICS, lambda spec, changes: view.apply(spec, changes),
                                          name="bulk-test")
        await follower.start()
        try:
            await asyncio.wait_for(follower.ready.wait(), 120)
            for i, value in enumerate(later):  # after the hand-over: read by aiokafka
                client.produce(T.BANK_SIGNALS, *bank_signal_record("BULK", 5000 + i, "pdq", value))
            client.flush()
            for _ in range(600):
                if view.signal_count() == expected_count:
                    break
                await asyncio.sleep(0.1)
        finally:
            await follower.stop()

    latest = read_latest(settings, T.BANK_SIGNALS)
    expected_count = len(latest) + len(later)
    with caplog.at_level("INFO", logger=log_reader.__name__):
        asyncio.run(follow())
    assert any(r.getMessage() == "reading state in bulk" for r in caplog.records)
    assert view.signal_count() == expected_count
    by_key = {e.key: e for e in view.entries("BULK")}
    for key, record in latest.items():
        entry = by_key[key]
        assert (entry.bank_content_id, entry.value, entry.disable_until_ts) == (
            record["bank_content_id"], record["value"], record["disable_until_ts"])
    hits = view.search("pdq", later + [values[7]], 0)
    assert [[c.entry.bank_content_id for c in h] for h in hits] == [[5000 + i] for i in range(5)] + [[]]
