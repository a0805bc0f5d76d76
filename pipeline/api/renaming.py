"""A bank rename through the API: pipeline/bank_rename.py's three steps, each written in chunks
and read back before the next, with progress in the log for large banks."""

from __future__ import annotations

import logging
import time
from typing import Any

from pipeline.api.state import ApiState
from pipeline.bank_rename import Write, bank_swap, moved_signals, retired_signals, unfinished_rename

log = logging.getLogger(__name__)

CHUNK = 5_000  # records per write, each read back (within ApiState.write_timeout_s) before the next
PROGRESS_EVERY_S = 5.0


class RenameProgress:
    """Logs how far a rename has come, at most every few seconds, and once at the end."""

    def __init__(self, old: str, new: str, signals: int) -> None:
        self.fields = {"bank": old, "new_name": new, "signals": signals}
        self.started = self.last = time.monotonic()
        self.done = 0

    def advance(self, step: str, count: int) -> None:
        self.done += count
        if time.monotonic() - self.last >= PROGRESS_EVERY_S:
            self.last = time.monotonic()
            log.info("renaming bank", extra={**self.fields, "step": step, "records_written": self.done})

    def finish(self) -> None:
        log.info("bank renamed", extra={**self.fields, "records_written": self.done,
                                        "seconds": round(time.monotonic() - self.started, 2)})


async def _write_in_chunks(state: ApiState, writes: list[Write], step: str, progress: RenameProgress) -> None:
    for start in range(0, len(writes), CHUNK):
        chunk = writes[start:start + CHUNK]
        await state.write(chunk)
        progress.advance(step, len(chunk))


async def rename_bank(state: ApiState, record: dict[str, Any], new: str) -> dict[str, Any]:
    """Move the bank of `record` (its configuration as it should end up) to the name `new`; the
    new bank record once every view that has read the writes matches under the new name only."""
    view, old = state.view, record["name"]
    moved, moved_from = moved_signals(view, old, new)
    progress = RenameProgress(old, new, len(moved))
    log.info("renaming bank", extra={**progress.fields, "step": "start"})
    await _write_in_chunks(state, moved, "signals under the new name", progress)
    swap = bank_swap(view, record, new)
    await state.write(swap)
    progress.advance("bank record", len(swap))
    await _write_in_chunks(state, retired_signals(view, old, new, moved_from), "old signals removed", progress)
    progress.finish()
    return view.banks[new]


async def finish_rename(state: ApiState, old: str, new: str) -> dict[str, Any] | None:
    """The same rename asked again after it was interrupted past its bank record (a client
    retrying): the old name's remaining signals moved and removed; None if there is no such rename."""
    if not unfinished_rename(state.view, old, new):
        return None
    left = retired_signals(state.view, old, new, {})
    progress = RenameProgress(old, new, sum(1 for _, _, record in left if record is None))
    await _write_in_chunks(state, left, "old signals removed", progress)
    progress.finish()
    return state.view.banks[new]
