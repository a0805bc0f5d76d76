"""Fills a ring from hma.hashes: all partitions, from the ring's horizon on (offsets for that time),
so that a restarted process refills its ring from the log alone."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer, TopicPartition

from pipeline import kafka_clients
from pipeline import topics as T
from pipeline.clock import now_ms
from pipeline.config import Settings
from pipeline.recent.ring import RecentRing
from pipeline.state.log_reader import topic_partitions
from schemas.codec import DecodeError


class RecentFeed:
    def __init__(self, settings: Settings, ring: RecentRing, name: str = "recent") -> None:
        self.settings, self.ring, self.name = settings, ring, name
        self._consumer: AIOKafkaConsumer | None = None

    async def start(self) -> None:
        topic = T.HASHES.name(self.settings)
        consumer = kafka_clients.aio_consumer(self.settings, group_id=None, enable_auto_commit=False, auto_offset_reset="earliest",
                                              client_id=f"hmas-{self.name}",
                                              isolation_level="read_committed")  # hashes of aborted transactions are not uploads
        await consumer.start()
        parts = sorted(await asyncio.to_thread(topic_partitions, self.settings, topic))
        partitions = [TopicPartition(topic, p) for p in parts]
        consumer.assign(partitions)
        since = now_ms() - self.ring.horizon_ms
        offsets = await consumer.offsets_for_times({tp: since for tp in partitions})
        ends = await consumer.end_offsets(partitions)  # explicit: a lazy seek-to-end could skip records
        for tp in partitions:
            consumer.seek(tp, ends[tp] if offsets[tp] is None else offsets[tp].offset)
        self._consumer = consumer

    async def poll(self, timeout_ms: int = 100) -> int:
        """Read what has arrived into the ring; drop what is past the horizon. Returns records read."""
        assert self._consumer is not None
        batches = await self._consumer.getmany(timeout_ms=timeout_ms, max_records=5000)
        count = 0
        for records in batches.values():
            for r in records:
                count += 1
                try:
                    self.ring.add(T.HASHES.codec.decode(r.value), r.partition, r.offset)
                except DecodeError:
                    continue  # the matcher dead-letters it
        self.ring.evict(now_ms())
        return count

    async def catch_up(self, timeout_s: float) -> bool:
        """Read up to where hma.hashes ends now, so that a signal banked now is searched against every
        hash written before it. False when the deadline passed first (the search goes on regardless)."""
        assert self._consumer is not None
        partitions = list(self._consumer.assignment())
        ends = await self._consumer.end_offsets(partitions)
        deadline = asyncio.get_running_loop().time() + timeout_s
        while True:
            behind = [tp for tp in partitions if await self._consumer.position(tp) < ends[tp]]
            if not behind:
                return True
            if asyncio.get_running_loop().time() > deadline:
                return False
            await self.poll()

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
