"""Renaming a bank as upstream HMA does (PUT /c/bank/<bank> with another name): the bank and its
content move as a unit, content ids kept, its signals moved to the new name in Kafka.

The writes come in three steps, each read back before the next, so that a matcher reading the
two topics at any point, in either order, matches an upload under exactly one of the two names:

1. `moved`: the bank's signals under the new name, each naming the old bank in its metadata
   (`renamed_from`): while the new name has no bank record, views count them as the old bank's,
   one hit per signal (pipeline/state/bank_view.py `BankView.bank_of`).
2. `swap`: the new bank record with `renamed_from`, which takes the old bank's place in every view
   in one step (hma.banks has one partition; pipeline/state/bank_view.py): from then on the old
   name's signals count as the new bank's. Other banks that name the old bank
   (negative banks, confirmed bank) are pointed at the new name in the same step, and the old
   record gets its tombstone.
3. `retired`: tombstones for the old name's signals, after moving again any that were added to
   the old name or changed there (disabled, annotated, confirmed by feedback) while steps 1 and 2
   ran; feedback's confirmed copies have their provenance (`confirmed_from`) pointed at the new
   name.

Quarantine records are keyed by signal id and feedback names signal ids, neither names a bank:
both follow the renamed signals without a write.
"""

from __future__ import annotations

from typing import Any

from pipeline import topics as T
from pipeline.banks import RENAMED_FROM, bank_signal_key, check_bank_name
from pipeline.clock import now_ms
from pipeline.state.bank_view import BankEntry, BankView

Write = tuple[T.TopicSpec, str, dict[str, Any] | None]
Moved = dict[str, tuple[int, int, dict[str, str]]]  # old key -> what was moved (content id, disable_until_ts, metadata)


def _state(entry: BankEntry) -> tuple[int, int, dict[str, str]]:
    return entry.bank_content_id, entry.disable_until_ts, dict(entry.metadata)


def _moved(entries: list[BankEntry], new: str) -> list[Write]:
    """Entries under the new name; each names the bank it came from (RENAMED_FROM), so that a view
    reading it before the bank record counts it as the old bank's."""
    return [(T.BANK_SIGNALS, bank_signal_key(new, e.signal_type, e.signal_id),
             e.to_record(bank=new, metadata={**e.metadata, RENAMED_FROM: e.bank})) for e in entries]


def moved_signals(view: BankView, old: str, new: str) -> tuple[list[Write], Moved]:
    """Step 1: the old bank's signals under the new name, and what was moved from each old key."""
    entries = list(view.entries(old))
    return _moved(entries, check_bank_name(new)), {e.key: _state(e) for e in entries}


def bank_swap(view: BankView, record: dict[str, Any], new: str) -> list[Write]:
    """Step 2: the bank's record under its new name (with `renamed_from`), other banks' references
    to the old name changed, the old record's tombstone."""
    old = record["name"]
    stamp = now_ms()
    writes: list[Write] = [(T.BANKS, new, {**_pointed_at(record, old, new), "name": new, "renamed_from": old,
                                           "updated_at": stamp})]
    for name, other in sorted(view.banks.items()):
        if name != old and (old in other["suppressed_by"] or other["confirmed_bank"] == old):
            writes.append((T.BANKS, name, {**_pointed_at(other, old, new), "renamed_from": None, "updated_at": stamp}))
    writes.append((T.BANKS, old, None))
    return writes


def _pointed_at(bank: dict[str, Any], old: str, new: str) -> dict[str, Any]:
    """A bank record whose negative banks and confirmed bank name `new` where they named `old`."""
    return {
        **bank,
        "suppressed_by": [new if b == old else b for b in bank["suppressed_by"]],
        "confirmed_bank": new if bank["confirmed_bank"] == old else bank["confirmed_bank"],
    }


def unfinished_rename(view: BankView, old: str, new: str) -> bool:
    """Whether `old` was renamed to `new` by a rename interrupted after its bank record (step 2),
    signals left under the old name."""
    return (old not in view.banks and (view.banks.get(new) or {}).get("renamed_from") == old
            and view.holds_signals(old))


def retired_signals(view: BankView, old: str, new: str, moved: Moved) -> list[Write]:
    """Step 3: signals added to the old name or changed there since step 1 moved (again), then
    every old key's tombstone; confirmed copies' provenance pointed at the new name."""
    remaining = list(view.entries(old))
    writes = _moved([e for e in remaining if moved.get(e.key) != _state(e)], new)
    writes += [(T.BANK_SIGNALS, e.key, None) for e in remaining]
    for copy in view.entries_confirmed_from(old):
        source = copy.metadata["confirmed_from"]
        metadata = {**copy.metadata, "confirmed_from": new + source[len(old):]}
        writes.append((T.BANK_SIGNALS, copy.key, copy.to_record(metadata=metadata)))
    return writes
