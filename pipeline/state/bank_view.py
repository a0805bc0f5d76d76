"""The banks and their signals as one process sees them, kept current from the compacted topics.

Every matcher, the API and the CLI build this view by reading `hma.banks` and `hma.bank-signals`
from the start (or from a snapshot's offsets, pipeline/state/snapshot.py); each change after that
updates the per-signal-type indices incrementally (no rebuild, no second copy). Signals are rows
of columns (pipeline/state/signal_rows.py); a BankEntry is made only for what a caller reads.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

import numpy as np

from pipeline.banks import RENAMED_FROM, bank_signal_key, signal_enabled
from pipeline.clock import now_ms
from pipeline.config_keys import CONTENT_ID_BASE, RESET_AT, signal_type_ratio_key
from pipeline.signal_types import InvalidSignal, signal_type
from pipeline.state.signal_index import SignalIndex, SignalValues
from pipeline.state.signal_rows import SIGNAL_ID, SignalRows, key_hash

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

    def to_record(self, **changes: Any) -> dict[str, Any]:
        """The hma.bank-signals value that rewrites this entry with `changes` applied, stamped now."""
        record = {
            "bank": self.bank, "bank_content_id": self.bank_content_id, "signal_type": self.signal_type,
            "signal_id": self.signal_id, "value": self.value, "metadata": dict(self.metadata),
            "disable_until_ts": self.disable_until_ts, "added_at": now_ms(),
        }
        return {**record, **changes}


def exported_searchable(meta: dict[str, Any]) -> bool:
    """Whether a view export (BankView.export's meta) holds indices or values only."""
    return bool(meta.get("searchable", True))


@dataclass(frozen=True, slots=True)
class Candidate:
    """A bank entry within the searched distance of a query signal."""

    entry: BankEntry
    distance: int


class BankView:
    """Banks, quarantine, settings and the signals of every bank (or of one index shard)."""

    def __init__(self, shard: "ShardSpec | None" = None, searchable: bool = True) -> None:
        """`searchable=False`: signal values are kept without an index (SignalPlugin.new_value_store),
        for a process that never searches: a main worker in shard mode, whose merger judges the
        candidates the shard workers found."""
        self.shard = shard  # a shard worker holds only its shard's signals
        self.searchable = searchable
        self.banks: dict[str, dict[str, Any]] = {}
        self.renamed: dict[str, str] = {}  # a renamed bank's old name -> its new name (see apply_bank)
        self.rows = SignalRows()
        self._indices: dict[int, SignalIndex | SignalValues] = {}  # kind index -> its index (or values)
        self._live = 0
        self.rejected = 0  # hma.bank-signals records that were not applied (see _invalid)
        self.quarantine: dict[str, dict[str, Any]] = {}  # signal id -> latest hma.quarantine record
        self.settings: dict[str, float] = {}  # hma.config: name -> number
        self.newest_signal_ms = 0  # added_at of the newest bank signal applied
        self.on_new_signals: Callable[[list[BankEntry]], None] | None = None  # newly banked or re-enabled
        self._pin_lock = threading.Lock()
        self._pin_ticket = 0
        self._pins: set[int] = set()

    @contextlib.contextmanager
    def pinned(self) -> Iterator[None]:
        """Hold row numbers steady: rows found by a search inside keep their meaning until it exits.

        Rows of removed signals are reused for new ones (pipeline/state/signal_rows.py), but not
        while a search that started before the removal is pinned: a row it found cannot turn
        into another signal before its candidates are read.
        """
        with self._pin_lock:
            self._pin_ticket += 1
            ticket = self._pin_ticket
            self._pins.add(ticket)
        try:
            yield
        finally:
            with self._pin_lock:
                self._pins.discard(ticket)

    def _oldest_pin(self) -> int | None:
        with self._pin_lock:
            return min(self._pins) if self._pins else None

    # -- applying changes --------------------------------------------------------------------
    def apply_bank(self, name: str, record: dict[str, Any] | None) -> None:
        """A bank record, or its tombstone.

        A record renaming a bank (`renamed_from`) takes the old bank's place in one step: from
        then on the old name's signals count as the new bank's until their tombstones arrive.
        The new name's signals, written before the record, counted as the old bank's until it
        came (`bank_of`); matching keeps one hit per signal (pipeline/bank_rename.py).
        """
        if record is None:
            self.banks.pop(name, None)
            return
        first = name not in self.banks and name not in self.renamed.values()
        self.banks[name] = record
        self.renamed.pop(name, None)  # a bank of this name again: signals under it are its own
        old = record.get("renamed_from")
        if old and old != name:
            self.banks.pop(old, None)
            self.renamed[old] = name
        elif first and self.on_new_signals is not None:
            self._announce_waiting_signals(name)

    def _announce_waiting_signals(self, name: str) -> None:
        """Signals read before their bank's record (the two topics are read independently) banked
        nothing until it came: they are newly banked now, so retroactive search sees them."""
        newly = self._newly_banked([e for e in self.entries(name) if signal_enabled(e.disable_until_ts)])
        if newly:
            self.on_new_signals(newly)

    def bank_of(self, entry: BankEntry) -> tuple[str, dict[str, Any]] | None:
        """The current name and record of the entry's bank: its own, or while a rename has only
        written the signals under the new name, the bank they came from."""
        named = self.bank_named(entry.bank)
        if named is None and RENAMED_FROM in entry.metadata:
            return self.bank_named(entry.metadata[RENAMED_FROM])
        return named

    def bank_named(self, name: str) -> tuple[str, dict[str, Any]] | None:
        """The current name and record of the bank a signal's bank name stands for (renames followed)."""
        for _ in range(len(self.renamed) + 1):
            bank = self.banks.get(name)
            if bank is not None:
                return name, bank
            if name not in self.renamed:
                return None
            name = self.renamed[name]
        return None

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
        return self.settings.get(signal_type_ratio_key(kind), 1.0)

    @property
    def reset_at_ms(self) -> int:
        return int(self.settings.get(RESET_AT, 0))

    @property
    def content_id_base(self) -> int:
        return int(self.settings.get(CONTENT_ID_BASE, 0))

    def apply_signals(self, changes: Iterable[tuple[str, dict[str, Any] | None]]) -> None:
        """Apply hma.bank-signals records (None = tombstone) in order, batching index updates."""
        changes = [(k, r) for k, r in changes if self.shard is None or self.shard.holds_key(k)]
        if not changes:
            return
        rows, cols = self.rows, self.rows.cols
        rows.recycle(self._oldest_pin())
        rows.reserve(len(changes))
        keys = [key for key, _ in changes]
        hashes = np.fromiter((key_hash(key) for key in keys), dtype=np.uint64, count=len(keys))
        found_rows = rows.find(keys, hashes)
        if (found_rows < 0).all() and all(r is not None for _, r in changes) and len(set(keys)) == len(keys):
            self._insert_new(changes, hashes)  # a cold read of the topic: keys not seen before
            return
        found = found_rows.tolist()
        hash_of = dict(zip(keys, hashes.tolist()))
        current: dict[str, int] = {}  # key -> its row after the changes so far (-1: removed)
        before: dict[str, int] = {}  # key -> its row before this batch
        adds: dict[int, dict[int, str]] = {}
        removes: dict[int, set[int]] = {}
        fresh: list[int] = []
        for i, (key, record) in enumerate(changes):
            before.setdefault(key, found[i])
            row = current.get(key, found[i])
            if record is None:
                if row >= 0:
                    kind = int(cols["kind"][row])
                    cols["alive"][row] = False
                    rows.metadata.drop(row)
                    adds.get(kind, {}).pop(row, None)
                    removes.setdefault(kind, set()).add(row)
                    self._live -= 1
                    current[key] = -1
                continue
            problem = self._invalid(key, record)
            if problem:
                self.rejected += 1
                log.warning("bank signal not applied", extra={"key": key, "reason": problem})
                continue
            was_enabled = row >= 0 and signal_enabled(int(cols["disable_until"][row]))
            if row < 0:
                row = rows.new_row(hash_of[key], rows.bank_index(record["bank"]),
                                   rows.kind_index(record["signal_type"]), int(record["signal_id"], 16))
                adds.setdefault(int(cols["kind"][row]), {})[row] = record["value"]
                current[key] = row
                self._live += 1
            cols["content_id"][row] = record["bank_content_id"]
            cols["disable_until"][row] = record["disable_until_ts"]
            rows.metadata.set(row, record["metadata"])
            self.newest_signal_ms = max(self.newest_signal_ms, record["added_at"])
            if not was_enabled and signal_enabled(record["disable_until_ts"]):
                fresh.append(row)
        for kind, gone in removes.items():
            self._index(kind).remove(sorted(gone))
        with self._pin_lock:
            ticket = self._pin_ticket
        rows.release([row for gone in removes.values() for row in gone], ticket)
        for kind, added in adds.items():
            if added:
                self._index(kind).add(list(added), list(added.values()))
        rows.map_keys(
            {key: row for key, row in current.items() if row >= 0 and row != before[key]},
            [(key, hash_of[key]) for key, row in current.items() if row < 0 and before[key] >= 0],
        )
        if fresh and self.on_new_signals is not None:
            live = [row for row in fresh if cols["alive"][row]]
            newly = self._newly_banked(self._entries_at(live))
            if newly:
                self.on_new_signals(newly)

    def _insert_new(self, changes: list[tuple[str, dict[str, Any]]], hashes: np.ndarray) -> None:
        """Records of keys this view does not hold, each once: what `apply_signals` does for them,
        with the columns, the key map and the indices written an array at a time (10M signals
        read from the topic in minutes, not hours)."""
        rows = self.rows
        keep = []
        for i, (key, record) in enumerate(changes):
            problem = self._invalid(key, record)
            if problem:
                self.rejected += 1
                log.warning("bank signal not applied", extra={"key": key, "reason": problem})
            else:
                keep.append(i)
        if not keep:
            return
        records = [changes[i][1] for i in keep]
        keys = [changes[i][0] for i in keep]
        placed = rows.new_rows(
            hashes[keep],
            np.fromiter((rows.bank_index(r["bank"]) for r in records), dtype=np.int32, count=len(records)),
            np.fromiter((rows.kind_index(r["signal_type"]) for r in records), dtype=np.int16, count=len(records)),
            np.fromiter((int(r["signal_id"], 16) for r in records), dtype=np.uint64, count=len(records)),
        )
        cols = rows.cols
        cols["content_id"][placed] = [r["bank_content_id"] for r in records]
        until = np.fromiter((r["disable_until_ts"] for r in records), dtype=np.int64, count=len(records))
        cols["disable_until"][placed] = until
        for row, record in zip(placed.tolist(), records):
            rows.metadata.set(row, record["metadata"])
        self._live += len(records)
        self.newest_signal_ms = max(self.newest_signal_ms, max(r["added_at"] for r in records))
        kinds = cols["kind"][placed]
        for kind in np.unique(kinds).tolist():
            of_kind = np.flatnonzero(kinds == kind)
            self._index(kind).add(placed[of_kind].tolist(), [records[i]["value"] for i in of_kind.tolist()])
        rows.map_new_keys(keys, placed)
        if self.on_new_signals is not None:
            fresh = [row for row, d in zip(placed.tolist(), until.tolist()) if signal_enabled(d)]
            newly = self._newly_banked(self._entries_at(fresh))
            if newly:
                self.on_new_signals(newly)

    def _newly_banked(self, entries: list[BankEntry]) -> list[BankEntry]:
        """Entries that bank their signal for the first time. Not those of a bank without a record
        (they match nothing), nor a renamed bank's signals arriving under its new name while the
        old name still holds them (pipeline/bank_rename.py): those matched already."""
        if not entries:
            return entries
        olds: dict[str, list[str]] = {}
        for old, new in self.renamed.items():
            olds.setdefault(new, []).append(old)
        out = []
        for entry in entries:
            if self.bank_named(entry.bank) is None:
                continue
            twins = [bank_signal_key(old, entry.signal_type, entry.signal_id) for old in olds.get(entry.bank, ())]
            if twins and (self.rows.find(twins, np.fromiter((key_hash(k) for k in twins), dtype=np.uint64)) >= 0).any():
                continue
            out.append(entry)
        return out

    @staticmethod
    def _invalid(key: str, record: dict[str, Any]) -> str:
        """Why a record cannot be applied ("" if it can): the key and the signal must agree."""
        if not SIGNAL_ID.fullmatch(record["signal_id"]):
            return f"signal_id {record['signal_id']!r} is not 16 hex digits"
        if key != bank_signal_key(record["bank"], record["signal_type"], record["signal_id"]):
            return "key is not BANK/signal_type/signal_id of its record"
        try:
            signal_type(record["signal_type"]).validate(record["value"])
        except InvalidSignal as exc:
            return str(exc)
        return ""

    def _index(self, kind: int) -> SignalIndex | SignalValues:
        if kind not in self._indices:
            self._indices[kind] = self._new_index(self.rows.kind_names[kind])
        return self._indices[kind]

    def _new_index(self, kind_name: str, exported: dict[str, np.ndarray] | None = None) -> SignalIndex | SignalValues:
        plugin = signal_type(kind_name)
        return plugin.new_index(exported) if self.searchable else plugin.new_value_store(exported)

    # -- snapshots ----------------------------------------------------------------------------
    def export(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Copies of the whole view as arrays + a JSON-able dict (pipeline/state/snapshot.py)."""
        arrays, rows_meta = self.rows.export()
        for kind, index in self._indices.items():
            for name, array in index.export().items():
                arrays[f"index_{kind}_{name}"] = array
        meta = {
            "rows": rows_meta, "indexed_kinds": sorted(self._indices), "live": self._live, "searchable": self.searchable,
            "banks": self.banks, "quarantine": self.quarantine, "settings": self.settings,
            "newest_signal_ms": self.newest_signal_ms,
        }
        return arrays, meta

    def load(self, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        """Replace this view's state with an export (indices are rebuilt from their arrays) of a
        view that was searchable as this one is (`exported_searchable`)."""
        if exported_searchable(meta) != self.searchable:
            raise ValueError(f"an export of a {'searchable' if exported_searchable(meta) else 'values-only'} view "
                             f"cannot load into a {'searchable' if self.searchable else 'values-only'} one")
        rows = SignalRows.restore(arrays, meta["rows"])
        indices = {}
        for kind in meta["indexed_kinds"]:
            prefix = f"index_{kind}_"
            exported = {name[len(prefix):]: arrays[name] for name in arrays if name.startswith(prefix)}
            indices[int(kind)] = self._new_index(rows.kind_names[int(kind)], exported)
        self.rows, self._indices, self._live = rows, indices, int(meta["live"])
        self.banks, self.quarantine, self.settings = meta["banks"], meta["quarantine"], meta["settings"]
        self.renamed = {b["renamed_from"]: name for name, b in self.banks.items()
                        if b.get("renamed_from") and b["renamed_from"] not in self.banks}
        self.newest_signal_ms = int(meta["newest_signal_ms"])

    # -- reading ------------------------------------------------------------------------------
    def _entries_at(self, rows: Iterable[int]) -> list[BankEntry]:
        """BankEntry objects for live rows, values fetched from their indices per signal type."""
        rows = list(rows)
        if not rows:
            return []
        cols, names = self.rows.cols, self.rows
        kinds = cols["kind"][rows].tolist()
        values: dict[int, str] = {}
        for kind in set(kinds):
            of_kind = [row for row, k in zip(rows, kinds) if k == kind]
            values.update(zip(of_kind, self._index(kind).values(of_kind)))
        banks, cids, until, sids = (cols[c][rows].tolist() for c in ("bank", "content_id", "disable_until", "sid"))
        out = []
        for row, kind, bank, cid, dis, sid in zip(rows, kinds, banks, cids, until, sids):
            bank_name, kind_name, sid_hex = names.bank_names[bank], names.kind_names[kind], f"{sid:016x}"
            out.append(BankEntry(
                key=bank_signal_key(bank_name, kind_name, sid_hex), bank=bank_name, bank_content_id=cid,
                signal_type=kind_name, signal_id=sid_hex, value=values[row], disable_until_ts=dis,
                metadata=self.rows.metadata.get(row),
            ))
        return out

    def search(self, kind: str, values: list[str], max_distance: int) -> list[list[Candidate]]:
        """Bank entries within max_distance of each value (all banks, enabled or not)."""
        with self.pinned():
            return self.candidates(self.search_rows(kind, values, max_distance))

    def search_rows(self, kind: str, values: list[str], max_distance: int) -> list[list[tuple[int, int]]]:
        """(row, distance) of the live signals within max_distance of each value.

        May run on a thread while the event loop applies changes: the indices lock themselves,
        and a row removed meanwhile is left out here or by `candidates`. Call it and `candidates`
        inside one `pinned()`, so that no row found is reused for another signal in between.
        """
        if not self.searchable:
            raise RuntimeError("this bank view keeps signal values without an index (searchable=False)")
        kind_idx = self.rows.known_kind(kind)
        index = self._indices.get(kind_idx) if kind_idx is not None else None
        if index is None or not values:
            return [[] for _ in values]
        alive = self.rows.cols["alive"]
        return [[(row, d) for row, d in hits if alive[row]] for hits in index.search(values, max_distance)]

    def candidates(self, found: list[list[tuple[int, int]]]) -> list[list[Candidate]]:
        """Rows found by `search_rows` as bank entries (rows removed since are left out)."""
        alive = self.rows.cols["alive"]
        rows = sorted({row for hits in found for row, _ in hits if alive[row]})
        entries = dict(zip(rows, self._entries_at(rows)))
        return [[Candidate(entries[row], d) for row, d in hits if row in entries] for hits in found]

    def nearest_per_bank(self, found: list[tuple[int, int]], per_bank: int) -> list[Candidate]:
        """Of rows found by one `search_rows` query, the `per_bank` nearest of each bank as entries,
        nearest first. Call inside the `pinned()` of the search: only the kept rows become
        BankEntry objects, so a wide radius costs a sort, not an object per signal found."""
        if not found:
            return []
        rows = np.fromiter((row for row, _ in found), dtype=np.int64, count=len(found))
        distances = np.fromiter((d for _, d in found), dtype=np.int64, count=len(found))
        banks = self.rows.cols["bank"][rows]
        order = np.lexsort((rows, distances, banks))
        banks = banks[order]
        keep = order[np.arange(len(order)) - np.searchsorted(banks, banks, side="left") < per_bank]
        [nearest] = self.candidates([list(zip(rows[keep].tolist(), distances[keep].tolist()))])
        return sorted(nearest, key=lambda c: (c.distance, c.entry.bank, c.entry.bank_content_id))

    def entries_with_signal(self, sid: str) -> list[BankEntry]:
        """Every bank entry holding this signal (one signal id can be in several banks)."""
        return self._entries_at(self.rows.rows_with_sid(sid).tolist())

    def entries_confirmed_from(self, bank: str) -> list[BankEntry]:
        """Copies that feedback made from this bank's content into confirmed banks (their
        `confirmed_from` metadata names it)."""
        prefix = f"{bank}/"
        rows = [row for row, meta in self.rows.metadata.items() if meta.get("confirmed_from", "").startswith(prefix)]
        return self._entries_at(sorted(rows))

    def holds_signals(self, bank: str) -> bool:
        """Whether signals are banked under this name (a bank's, or an unfinished rename's leftovers)."""
        return len(self.rows.rows_of_bank(bank)) > 0

    def entries(self, bank: str | None = None) -> Iterator[BankEntry]:
        rows = self.rows.rows_of_bank(bank)
        for start in range(0, len(rows), 10_000):
            yield from self._entries_at(rows[start:start + 10_000].tolist())

    def entries_page(self, bank: str, offset: int, limit: int) -> tuple[int, list[BankEntry]]:
        """One page of a bank's entries (in row order) and how many it holds: a page costs one
        pass over the row columns, never an object per signal of the bank."""
        rows = self.rows.rows_of_bank(bank)
        return len(rows), self._entries_at(rows[offset:offset + limit].tolist())

    def stats(self) -> dict[str, Any]:
        """Sizes for the logs: signals, rows, running searches, and each index's own counts."""
        with self._pin_lock:
            pins = len(self._pins)
        out: dict[str, Any] = {"signals": self._live, **self.rows.stats(), "pinned_searches": pins}
        for kind, index in self._indices.items():
            stats = getattr(index, "stats", None)
            if stats is not None:
                out[f"index_{self.rows.kind_names[kind]}"] = stats()
        return out

    def settle(self) -> None:
        """Wait until no index works in the background (merges): before a process forks, so that
        no thread is holding an index's lock."""
        for index in self._indices.values():
            wait = getattr(index, "wait_for_merges", None)
            if wait is not None:
                wait()

    def signal_count(self, kind: str | None = None) -> int:
        if kind is None:
            return self._live
        kind_idx = self.rows.known_kind(kind)
        index = self._indices.get(kind_idx) if kind_idx is not None else None
        return len(index) if index is not None else 0
