"""Exact PDQ search at 10M codes: multi-index hashing over an append-only row store.

- Rows (codes, ids, tombstones) are appended; a removal or replacement marks the old row dead.
- 11 tables key each row by 23 of its bits (CSR: offsets per key, rows sorted by key). Two codes
  within distance d differ in at most floor(d / 11) bits of some table's key (pigeonhole), so
  probing every key within that radius of the query's keys finds every hit: exact for d <= 31 with
  at most 2 flipped bits per key. Candidates are verified on all 256 bits.
- Rows appended since the tables were built form the delta, scanned flat; they are visible at once.
  An index that never grows past MIN_DELTA rows is all delta: it allocates no tables.
- When the delta outgrows its share, a background thread rebuilds the tables one at a time from
  the append-only rows and swaps each in: searches go on, and the extra memory is one table
  (never a second copy of the index). Dead rows are dropped by a compaction when they pile up.
- Distances past 31 take the slower exact path: a scan of every row.
"""

from __future__ import annotations

import logging
import threading

import numpy as np

from pipeline.index import kernels as K
from pipeline.index.codes import check_codes, check_max_distance

log = logging.getLogger(__name__)
SearchResult = tuple[np.ndarray, np.ndarray, np.ndarray]
MIN_DELTA = 20_000
PROGRESS_FROM = 1_000_000  # large builds log each table as it is done
DELTA_SHARE = 0.01
MAX_PROBE_DISTANCE = 2 * K.TABLES + (K.TABLES - 1)  # radius 2 covers every d <= 32; 31 is the PDQ range


