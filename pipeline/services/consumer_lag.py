"""How far a consumer group is behind: the group's committed offset against each partition's end,
as `kafka-consumer-groups.sh` shows it (`group_lag`, the one place it is computed: the worker's
hmas_consumer_lag_records and the API's lag and throughput charts, pipeline/api/activity.py).

A worker measures it every few seconds on the input partitions it is assigned (`ConsumerLagWatch`)
and exports it as hmas_consumer_lag_records. Each worker reports only the partitions it is
assigned, so a sum over the workers of a group is the group's lag, and a partition moves with its
assignment at a rebalance.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Awaitable, Callable, Iterable, Mapping, Sequence

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import TopicPartition
from prometheus_client.core import Metric

from pipeline import kafka_clients, metrics
from pipeline import topics as T
from pipeline.config import Settings

if TYPE_CHECKING:  # the API imports group_lag without loading Faust
    import faust

log = logging.getLogger(__name__)
LAG_EVERY_S = 10.0
EndOffsets = Callable[[list[TopicPartition]], Awaitable[Mapping[TopicPartition, int]]]


@dataclass(frozen=True)
class PartitionLag:
    committed: int  # the group's committed offset; 0 while it has committed none
    end: int  # the partition's end offset, as the caller's consumer reads it

    @property
    def lag(self) -> int:
        """Records after the group's committed offset (never negative: the end may be read first)."""
        return max(0, self.end - self.committed)


async def group_lag(admin: AIOKafkaAdminClient, group: str, partitions: Sequence[TopicPartition],
                    end_offsets: EndOffsets) -> dict[TopicPartition, PartitionLag]:
    """The committed offset and the end of each partition for `group`. `end_offsets` is the
    caller's consumer's (a read_committed consumer ends at the last stable offset)."""
    wanted = [TopicPartition(tp.topic, tp.partition) for tp in partitions]
    ends = await end_offsets(wanted)
    committed = await admin.list_consumer_group_offsets(group, partitions=wanted)
    lags = {}
    for tp in wanted:
        done = committed.get(tp)
        lags[tp] = PartitionLag(done.offset if done is not None and done.offset >= 0 else 0, ends.get(tp, 0))
    return lags


class ConsumerLagWatch:
    def __init__(self, settings: Settings, app: "faust.App", group: str) -> None:
        self.settings = settings
        self.app = app
        self.group = group
        self.inputs = {spec.name(settings): spec.suffix for spec in T.ALL_TOPICS}  # not Faust's changelogs
        self.lags: dict[tuple[str, int], int] = {}  # (topic suffix, partition) -> records
        self._admin: AIOKafkaAdminClient | None = None

    def register(self) -> None:
        """Measure every LAG_EVERY_S on the worker's loop; export while the worker runs."""
        self.app.timer(LAG_EVERY_S, name=f"{self.group}.consumer-lag")(self.measure)
        metrics.STATE.set_source("consumer_lag", self.metric_families)

    async def measure(self) -> None:
        assigned = [tp for tp in self.app.consumer.assignment() if tp.topic in self.inputs]
        if not assigned:
            self.lags = {}
            return
        try:
            if self._admin is None:
                self._admin = AIOKafkaAdminClient(**kafka_clients.aiokafka_options(self.settings))
                await self._admin.start()
            lags = await group_lag(self._admin, self.group, assigned, lambda parts: self.app.consumer.highwaters(*parts))
        except Exception as exc:  # a broker hiccup: keep the previous reading
            log.warning("consumer lag not measured", extra={"error": type(exc).__name__, "reason": str(exc)})
            return
        self.lags = {(self.inputs[tp.topic], tp.partition): lag.lag for tp, lag in lags.items()}

    def metric_families(self) -> Iterable[Metric]:
        return [metrics.consumer_lag_family(self.group, dict(self.lags))]

    async def stop(self) -> None:
        metrics.STATE.remove_source("consumer_lag", self.metric_families)
        if self._admin is not None:
            await self._admin.close()
            self._admin = None
