"""Bank signals as columns: one row per hma.bank-signals key, no Python object per signal.

At 10M signals a Python object per signal costs gigabytes and minutes to rebuild; here a signal
is a row across a few numpy columns (about 40 bytes with its key map slot), its value lives in its
signal type's index, and the whole thing saves and loads as arrays (pipeline/state/snapshot.py).
Row numbers are the ids the indices know signals by. A removed key's row is dead, and is reused
for a new key once no search that may still return it is running (BankView.pinned), so under
churn the rows, and the indices keyed by them, stay as many as the live signals.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import orjson

from pipeline.index.row_stack import RowStack
from pipeline.state.u64_map import U64Map

SIGNAL_ID = re.compile(r"[0-9a-f]{16}")
COLUMNS = {  # name -> dtype
    "bank": np.int32,  # index into bank_names
    "kind": np.int16,  # index into kind_names
    "content_id": np.int64,
    "disable_until": np.int64,
    "sid": np.uint64,  # the signal id's 16 hex digits
    "key_hash": np.uint64,
    "alive": np.bool_,
}


def key_hash(key: str) -> int:
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little")


class RowMetadata:
    """The metadata of the rows that have any (an exchange's signals all do), each kept as its
    JSON bytes rather than a dict: about 180 bytes an exchange signal instead of about 500, and no
    container per signal for the interpreter's collector to visit (BENCHMARKS.md, "Exchange
    fetch"). Read back as a new dict each time (a hit's, a page's: few)."""

    def __init__(self) -> None:
        self._by_row: dict[int, bytes] = {}

    def __len__(self) -> int:
        return len(self._by_row)

    def __contains__(self, row: int) -> bool:
        return row in self._by_row

    def set(self, row: int, metadata: Mapping[str, str]) -> None:
        """The row's metadata (none when empty)."""
        if metadata:
            self._by_row[row] = orjson.dumps(metadata)
        else:
            self._by_row.pop(row, None)

    def get(self, row: int) -> dict[str, str]:
        raw = self._by_row.get(row)
        return orjson.loads(raw) if raw is not None else {}

    def drop(self, row: int) -> None:
        self._by_row.pop(row, None)

    def items(self) -> Iterator[tuple[int, dict[str, str]]]:
        for row, raw in list(self._by_row.items()):
            yield row, orjson.loads(raw)


class SignalRows:
    def __init__(self, capacity: int = 1024) -> None:
        self.n = 0  # rows used, dead ones included
        self.cols: dict[str, np.ndarray] = {name: np.zeros(capacity, dtype=dt) for name, dt in COLUMNS.items()}
        self.bank_names: list[str] = []
        self.kind_names: list[str] = []
        self._bank_idx: dict[str, int] = {}
        self._kind_idx: dict[str, int] = {}
        self.metadata = RowMetadata()
        self._map = U64Map()
        self._overflow: dict[str, int] = {}  # keys whose hash another live key already has
        self._free = RowStack()  # dead rows that no search can still return: taken by new keys
        self._released: list[tuple[int, np.ndarray]] = []  # (pin ticket at release, dead rows)

    # -- names ----------------------------------------------------------------------------------
    @staticmethod
    def _intern(names: list[str], index: dict[str, int], name: str) -> int:
        idx = index.get(name)
        if idx is None:
            idx = index[name] = len(names)
            names.append(name)
        return idx

    def bank_index(self, name: str) -> int:
        return self._intern(self.bank_names, self._bank_idx, name)

    def kind_index(self, name: str) -> int:
        return self._intern(self.kind_names, self._kind_idx, name)

    def known_kind(self, name: str) -> int | None:
        return self._kind_idx.get(name)

    # -- rows -----------------------------------------------------------------------------------
    def reserve(self, extra: int) -> None:
        needed = self.n + extra
        cap = len(self.cols["alive"])
        if needed <= cap:
            return
        new_cap = max(needed, cap * 2)
        for name, col in self.cols.items():
            grown = np.zeros(new_cap, dtype=col.dtype)
            grown[: self.n] = col[: self.n]
            self.cols[name] = grown

    def key_of(self, row: int) -> str:
        c = self.cols
        return f"{self.bank_names[c['bank'][row]]}/{self.kind_names[c['kind'][row]]}/{int(c['sid'][row]):016x}"

    def find(self, keys: Sequence[str], hashes: np.ndarray) -> np.ndarray:
        """The live row of each key, or -1 (hash collisions checked against the row's own key)."""
        rows = self._map.get_many(hashes)
        for i in np.flatnonzero(rows >= 0):
            if self.key_of(int(rows[i])) != keys[i]:
                rows[i] = -1
        if self._overflow:
            for i, key in enumerate(keys):
                if key in self._overflow:
                    rows[i] = self._overflow[key]
        return rows

    def new_row(self, h: int, bank: int, kind: int, sid: int) -> int:
        """A row for a key seen for the first time (or again after its removal); not yet mapped."""
        if len(self._free):
            row = int(self._free.pop(1)[0])
        else:
            row = self.n
            self.n += 1
        c = self.cols
        c["bank"][row], c["kind"][row], c["sid"][row], c["key_hash"][row] = bank, kind, sid, h
        c["alive"][row] = True
        return row

    def new_rows(self, hashes: np.ndarray, banks: np.ndarray, kinds: np.ndarray, sids: np.ndarray) -> np.ndarray:
        """`new_row` for many keys at once (room reserved first); their rows, not yet mapped."""
        rows = self._free.pop(len(hashes))
        if len(rows) < len(hashes):
            fresh = np.arange(self.n, self.n + len(hashes) - len(rows), dtype=np.int64)
            self.n += len(fresh)
            rows = np.concatenate([rows, fresh])
        c = self.cols
        c["bank"][rows], c["kind"][rows], c["sid"][rows], c["key_hash"][rows] = banks, kinds, sids, hashes
        c["alive"][rows] = True
        return rows

    def release(self, rows: Sequence[int], ticket: int) -> None:
        """Dead rows, reusable once every search pinned at or before `ticket` has finished."""
        if len(rows):
            self._released.append((ticket, np.asarray(rows, dtype=np.int64)))

    def recycle(self, oldest_pin: int | None) -> None:
        """Make released rows free whose searches are over (oldest_pin: the oldest running one's ticket)."""
        keep = []
        for ticket, rows in self._released:
            if oldest_pin is None or ticket < oldest_pin:
                self._free.push(rows)
            else:
                keep.append((ticket, rows))
        self._released = keep

    def map_keys(self, placed: dict[str, int], removed: Sequence[tuple[str, int]]) -> None:
        """Bring the key map up to date after a batch: keys removed, keys now at a new row."""
        gone = [h for key, h in removed if self._overflow.pop(key, None) is None]
        if gone:
            self._map.delete_many(np.array(gone, dtype=np.uint64))
        if not placed:
            return
        keys = list(placed)
        hashes = self.cols["key_hash"][np.fromiter(placed.values(), dtype=np.int64, count=len(placed))]
        owners = self._map.get_many(hashes)
        claimed: dict[int, int] = {}  # hash -> row, for the keys of this batch
        for key, h, owner in zip(keys, hashes.tolist(), owners.tolist()):
            row = placed[key]
            if h in claimed:
                owner = claimed[h]
            if owner >= 0 and owner != row and self.cols["alive"][owner] and self.key_of(owner) != key:
                self._overflow[key] = row  # a different live key owns this hash
            else:
                self._overflow.pop(key, None)
                claimed[h] = row
        if claimed:
            self._map.put_many(np.fromiter(claimed, dtype=np.uint64, count=len(claimed)),
                               np.fromiter(claimed.values(), dtype=np.int64, count=len(claimed)))

    def map_new_keys(self, keys: list[str], rows: np.ndarray) -> None:
        """Map keys that had no row to their new rows: one array write, unless a hash is taken
        (by a live key, or twice among these), which `map_keys` sorts out key by key."""
        hashes = self.cols["key_hash"][rows]
        if (self._map.get_many(hashes) < 0).all() and len(np.unique(hashes)) == len(hashes):
            self._map.put_many(hashes, rows)
        else:
            self.map_keys(dict(zip(keys, rows.tolist())), [])

    def live_rows(self) -> np.ndarray:
        return np.flatnonzero(self.cols["alive"][: self.n])

    def rows_with_sid(self, sid: str) -> np.ndarray:
        if not SIGNAL_ID.fullmatch(sid):
            return np.zeros(0, dtype=np.int64)
        c = self.cols
        return np.flatnonzero((c["sid"][: self.n] == np.uint64(int(sid, 16))) & c["alive"][: self.n])

    def rows_of_bank(self, bank: str | None) -> np.ndarray:
        if bank is None:
            return self.live_rows()
        idx = self._bank_idx.get(bank)
        if idx is None:
            return np.zeros(0, dtype=np.int64)
        c = self.cols
        return np.flatnonzero((c["bank"][: self.n] == idx) & c["alive"][: self.n])

    # -- snapshots ------------------------------------------------------------------------------
    def export(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        arrays = {f"col_{name}": col[: self.n].copy() for name, col in self.cols.items()}
        arrays.update({f"key_map_{name}": array for name, array in self._map.export().items()})
        meta = {
            "n": self.n, "bank_names": self.bank_names, "kind_names": self.kind_names,
            "metadata": {str(row): md for row, md in self.metadata.items()},
            "overflow": self._overflow,
        }
        return arrays, meta

    @classmethod
    def restore(cls, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> "SignalRows":
        n = int(meta["n"])
        rows = cls(capacity=max(1024, int(n * 1.25)))
        rows.n = n
        for name in COLUMNS:
            rows.cols[name][:n] = arrays[f"col_{name}"]
        for name in meta["bank_names"]:
            rows.bank_index(name)
        for name in meta["kind_names"]:
            rows.kind_index(name)
        for row, md in meta["metadata"].items():
            rows.metadata.set(int(row), md)
        rows._overflow = dict(meta["overflow"])
        rows._free.push(np.flatnonzero(~rows.cols["alive"][:n]))  # no search of this process holds them
        rows._map = U64Map.restore({name: arrays[f"key_map_{name}"] for name in ("keys", "vals")})
        return rows

    def stats(self) -> dict[str, int]:
        """Row counts: used (dead included), free, waiting for searches to finish."""
        return {"rows": self.n, "free": len(self._free), "released": sum(len(rows) for _, rows in self._released)}

    def nbytes(self) -> int:
        return sum(col.nbytes for col in self.cols.values()) + self._map.nbytes()