class MihPdqIndex:
    def __init__(self, codes: np.ndarray | None = None, ids: np.ndarray | None = None,
                 background_merge: bool = True) -> None:
        self._lock = threading.RLock()
        self._background = background_merge
        self._merging: threading.Thread | None = None
        self._reset(0)
        if codes is not None and ids is not None and len(ids):
            self.add(codes, ids)
            if len(ids) > MIN_DELTA:
                self.merge()

    # -- storage --------------------------------------------------------------------------------
    def _reset(self, capacity: int) -> None:
        capacity = max(capacity, 1024)
        self._codes = np.zeros((capacity, 4), dtype=np.uint64)
        self._ids = np.zeros(capacity, dtype=np.int64)
        self._dead = np.zeros(capacity, dtype=np.bool_)
        self._total = 0
        self._live = 0
        self._offsets: np.ndarray | None = None  # allocated by the first merge: small indices are only scanned
        self._rows = np.zeros((K.TABLES, 0), dtype=np.uint32)
        self._table_rows = np.zeros(K.TABLES, dtype=np.int64)  # rows [0, n) each table holds
        self._row_of_id = np.full(1024, -1, dtype=np.int64)

    def _grow(self, needed: int) -> None:
        cap = len(self._ids)
        if needed <= cap:
            return
        new_cap = max(needed, cap * 2)
        for name in ("_codes", "_ids", "_dead"):
            old = getattr(self, name)
            new = np.zeros((new_cap,) + old.shape[1:], dtype=old.dtype)
            new[: self._total] = old[: self._total]
            setattr(self, name, new)

    def _rows_for_id(self, ids: np.ndarray) -> np.ndarray:
        if len(ids) and ids.max() >= len(self._row_of_id):
            grown = np.full(max(int(ids.max()) + 1, 2 * len(self._row_of_id)), -1, dtype=np.int64)
            grown[: len(self._row_of_id)] = self._row_of_id
            self._row_of_id = grown
        return self._row_of_id[ids]

    def __len__(self) -> int:
        return self._live

    # -- changes --------------------------------------------------------------------------------
    def add(self, codes: np.ndarray, ids: np.ndarray) -> None:
        """Add codes under non-negative ids (dense ids keep the id map small); an existing id is replaced."""
        codes = check_codes(codes)
        ids = np.asarray(ids, dtype=np.int64)
        if len(codes) != len(ids):
            raise ValueError("codes and ids differ in length")
        if len(ids) and ids.min() < 0:
            raise ValueError("ids must be non-negative")
        _, last = np.unique(ids[::-1], return_index=True)
        keep = np.sort(len(ids) - 1 - last)
        codes, ids = codes[keep], ids[keep]
        with self._lock:
            old = self._rows_for_id(ids)
            replaced = old[old >= 0]
            self._dead[replaced] = True
            self._live -= len(replaced)
            start = self._total
            self._grow(start + len(ids))
            self._codes[start : start + len(ids)] = codes.view(np.uint64).reshape(-1, 4)
            self._ids[start : start + len(ids)] = ids
            self._row_of_id[ids] = np.arange(start, start + len(ids))
            self._total += len(ids)
            self._live += len(ids)
        self._maybe_merge()

    def remove(self, ids: np.ndarray) -> None:
        """Remove ids; unknown ids are ignored."""
        ids = np.asarray(ids, dtype=np.int64)
        ids = ids[(ids >= 0) & (ids < len(self._row_of_id))]
        with self._lock:
            rows = self._row_of_id[ids]
            rows = np.unique(rows[rows >= 0])
            self._dead[rows] = True
            self._row_of_id[self._ids[rows]] = -1
            self._live -= len(rows)
        self._maybe_merge()

    # -- table maintenance ----------------------------------------------------------------------
    def _delta(self) -> int:
        return self._total - int(self._table_rows.min())

    def _maybe_merge(self) -> None:
        dead = self._total - self._live
        if dead > max(MIN_DELTA, self._total // 4):
            self.compact()
        elif self._delta() > max(MIN_DELTA, int(self._total * DELTA_SHARE)):
            if self._background:
                if self._merging is None or not self._merging.is_alive():
                    self._merging = threading.Thread(target=self.merge, name="pdq-index-merge", daemon=True)
                    self._merging.start()
            else:
                self.merge()

    def merge(self) -> None:
        """Rebuild the tables over every row so far, one table at a time, swapping each in."""
        with self._lock:
            n, codes = self._total, self._codes
            if self._offsets is None:
                self._offsets = np.zeros((K.TABLES, K.BUCKETS + 1), dtype=np.uint32)
            if self._rows.shape[1] < n:
                rows = np.zeros((K.TABLES, max(n, int(len(self._ids)))), dtype=np.uint32)
                rows[:, : self._rows.shape[1]] = self._rows
                self._rows = rows
        offsets = np.zeros(K.BUCKETS + 1, dtype=np.uint32)
        rows_t = np.zeros(n, dtype=np.uint32)
        for t in range(K.TABLES):
            K.build_table(codes, n, t, offsets, rows_t)  # no lock: rows below n never change
            if n >= PROGRESS_FROM:
                log.info("index table built", extra={"table": f"{t + 1}/{K.TABLES}", "rows": n})
            with self._lock:
                self._offsets[t] = offsets
                self._rows[t, :n] = rows_t
                self._table_rows[t] = n

    def compact(self) -> None:
        """Drop dead rows and rebuild: row numbers change, so searches wait for it."""
        with self._lock:
            if self._merging is not None and self._merging.is_alive():
                self._merging.join()
            live = np.flatnonzero(~self._dead[: self._total])
            codes = self._codes[live].copy()
            ids = self._ids[live].copy()
            self._reset(int(len(live) * 1.25))
            self._grow(len(live))
            self._codes[: len(live)] = codes
            self._ids[: len(live)] = ids
            self._rows_for_id(ids)
            self._row_of_id[ids] = np.arange(len(live))
            self._total = self._live = len(live)
            del codes
            self.merge()

    # -- search ---------------------------------------------------------------------------------
    def search(self, queries: np.ndarray, max_distance: int = 31) -> SearchResult:
        """Every live code within max_distance (inclusive) of each query."""
        queries = check_codes(queries).view(np.uint64).reshape(-1, 4)
        max_distance = check_max_distance(max_distance)
        capacity = max(64, 8 * len(queries))
        while True:
            out_q = np.empty(capacity, dtype=np.int64)
            out_rows = np.empty(capacity, dtype=np.int64)
            out_d = np.empty(capacity, dtype=np.int32)
            with self._lock:
                if max_distance > 31 or self._offsets is None:
                    count = K.scan(self._codes, queries, 0, self._total, self._dead, max_distance,
                                   out_q, out_rows, out_d, 0)
                else:
                    count = K.search(self._codes, queries, self._offsets, self._rows, int(self._table_rows.min()),
                                     self._total, self._dead, max_distance, max_distance // K.TABLES,
                                     out_q, out_rows, out_d)
                if count <= capacity:
                    return _per_query(len(queries), out_q[:count], self._ids[out_rows[:count]], out_d[:count])
            capacity = count

    def codes_of(self, ids: np.ndarray) -> np.ndarray:
        """The codes (uint8, (n, 32)) stored under live ids; KeyError for an id not in the index."""
        ids = np.asarray(ids, dtype=np.int64)
        with self._lock:
            rows = np.full(len(ids), -1, dtype=np.int64)
            known = (ids >= 0) & (ids < len(self._row_of_id))
            rows[known] = self._row_of_id[ids[known]]
            if len(rows) and rows.min() < 0:
                raise KeyError(f"ids not in the index: {ids[rows < 0][:5].tolist()}")
            return self._codes[rows].view(np.uint8).reshape(-1, 32).copy()

    def live(self) -> tuple[np.ndarray, np.ndarray]:
        """(codes, ids) of every live row: what a snapshot keeps to rebuild the index."""
        with self._lock:
            rows = np.flatnonzero(~self._dead[: self._total])
            return self._codes[rows].view(np.uint8).reshape(-1, 32).copy(), self._ids[rows].copy()

    def memory_bytes(self) -> int:
        arrays = (self._codes, self._ids, self._dead, self._rows, self._row_of_id)
        return sum(a.nbytes for a in arrays) + (0 if self._offsets is None else self._offsets.nbytes)


def _per_query(n_queries: int, q: np.ndarray, ids: np.ndarray, d: np.ndarray) -> SearchResult:
    """Hits grouped by query, each (query, id) once."""
    order = np.lexsort((ids, q))
    q, ids, d = q[order], ids[order], d[order]
    first = np.ones(len(q), dtype=bool)
    first[1:] = (q[1:] != q[:-1]) | (ids[1:] != ids[:-1])
    q, ids, d = q[first], ids[first], d[first]
    lims = np.zeros(n_queries + 1, dtype=np.int64)
    np.cumsum(np.bincount(q, minlength=n_queries), out=lims[1:])
    return lims, ids, d
