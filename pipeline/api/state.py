"""The API process's services: its own bank view of the log (with index replicas) and feedback
tallies, followed from the topics and restored from its own view snapshot at start (as the
worker's); its lookup coalescer; its producer; content-id claims; and the write path that answers
only after that view has read the write back, so a client reads its own writes.
"""

from __future__ import annotations

import asyncio
from typing import Sequence

from aiokafka import AIOKafkaProducer

from connectors.exchanges.view import ExchangeView
from pipeline.api.activity import Activity
from pipeline.config import Settings
from pipeline.recent.feed import RecentFeed
from pipeline.recent.ring import RecentRing
from pipeline.api.coalescer import LookupCoalescer
from pipeline.api.limits import RateLimits
from pipeline.services.bank_view import BankViewService, LoadedView
from pipeline.services.content_ids import ContentIds
from pipeline.services.feedback_tallies import FeedbackTallies
from pipeline.services.output import Output, Write, new_producer
from pipeline.services.read_back import ReadBackWriter
from pipeline.state.bank_view import BankView
from pipeline.state.snapshot import snapshot_path

SNAPSHOT_ROLE = "api"  # <data_dir>/view-snapshots/api.snapshot


class ApiState:
    """The services the API's routes use, composed for one API process."""

    def __init__(self, settings: Settings, write_timeout_s: float = 15.0, loaded: LoadedView | None = None,
                 saves_snapshots: bool = True) -> None:
        """`loaded`: a view already read up to its positions (pipeline/api/serve.py forks several API
        processes from it); `saves_snapshots`: whether this process writes the API's view snapshot."""
        self.settings = settings
        self.view = loaded.view if loaded is not None else BankView()
        self.feedback = FeedbackTallies(self.view)
        self.exchanges = ExchangeView()
        self.bank_view = BankViewService(settings, self.view, "api-state",
                                         snapshot_path=snapshot_path(settings, SNAPSHOT_ROLE) if saves_snapshots else None,
                                         listeners={**self.feedback.listeners, **self.exchanges.listeners},
                                         loaded=loaded)
        self.lookups = LookupCoalescer(self.view, settings)
        self._producer: AIOKafkaProducer | None = None
        self.output = Output(settings, self._started_producer)
        self.writer = ReadBackWriter(self.output, self.bank_view, write_timeout_s)
        self.content_ids = ContentIds(self.output, lambda: self.view.content_id_base)
        self.ring = RecentRing(settings.recent_horizon_ms, settings.recent_cap, settings.recent_bucket_ms)
        self._recent = RecentFeed(settings, self.ring, name="api-recent")
        self._feeding: asyncio.Task | None = None
        self.activity = Activity(settings, settings.worker_group)
        self.limits = RateLimits.from_settings(settings)  # the JSON routes' and the UI's, one budget per client

    def _started_producer(self) -> AIOKafkaProducer:
        assert self._producer is not None, "ApiState.start() first"
        return self._producer

    async def start(self) -> None:
        self._producer = new_producer(self.settings)
        await self._producer.start()
        await self.bank_view.start()
        await self._recent.start()
        self._feeding = asyncio.create_task(self._feed_forever(), name="api-recent")
        if self.bank_view.loaded is not None:
            # one of several processes on one port: it takes connections once it has read the
            # tail (the port is bound after start), so a lookup never reaches one not yet ready
            await self.bank_view.ready()
        await self.activity.start()

    async def _feed_forever(self) -> None:
        while True:
            await self._recent.poll(timeout_ms=500)

    async def stop(self) -> None:
        await self.activity.stop()
        if self._feeding is not None:
            self._feeding.cancel()
        await self._recent.stop()
        await self.bank_view.stop()
        self.lookups.stop()
        if self._producer is not None:
            await self._producer.stop()

    @property
    def ready(self) -> bool:
        return self.bank_view.is_ready

    @property
    def stale(self) -> bool:
        return self.bank_view.stale

    async def write(self, writes: Sequence[Write]) -> None:
        """Produce records (None = tombstone) and wait until this process's view has read them."""
        await self.writer.write(writes)

    async def next_content_id(self, bank: str) -> int:
        return await self.content_ids.claim_one(bank)

    async def next_content_ids(self, bank: str, count: int) -> list[int]:
        return await self.content_ids.claim(bank, count)
