"""Lookups of concurrent API requests searched together, on the API's own index thread.

A lookup that arrives while no search runs is searched at once (alone: no added wait); lookups
that arrive while a search runs queue up and form the next batch. So under load each index
search serves many requests (the kernels prefetch across the queries of a batch), the event loop
parses and answers requests on one core while the compiled search (which releases the GIL) runs
on the other, and a quiet API answers each lookup as soon as it comes.

Each request gets its own judged match record, as `match_batch` would give it alone. A batch
that fails is retried one lookup at a time, so an error reaches only the request that caused it.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from pipeline.config import Settings
from pipeline.matching import judge_batch, lookup_batch, lookup_batch_on
from pipeline.state.bank_view import BankView

log = logging.getLogger(__name__)
MAX_BATCH = 512  # lookups per index search; more wait for the next one
# A lone lookup is searched on the event loop itself: handing it to the index thread and back costs
# more than the search saves the loop, and requests arriving meanwhile form the next batch anyway.
ALONE = 1


@dataclass
class _Pending:
    hashed: dict[str, Any]
    sample: bool
    answer: asyncio.Future = field(repr=False)


class LookupCoalescer:
    def __init__(self, view: BankView, settings: Settings, max_batch: int = MAX_BATCH) -> None:
        self.view = view
        self.settings = settings
        self.max_batch = max_batch
        self._queue: list[_Pending] = []
        self._draining: asyncio.Task | None = None
        self._executor: ThreadPoolExecutor | None = None
        self.batches = 0  # index searches made, and lookups they served: the mean batch size shows
        self.lookups = 0

    async def match(self, hashed: dict[str, Any], sample: bool = True) -> dict[str, Any]:
        """The judged match record of one hashed upload (`sample=False`: upstream's bypass_coinflip)."""
        answer = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(hashed, sample, answer))
        if self._draining is None:
            self._draining = asyncio.create_task(self._drain(), name="api-lookups")
        return await answer

    async def _drain(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch:]
                batch = [p for p in batch if not p.answer.done()]  # requests gone meanwhile
                for sample in (True, False):
                    part = [p for p in batch if p.sample is sample]
                    if part:
                        await self._answer(part, sample)
        finally:
            self._draining = None

    async def _answer(self, part: list[_Pending], sample: bool) -> None:
        try:
            records = await self._search(part, sample)
        except Exception as exc:
            if len(part) > 1:  # find the lookup that failed: the others still get their answers
                for pending in part:
                    await self._answer([pending], sample)
                return
            records = [exc]
        for pending, record in zip(part, records):
            if pending.answer.done():
                continue
            if isinstance(record, Exception):
                pending.answer.set_exception(record)
            else:
                pending.answer.set_result(record)

    async def _search(self, part: list[_Pending], sample: bool) -> list[dict[str, Any]]:
        hashed = [p.hashed for p in part]
        if len(part) <= ALONE:
            records, hits = lookup_batch(hashed, self.view, self.settings, sample)
        else:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(1, thread_name_prefix="api-index")
            records, hits = await lookup_batch_on(self._executor, hashed, self.view, self.settings, sample)
        self.batches += 1
        self.lookups += len(part)
        return judge_batch(records, hits, self.view, sample=sample)

    def stop(self) -> None:
        if self._draining is not None:
            self._draining.cancel()
        for pending in self._queue:
            pending.answer.cancel()
        self._queue = []
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
