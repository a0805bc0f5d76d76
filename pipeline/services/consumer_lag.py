"""How far a worker's consumer group is behind on the input partitions this worker is assigned:
the group's committed offset against each partition's end, as `kafka-consumer-groups.sh` shows
it, measured every few seconds and exported as hmas_consumer_lag_records.

Each worker reports only the partitions it is assigned, so a sum over the workers of a group is
the group's lag, and a partition moves with its assignment at a rebalance.
"""

from __future__ import annotations

import logging
from typing import Iterable

import faust
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import TopicPartition
from prometheus_client.core import Metric

from pipeline import kafka_clients, metrics
from pipeline import topics as T
from pipeline.config import Settings

log = logging.getLogger(__name__)
LAG_EVERY_S = 10.0


class ConsumerLagWatch:
    def __init__(self, settings: Settings, app: faust.App, group: str) -> None:
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
            ends = await self.app.consumer.highwaters(*assigned)
            committed = await self._admin.list_consumer_group_offsets(
                self.group, partitions=[TopicPartition(tp.topic, tp.partition) for tp in assigned])
        except Exception as exc:  # a broker hiccup: keep the previous reading
            log.warning("consumer lag not measured", extra={"error": type(exc).__name__, "reason": str(exc)})
            return
        lags = {}
        for tp in assigned:
            done = committed.get(TopicPartition(tp.topic, tp.partition))
            end = ends.get(tp, 0)
            position = done.offset if done is not None and done.offset >= 0 else 0
            lags[(self.inputs[tp.topic], tp.partition)] = max(0, end - position)
        self.lags = lags

    def metric_families(self) -> Iterable[Metric]:
        return [metrics.consumer_lag_family(self.group, dict(self.lags))]

    async def stop(self) -> None:
        metrics.STATE.remove_source("consumer_lag", self.metric_families)
        if self._admin is not None:
            await self._admin.close()
            self._admin = None
