"""The API's write path: records produced, then the answer held until the process's own bank view
has read them back, so that a client reads its own writes."""

from __future__ import annotations

import asyncio
from typing import Sequence

from pipeline.services.bank_view import BankViewService
from pipeline.services.output import Output, Write

READ_BACK_POLL_S = 0.01


class NotCaughtUp(Exception):
    """The view did not read a write back in time."""


class ReadBackWriter:
    def __init__(self, output: Output, bank_view: BankViewService, timeout_s: float = 15.0) -> None:
        self.output = output
        self.bank_view = bank_view
        self.timeout_s = timeout_s

    async def write(self, writes: Sequence[Write]) -> None:
        """Produce records (None = tombstone) and wait until the view has read them."""
        last: dict[str, int] = {}
        for meta in await self.output.deliver(writes):
            last[meta.topic] = max(last.get(meta.topic, -1), meta.offset)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        while not all(self.bank_view.positions.get(topic, 0) > offset for topic, offset in last.items()):
            if loop.time() > deadline:
                raise NotCaughtUp(f"the write was not read back within {self.timeout_s:.0f}s")
            await asyncio.sleep(READ_BACK_POLL_S)
