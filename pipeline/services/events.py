"""Consumed events decoded by their topic's codec; those that do not decode become dead letters."""

from __future__ import annotations

from typing import Any, AsyncIterator

import faust

from pipeline import event_ids, metrics
from pipeline import topics as T
from pipeline.services.delivery import AtLeastOnce
from pipeline.services.output import Output
from schemas.codec import DecodeError


def position(event: faust.EventT) -> event_ids.Position:
    """Where a consumed event sits in its topic: what identifies it across a replay."""
    message = event.message
    return message.topic, message.partition, message.offset


class EventDecoder:
    def __init__(self, output: Output, delivery: AtLeastOnce) -> None:
        self.output = output
        self.delivery = delivery

    async def decode_batch(
        self, events: list[faust.EventT], spec: T.TopicSpec, stage: str, dead_letters: bool = True
    ) -> tuple[list[faust.EventT], list[dict[str, Any]]]:
        """The events of a batch that decode, with their records; the others go to the dead letters.

        Consumers that read the same records in several groups (shard workers) let one of them
        write the dead letter.
        """
        good, records = [], []
        metrics.RECORDS_IN.labels(stage).inc(len(events))
        for event in events:
            try:
                records.append(spec.codec.decode(event.value))
                good.append(event)
            except DecodeError as exc:
                if dead_letters:
                    await self.output.send_dead_letter(event.message, str(exc), stage)
        return good, records

    async def records(
        self, stream: faust.StreamT, spec: T.TopicSpec, stage: str
    ) -> AsyncIterator[tuple[faust.EventT, dict[str, Any]]]:
        """Decoded records of a stream, one at a time (each a unit of the delivery mode);
        undecodable ones go to the dead letters."""
        async for event in self.delivery.events(stream):
            metrics.RECORDS_IN.labels(stage).inc()
            try:
                record = spec.codec.decode(event.value)
            except DecodeError as exc:
                await self.output.send_dead_letter(event.message, str(exc), stage)
                continue
            yield event, record
