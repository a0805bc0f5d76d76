"""Bank content ids: integers handed out in order (1, 2, 3...), as upstream HMA does.

Each id is the offset of a claim record on the one-partition hma.content-ids topic, counted from
the base that a factory reset sets (hma.config CONTENT_ID_BASE, pipeline/config_keys.py): unique across API replicas,
workers and tools, stable across restarts. Every writer claims through `ContentIds`.
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable, Mapping

from pipeline import topics as T
from pipeline.clock import now_ms
from pipeline.config import Settings
from pipeline.config_keys import CONTENT_ID_BASE
from pipeline.services.output import Output, new_producer
from pipeline.state.log_reader import read_latest


def content_id_base(config: Mapping[str, dict[str, Any]]) -> int:
    """The content-id base among hma.config's current records (key -> record)."""
    record = config.get(CONTENT_ID_BASE)
    return int(record["number"]) if record else 0


def read_content_id_base(settings: Settings) -> int:
    """Blocking: the content-id base, read from hma.config (without a bank view and its index)."""
    return content_id_base(read_latest(settings, T.CONFIG))


def content_id_from_offset(offset: int, base: int) -> int:
    """The bank content id that a claim at this hma.content-ids offset stands for."""
    return offset - base + 1


class ContentIds:
    """Claims bank content ids through an output; `base` reads the current base (from a bank view)."""

    def __init__(self, output: Output, base: Callable[[], int]) -> None:
        self.output = output
        self.base = base

    async def claim(self, bank: str, count: int = 1) -> list[int]:
        """`count` new ids for a bank, in order."""
        claim = {"bank": bank, "claimed_at": now_ms()}
        offsets = await self.output.deliver_offsets([(T.CONTENT_IDS, bank, claim)] * count)
        base = self.base()
        return [content_id_from_offset(offset, base) for offset in offsets]

    async def claim_one(self, bank: str) -> int:
        [content_id] = await self.claim(bank, 1)
        return content_id


def claim_content_ids(settings: Settings, bank: str, count: int = 1) -> list[int]:
    """Blocking, for command-line tools: ids claimed with a producer of their own, the base read
    from hma.config."""
    base = read_content_id_base(settings)

    async def claim() -> list[int]:
        producer = new_producer(settings)
        await producer.start()
        try:
            return await ContentIds(Output(settings, lambda: producer), lambda: base).claim(bank, count)
        finally:
            await producer.stop()

    return asyncio.run(claim())
