"""The API process's own view of the log: banks, bank signals (with index replicas), quarantine and
feedback tallies, followed from the topics; and the write path that answers only after that view
has read the write back, so a client reads its own writes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from typing import Any

from aiokafka import AIOKafkaProducer

from pipeline import topics as T
from pipeline.config import Settings
from pipeline.banks import content_id_from_offset
from pipeline.config_keys import RESET_AT
from pipeline.recent.feed import RecentFeed
from pipeline.recent.ring import RecentRing
from pipeline.state.bank_view import BankView
from pipeline.state.log_reader import Change, CompactedTopicFollower

log = logging.getLogger(__name__)

FOLLOWED = T.VIEW_TOPICS + (T.FEEDBACK,)


class NotCaughtUp(Exception):
    """The view did not read a write back in time."""


class ApiState:
    def __init__(self, settings: Settings, write_timeout_s: float = 15.0) -> None:
        self.settings = settings
        self.view = BankView()
        self.tallies: dict[str, dict[str, int]] = defaultdict(lambda: {"harmful": 0, "benign": 0})
        self.feedback: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.write_timeout_s = write_timeout_s
        self.follower = CompactedTopicFollower(settings, FOLLOWED, self._apply, name="api-state")
        self._producer: AIOKafkaProducer | None = None
        self.behind_since: float | None = None
        self._watch: asyncio.Task | None = None
        self.ring = RecentRing(settings.recent_horizon_ms, settings.recent_cap, settings.recent_bucket_ms)
        self._feed = RecentFeed(settings, self.ring, name="api-recent")
        self._feeding: asyncio.Task | None = None

    async def start(self) -> None:
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self.settings.bootstrap_servers, acks="all", enable_idempotence=True,
            max_request_size=self.settings.max_request_bytes,
        )
        await self._producer.start()
        await self.follower.start()
        await self.start_stale_watch()
        await self._feed.start()
        self._feeding = asyncio.create_task(self._feed_forever())

    async def _feed_forever(self) -> None:
        while True:
            await self._feed.poll(timeout_ms=500)

    async def stop(self) -> None:
        for task in (self._watch, self._feeding):
            if task is not None:
                task.cancel()
        await self._feed.stop()
        await self.follower.stop()
        if self._producer is not None:
            await self._producer.stop()

    @property
    def ready(self) -> bool:
        return self.follower.ready.is_set()

    async def _apply(self, spec: T.TopicSpec, changes: list[Change]) -> None:
        if spec is not T.FEEDBACK:
            self.view.apply(spec, changes)
            if spec is T.CONFIG and any(key == RESET_AT for key, _ in changes):
                self._forget_feedback_before(self.view.reset_at_ms)
            return
        for _key, record in changes:
            if record is not None and record["decided_at"] >= self.view.reset_at_ms:
                self.feedback[record["content_id"]].append(record)
                for sid in record["signals"]:
                    self.tallies[sid][record["verdict"]] += 1

    def _forget_feedback_before(self, reset_at_ms: int) -> None:
        """A factory reset: feedback (a delete-policy topic) is ignored from before it."""
        kept = [r for records in self.feedback.values() for r in records if r["decided_at"] >= reset_at_ms]
        self.feedback.clear()
        self.tallies.clear()
        for record in kept:
            self.feedback[record["content_id"]].append(record)
            for sid in record["signals"]:
                self.tallies[sid][record["verdict"]] += 1

    async def write(self, writes: list[tuple[T.TopicSpec, str, dict[str, Any] | None]]) -> None:
        """Produce records (None = tombstone) and wait until this process's view has read them."""
        assert self._producer is not None
        last: dict[str, int] = {}
        pending = []
        for spec, key, record in writes:
            value = None if record is None else spec.codec.encode(record, "json")
            pending.append(await self._producer.send(spec.name(self.settings), value, key=key.encode()))
        for meta in await asyncio.gather(*pending):
            last[meta.topic] = max(last.get(meta.topic, -1), meta.offset)

        deadline = asyncio.get_running_loop().time() + self.write_timeout_s
        while not all(self.follower.positions.get(topic, 0) > offset for topic, offset in last.items()):
            if asyncio.get_running_loop().time() > deadline:
                raise NotCaughtUp(f"the write was not read back within {self.write_timeout_s:.0f}s")
            await asyncio.sleep(0.01)

    async def next_content_id(self, bank: str) -> int:
        [content_id] = await self.next_content_ids(bank, 1)
        return content_id

    async def next_content_ids(self, bank: str, count: int) -> list[int]:
        """Bank content ids are integers handed out in order (1, 2, 3...), as upstream HMA does.

        Each id is the offset of a claim record on the one-partition hma.content-ids topic, counted
        from the base a factory reset sets: unique across API replicas and workers, stable across
        restarts.
        """
        assert self._producer is not None
        claim = T.CONTENT_IDS.codec.encode({"bank": bank, "claimed_at": int(time.time() * 1000)})
        topic = T.CONTENT_IDS.name(self.settings)
        pending = [await self._producer.send(topic, claim, key=bank.encode()) for _ in range(count)]
        return [content_id_from_offset(meta.offset, self.view.content_id_base) for meta in await asyncio.gather(*pending)]

    async def start_stale_watch(self, every_s: float = 5.0) -> None:
        """Track how long the view has been behind the topics' ends (for /status INDEX-STALE)."""
        async def watch() -> None:
            while True:
                await asyncio.sleep(every_s)
                try:
                    behind = await self.follower.behind()
                except Exception:  # a broker hiccup: keep the previous verdict
                    continue
                if not behind:
                    self.behind_since = None
                elif self.behind_since is None:
                    self.behind_since = time.monotonic()
        self._watch = asyncio.create_task(watch())

    @property
    def stale(self) -> bool:
        return self.behind_since is not None and time.monotonic() - self.behind_since > self.settings.index_stale_s
