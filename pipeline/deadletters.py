"""Dead letters: input that could not be processed, kept with its original bytes and a reason."""

from __future__ import annotations

import base64
import logging
from typing import Any

from pipeline import event_ids
from pipeline.clock import now_ms

log = logging.getLogger(__name__)


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode("ascii")


def dead_letter(
    topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None, reason: str, stage: str,
    max_value_bytes: int,
) -> dict[str, Any]:
    """A hma.dead-letters record; the reason is logged, the bytes are not.

    A value too large to carry (only possible when the input topic allows larger records than
    configured here) is left out and the reason says so; topic, partition and offset still point at it.
    """
    if value is not None and len(value) > max_value_bytes:
        reason += f" (original value of {len(value)} bytes not copied: over {max_value_bytes}; read it at the offset)"
        value = None
    log.warning(
        "dead letter",
        extra={"stage": stage, "topic": topic, "partition": partition, "offset": offset, "reason": reason},
    )
    return {
        "topic": topic,
        "partition": partition,
        "offset": offset,
        "original_key_b64": _b64(key),
        "original_value_b64": _b64(value),
        "reason": reason,
        "stage": stage,
        "failed_at": now_ms(),
        "event_id": event_ids.dead_letter((topic, partition, offset), key, stage),
    }
