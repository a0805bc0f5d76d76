"""Lookups of concurrent API requests searched together, on the API's own index thread.

A lookup that arrives while no search runs is searched at once (no added wait); lookups that
arrive while a search runs queue up and form the next batch, which starts as soon as the search
before it ends. So under load each index search serves many requests, the event loop parses and
answers requests on one core while the compiled search (which releases the GIL) runs on the
other, and a quiet API answers each lookup as soon as it comes.

A batch is bounded by the time it will take, not by a count: its size is what the recent cost
per lookup (`SearchCost`) fits in `BATCH_BUDGET_S`, so a lookup arriving just after a batch
started waits for at most about that long before its own search begins, whatever the bank's size.
A lone lookup whose search costs less than handing it to the thread is searched on the loop.

Each request gets its own judged match record, as `match_batch` would give it alone. A batch
that fails is retried one lookup at a time, so an error reaches only the request that caused it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from pipeline.config import Settings
from pipeline.matching import judge_batch, lookup_batch, lookup_batch_on
from pipeline.state.bank_view import BankView

log = logging.getLogger(__name__)
MAX_BATCH = 512  # lookups per index search at most, however cheap they are
BATCH_BUDGET_S = 0.003  # what one index search may take: the wait it adds to a lookup queued behind it
# A lone lookup cheaper than this is searched on the event loop itself: handing it to the index
# thread and back (two wake-ups) costs about as much as the search would hold the loop.
ON_LOOP_BELOW_S = 0.0002


class SearchCost:
    """The recent cost of one lookup in an index search (CPU seconds of the searching thread, so a
    busy machine does not shrink the batches; a moving average over batches), from which a batch's
    time is estimated before it starts."""

    WEIGHT = 0.2  # of the newest batch in the average

    def __init__(self, initial_s: float = 0.0003) -> None:
        self.per_lookup_s = initial_s

    def observe(self, lookups: int, elapsed_s: float) -> None:
        if lookups:
            self.per_lookup_s += self.WEIGHT * (elapsed_s / lookups - self.per_lookup_s)

    def fitting(self, budget_s: float, most: int) -> int:
        """How many lookups one search may take to last about `budget_s` (at least one)."""
        return max(1, min(most, int(budget_s / max(self.per_lookup_s, 1e-9))))


@dataclass
class _Pending:
    hashed: dict[str, Any]
    sample: bool
    answer: asyncio.Future = field(repr=False)


class LookupCoalescer:
    def __init__(self, view: BankView, settings: Settings, max_batch: int = MAX_BATCH,
                 budget_s: float = BATCH_BUDGET_S) -> None:
        self.view = view
        self.settings = settings
        self.max_batch = max_batch
        self.budget_s = budget_s
        self.cost = SearchCost()
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
                size = self.cost.fitting(self.budget_s, self.max_batch)
                batch, self._queue = self._queue[:size], self._queue[size:]
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
        if len(part) == 1 and self.cost.per_lookup_s < ON_LOOP_BELOW_S:
            started = time.thread_time()
            records, hits = lookup_batch(hashed, self.view, self.settings, sample)
            self.cost.observe(len(part), time.thread_time() - started)
        else:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(1, thread_name_prefix="api-index")
            records, hits = await lookup_batch_on(self._executor, hashed, self.view, self.settings, sample,
                                                  searched=lambda seconds: self.cost.observe(len(part), seconds))
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
