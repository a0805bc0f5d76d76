"""The banks and their signals as one process sees them, kept current from the compacted topics.

Every matcher, the API and the CLI build this view by reading `hma.banks` and `hma.bank-signals`
from the start; each change after that updates the per-signal-type indices incrementally
(no rebuild, no second copy).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable

from pipeline.banks import signal_enabled
from pipeline.state.signal_index import SignalIndex, new_index

if TYPE_CHECKING:
    from pipeline.sharding import ShardSpec
    from pipeline.topics import TopicSpec

log = logging.getLogger(__name__)


@dataclass(slots=True)
class BankEntry:
    """One signal of one bank content item."""

    key: str
    bank: str
    bank_content_id: int
    signal_type: str
    signal_id: str
    value: str
    disable_until_ts: int
    metadata: dict[str, str]

    @classmethod
    def from_record(cls, key: str, record: dict[str, Any]) -> "BankEntry":
        return cls(
            key=key,
            bank=record["bank"],
            bank_content_id=record["bank_content_id"],
            signal_type=record["signal_type"],
            signal_id=record["signal_id"],
            value=record["value"],
            disable_until_ts=record["disable_until_ts"],
            metadata=record["metadata"],
        )


@dataclass(frozen=True, slots=True)
class Candidate:
    """A bank entry within the searched distance of a query signal."""

    entry: BankEntry
    distance: int


class BankView:
    """Banks, quarantine, settings and the signals of every bank (or of one index shard)."""

    def __init__(self, shard: "ShardSpec | None" = None) -> None:
        self.shard = shard  # a shard worker holds only its shard's signals
        self.banks: dict[str, dict[str, Any]] = {}
        self._entries: dict[int, BankEntry] = {}
        self._row_of_key: dict[str, int] = {}
        self._next_row = 0
        self._indices: dict[str, SignalIndex] = {}
        self._rows_of_signal: dict[str, set[int]] = {}
        self.quarantine: dict[str, dict[str, Any]] = {}  # signal id -> latest hma.quarantine record
        self.settings: dict[str, float] = {}  # hma.config: name -> number
        self.newest_signal_ms = 0  # added_at of the newest bank signal applied
        self.on_new_signals: Callable[[list[BankEntry]], None] | None = None  # newly banked or re-enabled

    # -- applying changes --------------------------------------------------------------------
    def apply_bank(self, name: str, record: dict[str, Any] | None) -> None:
        if record is None:
            self.banks.pop(name, None)
        else:
            self.banks[name] = record

    def apply_quarantine(self, signal_id: str, record: dict[str, Any] | None) -> None:
        if record is None:
            self.quarantine.pop(signal_id, None)
        else:
            self.quarantine[signal_id] = record

    def apply(self, spec: "TopicSpec", changes: list[tuple[str, dict[str, Any] | None]]) -> None:
        """Apply records of one of the state topics this view follows (VIEW_TOPICS)."""
        from pipeline import topics as T

        if spec is T.BANK_SIGNALS:
            self.apply_signals(changes)
            return
        apply_one = {T.BANKS: self.apply_bank, T.QUARANTINE: self.apply_quarantine, T.CONFIG: self.apply_setting}[spec]
        for key, record in changes:
            apply_one(key, record)

    def apply_setting(self, name: str, record: dict[str, Any] | None) -> None:
        if record is None:
            self.settings.pop(name, None)
        else:
            self.settings[name] = record["number"]

    def signal_type_ratio(self, kind: str) -> float:
        return self.settings.get(f"signal_type/{kind}", 1.0)

    @property
    def reset_at_ms(self) -> int:
        return int(self.settings.get("reset/at", 0))

    @property
    def content_id_base(self) -> int:
        return int(self.settings.get("content_ids/base", 0))

    def apply_signals(self, changes: Iterable[tuple[str, dict[str, Any] | None]]) -> None:
        """Apply hma.bank-signals records (None = tombstone) in order, batching index updates."""
        adds: dict[str, dict[int, str]] = {}
        removes: dict[str, set[int]] = {}
        fresh: list[BankEntry] = []
        for key, record in changes:
            if self.shard is not None and not self.shard.holds_key(key):
                continue
            row = self._row_of_key.get(key)
            if record is None:
                if row is None:
                    continue
                entry = self._entries.pop(row)
                del self._row_of_key[key]
                self._unlink_signal(entry.signal_id, row)
                adds.get(entry.signal_type, {}).pop(row, None)
                removes.setdefault(entry.signal_type, set()).add(row)
                continue
            entry = BankEntry.from_record(key, record)
            self.newest_signal_ms = max(self.newest_signal_ms, record["added_at"])
            previous = self._entries.get(row) if row is not None else None
            if signal_enabled(entry.disable_until_ts) and (previous is None or not signal_enabled(previous.disable_until_ts)):
                fresh.append(entry)
            if row is None:
                row = self._next_row
                self._next_row += 1
                self._row_of_key[key] = row
            self._entries[row] = entry
            self._rows_of_signal.setdefault(entry.signal_id, set()).add(row)
            adds.setdefault(entry.signal_type, {})[row] = entry.value
        for kind, rows in removes.items():
            index = self._index(kind)
            if index is not None:
                index.remove(sorted(rows))
        for kind, rows in adds.items():
            index = self._index(kind)
            if index is not None and rows:
                index.add(list(rows), list(rows.values()))
        if fresh and self.on_new_signals is not None:
            self.on_new_signals(fresh)

    def _unlink_signal(self, sid: str, row: int) -> None:
        rows = self._rows_of_signal.get(sid)
        if rows is not None:
            rows.discard(row)
            if not rows:
                del self._rows_of_signal[sid]

    def _index(self, kind: str) -> SignalIndex | None:
        if kind not in self._indices:
            index = new_index(kind)
            if index is None:
                return None
            self._indices[kind] = index
        return self._indices[kind]

    # -- reading ------------------------------------------------------------------------------
    def search(self, kind: str, values: list[str], max_distance: int) -> list[list[Candidate]]:
        """Bank entries within max_distance of each value (all banks, enabled or not)."""
        index = self._indices.get(kind)
        if index is None or not values:
            return [[] for _ in values]
        return [
            [Candidate(self._entries[row], distance) for row, distance in hits if row in self._entries]
            for hits in index.search(values, max_distance)
        ]

    def entries_with_signal(self, sid: str) -> list[BankEntry]:
        """Every bank entry holding this signal (one signal id can be in several banks)."""
        return [self._entries[row] for row in self._rows_of_signal.get(sid, ())]

    def entries(self, bank: str | None = None) -> Iterable[BankEntry]:
        return (e for e in self._entries.values() if bank is None or e.bank == bank)

    def signal_count(self, kind: str | None = None) -> int:
        if kind is None:
            return len(self._entries)
        index = self._indices.get(kind)
        return len(index) if index is not None else 0
