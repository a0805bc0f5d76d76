"""What an exchange's bank holds, on disk: each exchange record's content id and signal keys, and
which records the current fetch has seen, so that a fetch of 10M records keeps its memory flat.

A SQLite file in a temporary folder, thrown away after the fetch (it is rebuilt from
hma.bank-signals at the start of the next): a map, not a store of record.
"""

from __future__ import annotations

import sqlite3
import tempfile
from pathlib import Path
from typing import Iterable

CACHE_KB = 16 * 1024
IN_CLAUSE = 500  # SQLite's host parameters per statement stay well under its limit


class HeldRecords:
    """record id -> (content id, signal keys), and a `seen` mark per record for a full fetch."""

    def __init__(self, folder: Path | None = None) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="hmas-exchange-", dir=folder)
        self._db = sqlite3.connect(Path(self._dir.name) / "held.sqlite", check_same_thread=False)
        for pragma in ("journal_mode=OFF", "synchronous=OFF", f"cache_size=-{CACHE_KB}", "temp_store=FILE"):
            self._db.execute(f"PRAGMA {pragma}")
        self._db.execute("CREATE TABLE signal (key TEXT PRIMARY KEY, rid TEXT NOT NULL, content_id INTEGER NOT NULL)")
        self._db.execute("CREATE INDEX signal_rid ON signal (rid)")
        self._db.execute("CREATE TABLE record (rid TEXT PRIMARY KEY, content_id INTEGER NOT NULL)")
        self._db.execute("CREATE TABLE seen (rid TEXT PRIMARY KEY)")
        self._count = 0

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
        """The records of the loaded signals (a record's content id is its signals')."""
        self._db.execute("INSERT OR REPLACE INTO record SELECT rid, max(content_id) FROM signal GROUP BY rid")
        self._count = self._db.execute("SELECT count(*) FROM record").fetchone()[0]

    # -- a batch ----------------------------------------------------------------------------------
    def get(self, rids: Iterable[str]) -> dict[str, tuple[int, set[str]]]:
        """The held ones of these records: rid -> (content id, signal keys)."""
        rids = list(rids)
        out: dict[str, tuple[int, set[str]]] = {}
        for start in range(0, len(rids), IN_CLAUSE):
            part = rids[start:start + IN_CLAUSE]
            marks = ",".join("?" * len(part))
            for rid, cid in self._db.execute(f"SELECT rid, content_id FROM record WHERE rid IN ({marks})", part):
                out[rid] = (cid, set())
            for rid, key in self._db.execute(f"SELECT rid, key FROM signal WHERE rid IN ({marks})", part):
                out[rid][1].add(key)
        return out

    def missing(self, rids: Iterable[str]) -> int:
        """How many of these records are not held."""
        rids = list(rids)
        return len(rids) - len(self.get_content_ids(rids))

    def get_content_ids(self, rids: list[str]) -> dict[str, int]:
        out: dict[str, int] = {}
        for start in range(0, len(rids), IN_CLAUSE):
            part = rids[start:start + IN_CLAUSE]
            out.update(self._db.execute(
                f"SELECT rid, content_id FROM record WHERE rid IN ({','.join('?' * len(part))})", part))
        return out

    def update(self, held: list[tuple[str, int, set[str], set[str]]], removed: list[str]) -> None:
        """One batch: records held now (rid, content id, signal keys, keys it no longer has), and
        records no longer held."""
        before = self._db.total_changes
        self._db.executemany("INSERT OR IGNORE INTO record VALUES (?, ?)", [(rid, cid) for rid, cid, _, _ in held])
        self._count += self._db.total_changes - before
        self._db.executemany("DELETE FROM signal WHERE key = ?", [(k,) for _, _, _, dropped in held for k in dropped])
        self._db.executemany("INSERT OR REPLACE INTO signal VALUES (?, ?, ?)",
                             [(k, rid, cid) for rid, cid, keys, _ in held for k in keys])
        before = self._db.total_changes
        self._db.executemany("DELETE FROM record WHERE rid = ?", [(rid,) for rid in removed])
        self._count -= self._db.total_changes - before
        self._db.executemany("DELETE FROM signal WHERE rid = ?", [(rid,) for rid in removed])

    # -- a full fetch: what it did not see is gone ------------------------------------------------
    def saw(self, rids: Iterable[str]) -> None:
        self._db.executemany("INSERT OR IGNORE INTO seen VALUES (?)", [(rid,) for rid in rids])

    def unseen(self) -> list[str]:
        return [rid for (rid,) in self._db.execute("SELECT rid FROM record WHERE rid NOT IN (SELECT rid FROM seen)")]
