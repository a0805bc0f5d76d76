"""Where the readable records of a table changelog end.

A changelog written in transactions (by an exactly-once worker) ends with a transaction marker,
so its end offset is one past the marker, not past the last record. Faust's table recovery reads
until it has applied the record just before the end it was given; given the end offset it waits
for a record that never comes: an exactly-once worker ends only after two idle 5 s polls, and an
at-least-once worker restarted on a changelog an exactly-once one wrote never ends. Given the
offset after the last record its consumer can read (committed records with read_committed, any
record with read_uncommitted), recovery ends as soon as that record is applied.
"""

from __future__ import annotations

import time
from typing import Mapping

from aiokafka import TopicPartition

from pipeline import kafka_clients
from pipeline.config import Settings

LOOKBACK = 200  # offsets read back from the end: a transaction's records and markers, and more
FETCH_MS = 200


async def record_ends(settings: Settings, ends: Mapping[TopicPartition, int],
                      isolation_level: str = "read_committed", timeout_s: float = 10.0) -> dict[TopicPartition, int]:
    """For each partition, the offset after its last record readable with `isolation_level`, found
    among the LOOKBACK offsets before its end (`ends`, as a consumer of that isolation level reads
    its end offsets: last stable offsets with read_committed, high watermarks otherwise); the end
    itself where none is found there (recovery then takes the slow way)."""
    wanted = {TopicPartition(tp.topic, tp.partition): end for tp, end in ends.items() if end > 0}
    if not wanted:
        return dict(ends)
    consumer = kafka_clients.aio_consumer(settings, group_id=None, enable_auto_commit=False,
                                          isolation_level=isolation_level, client_id="hmas-changelog-ends")
    await consumer.start()
    last: dict[TopicPartition, int] = {}
    try:
        consumer.assign(list(wanted))
        for tp, end in wanted.items():
            consumer.seek(tp, max(0, end - LOOKBACK))
        pending = set(wanted)
        deadline = time.monotonic() + timeout_s
        while pending and time.monotonic() < deadline:
            fetched = await consumer.getmany(*pending, timeout_ms=FETCH_MS)
            for tp, records in fetched.items():
                offsets = [record.offset for record in records if record.offset < wanted[tp]]
                if offsets:
                    last[tp] = max(last.get(tp, -1), *offsets)
            pending = {tp for tp in pending if await consumer.position(tp) < wanted[tp]}
    finally:
        await consumer.stop()
    read_to_end = {tp: offset for tp, offset in last.items() if tp not in pending}
    return {tp: (read_to_end[key] + 1 if (key := TopicPartition(tp.topic, tp.partition)) in read_to_end else end)
            for tp, end in ends.items()}
