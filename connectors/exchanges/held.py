"""What an exchange's bank holds, on disk: each exchange record's content id and signal keys, and
which records the current fetch has seen, so that a fetch of 10M records keeps its memory flat.

A SQLite file in a temporary folder, thrown away after the fetch (it is rebuilt from
hma.bank-signals at the start of the next): a map, not a store of record.
"""

from __future__ import annotations

import sqlite3
import tempfile
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

CACHE_KB = 64 * 1024  # SQLite's page cache: writes into a map larger than it read pages back
FILTER_BITS = 1 << 26  # 8 MiB: at 10M records about 5% of new records still look held
FILTER_HASHES = 3
IN_CLAUSE = 500  # SQLite's host parameters per statement stay well under its limit
KEY_SEPARATOR = "\n"  # between a record's signal keys (BANK/type/id: never a line break)
SIGNAL_TABLE = "CREATE TABLE signal (key TEXT PRIMARY KEY, rid TEXT NOT NULL, content_id INTEGER NOT NULL) WITHOUT ROWID"


class RecordFilter:
    """Which record ids may be held: a Bloom filter in memory before the map on disk. Most
    records of a first fetch are new, and asking SQLite about each cost about as much as
    converting it. A false "maybe" costs only the look-up it would have cost anyway; ids
    removed from the map stay "maybe". Python's `hash`, so it lives only as long as the process."""

    def __init__(self, bits: int = FILTER_BITS, hashes: int = FILTER_HASHES) -> None:
        self._bits = np.zeros(bits // 8, dtype=np.uint8)
        self._mask = np.uint64(bits - 1)  # bits: a power of two
        self._hashes = hashes

    def _positions(self, rids: Sequence[str]) -> np.ndarray:
        h = np.fromiter((hash(rid) for rid in rids), dtype=np.int64, count=len(rids)).view(np.uint64)
        step = (h >> np.uint64(32)) | np.uint64(1)
        return np.stack([(h + np.uint64(i) * step) & self._mask for i in range(self._hashes)])

    def add(self, rids: Sequence[str]) -> None:
        if len(rids):
            positions = self._positions(rids)
            np.bitwise_or.at(self._bits, positions >> np.uint64(3), (1 << (positions & np.uint64(7))).astype(np.uint8))

    def maybe(self, rids: Sequence[str]) -> list[str]:
        """The ids that may be held (all that are, some that are not)."""
        if not len(rids):
            return []
        positions = self._positions(rids)
        set_ = (self._bits[positions >> np.uint64(3)] >> (positions & np.uint64(7)).astype(np.uint8)) & 1
        return [rid for rid, hit in zip(rids, set_.all(axis=0)) if hit]


def _joined(keys: Iterable[str]) -> str:
    """A record's signal keys as one text column (most records have one: nothing to sort)."""
    if type(keys) is list and len(keys) == 1:
        return keys[0]
    return KEY_SEPARATOR.join(sorted(keys))


class HeldRecords:
    """record id -> (content id, signal keys), and a `seen` mark per record for a full fetch.

    One row per record, its signal keys joined in one text column. Rows are appended in the order
    they come (a rowid table), and found through an index on a 64-bit hash of the record id: record
    ids are random text (an exchange's hashes), and a b-tree keyed by them took each insert to a
    random page of a table too large for the page cache (11.9 us an insert at 1M, 8.0 now); the index's
    entries are a tenth of a row, so the pages new records go to stay cached far longer. Two ids of
    one hash are told apart by the id kept in the row. The signal table only serves the load,
    which follows hma.bank-signals by signal key."""

    def __init__(self, folder: Path | None = None) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="hmas-exchange-", dir=folder)
        self._db = sqlite3.connect(Path(self._dir.name) / "held.sqlite", check_same_thread=False)
        for pragma in ("journal_mode=OFF", "synchronous=OFF", f"cache_size=-{CACHE_KB}", "temp_store=FILE"):
            self._db.execute(f"PRAGMA {pragma}")
        # the map lives as long as this process: Python's string hash will do (and is what the filter uses)
        self._db.create_function("rid_hash", 1, hash, deterministic=True)
        self._db.execute(SIGNAL_TABLE)
        self._db.execute("CREATE TABLE record (h INTEGER NOT NULL, rid TEXT NOT NULL, content_id INTEGER NOT NULL,"
                         " keys TEXT NOT NULL)")
        self._db.execute("CREATE INDEX record_h ON record (h)")
        self._db.execute("CREATE TABLE seen (rid TEXT PRIMARY KEY) WITHOUT ROWID")
        self._count = 0
        self._filter = RecordFilter()

    def close(self) -> None:
        self._db.close()
        self._dir.cleanup()

    def __len__(self) -> int:
        return self._count

    def ids(self) -> list[str]:
        return [rid for (rid,) in self._db.execute("SELECT rid FROM record ORDER BY rid")]

    # -- loading from hma.bank-signals, in topic order --------------------------------------------
    def put_signal(self, key: str, rid: str, content_id: int) -> None:
        self._db.execute("INSERT OR REPLACE INTO signal VALUES (?, ?, ?)", (key, rid, content_id))

    def drop_signal(self, key: str) -> None:
        self._db.execute("DELETE FROM signal WHERE key = ?", (key,))

    def index_records(self) -> None:
        """The records of the loaded signals (a record's content id is its signals'); the signals
        themselves are no longer needed."""
        self._db.execute("DELETE FROM record")
        self._db.execute("INSERT INTO record SELECT rid_hash(rid), rid, max(content_id), group_concat(key, ?)"
                         " FROM signal GROUP BY rid", (KEY_SEPARATOR,))
        self._db.execute("DROP TABLE signal")
        self._db.execute(SIGNAL_TABLE)
        self._count = self._db.execute("SELECT count(*) FROM record").fetchone()[0]
        rows = self._db.execute("SELECT rid FROM record")
        while chunk := rows.fetchmany(100_000):
            self._filter.add([rid for (rid,) in chunk])

    # -- a batch ----------------------------------------------------------------------------------
    def get(self, rids: Iterable[str]) -> dict[str, tuple[int, set[str]]]:
        """The held ones of these records: rid -> (content id, signal keys)."""
        rids = self._filter.maybe(list(rids))
        wanted = set(rids)
        out: dict[str, tuple[int, set[str]]] = {}
        for start in range(0, len(rids), IN_CLAUSE):
            part = [hash(rid) for rid in rids[start:start + IN_CLAUSE]]
            for rid, cid, keys in self._db.execute(
                    f"SELECT rid, content_id, keys FROM record WHERE h IN ({','.join('?' * len(part))})", part):
                if rid in wanted:  # not another id of the same hash
                    out[rid] = (cid, set(keys.split(KEY_SEPARATOR)) if keys else set())
        return out

    def update(self, added: Sequence[tuple[str, int, Iterable[str]]], changed: list[tuple[str, set[str]]],
               removed: list[str]) -> None:
        """One batch: records not held before (rid, content id, signal keys), held records whose
        signal keys are now others, and records no longer held (an added record that is held
        already replaces its row)."""
        maybe = self._filter.maybe([rid for rid, _, _ in added])  # few: most are new to the map
        if maybe:
            before = self._db.total_changes
            self._db.executemany("DELETE FROM record WHERE h = ? AND rid = ?", [(hash(rid), rid) for rid in maybe])
            self._count -= self._db.total_changes - before
        self._db.executemany("INSERT INTO record VALUES (?, ?, ?, ?)",
                             [(hash(rid), rid, cid, _joined(keys)) for rid, cid, keys in added])
        self._filter.add([rid for rid, _, _ in added])
        self._count += len(added)
        self._db.executemany("UPDATE record SET keys = ? WHERE h = ? AND rid = ?",
                             [(_joined(keys), hash(rid), rid) for rid, keys in changed])
        before = self._db.total_changes
        self._db.executemany("DELETE FROM record WHERE h = ? AND rid = ?", [(hash(rid), rid) for rid in removed])
        self._count -= self._db.total_changes - before

    # -- a full fetch: what it did not see is gone ------------------------------------------------
    def saw(self, rids: Iterable[str]) -> None:
        self._db.executemany("INSERT OR IGNORE INTO seen VALUES (?)", [(rid,) for rid in rids])

    def unseen(self) -> list[str]:
        return [rid for (rid,) in self._db.execute("SELECT rid FROM record WHERE rid NOT IN (SELECT rid FROM seen)")]
