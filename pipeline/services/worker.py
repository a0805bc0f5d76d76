"""What a worker hands its agents: its settings, topics and services (agents import this, not the app)."""

from __future__ import annotations

from dataclasses import dataclass

import faust

from pipeline import topics as T
from pipeline.config import Settings
from pipeline.services.bank_view import BankViewService
from pipeline.services.content_ids import ContentIds
from pipeline.services.delivery import AtLeastOnce
from pipeline.services.events import EventDecoder
from pipeline.services.output import Output
from pipeline.services.pools import ExecutorPools
from pipeline.state.bank_view import BankView


@dataclass(frozen=True)
class WorkerServices:
    settings: Settings
    topics: dict[str, faust.TopicT]  # by topic suffix: raw-bytes Faust topics
    output: Output
    delivery: AtLeastOnce  # or ExactlyOnce: agents take their input through it
    events: EventDecoder
    bank_view: BankViewService
    content_ids: ContentIds
    pools: ExecutorPools

    def topic(self, spec: T.TopicSpec) -> faust.TopicT:
        return self.topics[spec.suffix]

    @property
    def view(self) -> BankView:
        """The bank view as far as it has read (agents wait for `bank_view.ready()` first)."""
        return self.bank_view.view

    async def stop(self) -> None:
        await self.bank_view.stop()
        self.pools.shutdown()
