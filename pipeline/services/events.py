"""Consumed events decoded by their topic's codec; those that do not decode become dead letters.

No input stops an agent: the codec raises DecodeError for anything it cannot read (the property
tests in tests/test_fuzz_decoders.py hold it to that), and any other error of a decode is a dead
letter too, logged with its stack.
"""

from __future__ import annotations

import logging
from typing import Any, AsyncIterator

import faust

from pipeline import event_ids, metrics
from pipeline import topics as T
from pipeline.services.delivery import AtLeastOnce
from pipeline.services.output import Output
from schemas.codec import DecodeError

log = logging.getLogger(__name__)

def decoded(spec: T.TopicSpec, event: faust.EventT) -> dict[str, Any] | str:
    """The event's record, or the reason it is a dead letter."""
    try:
        return spec.codec.decode(event.value)
    except DecodeError as exc:
        return str(exc)
    except Exception as exc:  # a codec defect must not stop the agent
        log.exception("unexpected decoding failure", extra={"topic": event.message.topic, "offset": event.message.offset})
        return f"unexpected error decoding {spec.codec.full_name}: {type(exc).__name__}"


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
        metrics.took_batch(stage, spec.suffix, len(events))
        for event in events:
            record = decoded(spec, event)
            if isinstance(record, dict):
                records.append(record)
                good.append(event)
            elif dead_letters:
                await self.output.send_dead_letter(event.message, record, stage)
        return good, records

    async def records(
        self, stream: faust.StreamT, spec: T.TopicSpec, stage: str
    ) -> AsyncIterator[tuple[faust.EventT, dict[str, Any]]]:
        """Decoded records of a stream, one at a time (each a unit of the delivery mode);
        undecodable ones go to the dead letters."""
        async for event in self.delivery.events(stream):
            metrics.records_in(stage, spec.suffix).inc()
            record = decoded(spec, event)
            if isinstance(record, str):
                await self.output.send_dead_letter(event.message, record, stage)
                continue
            yield event, record
