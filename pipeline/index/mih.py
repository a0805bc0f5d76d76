"""Exact PDQ search at 10M codes: multi-index hashing over a row store that reuses its rows.

- Rows hold a code, its id and a live flag. A removal (or a replacement) marks the row dead; once
  no table refers to it any more, the row is free and the next add takes it, so memory follows
  the number of live codes under churn instead of growing with every change.
- 11 tables key each row by 23 of its bits (CSR: offsets per key, rows sorted by key). Two codes
  within distance d differ in at most r_t bits of table t's key for some t, when the radii r_t
  add up (plus one each) to more than d (pigeonhole): exact up to distance 32 with radius <= 2.
  Candidates are verified on all 256 bits (kernels.search_tables, with prefetching).
- Rows added since the tables were last merged form the delta, scanned flat: visible at once.
- When the delta outgrows its share, a background thread merges it into the tables one table at
  a time, each in one sequential pass over the old table (kernels.merge_table), swapping each in:
  searches go on, and the extra memory is one table (never a second copy of the index). An
  index built from scratch, or a delta as large as a quarter of the index, is counting-sorted
  instead (kernels.build_table). Rows that died before a merge began are free once it ends.
  While changes keep coming, the merge waits for a pause or for a delta several times larger:
  every merge rewrites each table's 2^23 offsets whatever the delta's size, so a bulk load pays
  for a few large merges rather than many small ones.
- Dense regions (clusters of near-duplicates, which crowd the buckets of every table) are found
  when the tables are first built and kept apart as groups around leaders (pipeline.index.groups):
  a query skips a group whose leader is too far by the triangle inequality and verifies the others'
  members in one sequential pass. Codes added later go to the tables.
- Distances past 32 take the slower exact path: a scan of every row.
- `export` and `restore` hand over these arrays as they are: a restart loads them (a copy),
  no table is built again.
"""

from __future__ import annotations

import logging
import threading
import time

import numpy as np

from pipeline.index import kernels as K
from pipeline.index.codes import check_codes, check_max_distance
from pipeline.index.groups import Groups, find_groups, no_groups, search_groups
from pipeline.index.row_stack import RowStack

log = logging.getLogger(__name__)
SearchResult = tuple[np.ndarray, np.ndarray, np.ndarray]
MIN_DELTA = 20_000  # an index that never grows past this is all delta: it allocates no tables
DELTA_SHARE = 0.002  # merge once the delta is this share of the index (20,000 rows at 10M)
# While changes keep coming, a background merge waits until the delta (or the dead rows) reach this
# many times their limit, or until no change has come for QUIET_S: searches scan the larger delta
# only during a bulk load, and the load pays a merge per 5 limits' worth of rows, not per limit.
BULK_MERGE_FACTOR = 5
QUIET_S = 1.0
MERGE_WAIT_POLL_S = 0.05  # how often a waiting merge looks again
FULL_BUILD_SHARE = 0.25  # a delta this large is counting-sorted with the tables, not merged in
PROGRESS_FROM = 1_000_000  # large full builds log each table as it is done


class MihPdqIndex:
    def __init__(self, codes: np.ndarray | None = None, ids: np.ndarray | None = None,
                 background_merge: bool = True) -> None:
        self._lock = threading.RLock()
        self._background = background_merge
        self._merging: threading.Thread | None = None
        self._changed_at = 0.0  # monotonic time of the newest add or remove
        capacity = 1024 if ids is None else len(ids)
        self._codes = np.zeros((max(capacity, 1024), 4), dtype=np.uint64)
        self._ids = np.zeros(len(self._codes), dtype=np.int64)
        self._alive = np.zeros(len(self._codes), dtype=np.bool_)
        self._member_of_row = np.full(len(self._codes), -1, dtype=np.int64)  # position in the groups, or -1
        self._groups = no_groups()
        self._high = 0  # rows ever used; rows below it are live, dead or free
        self._hits_per_query = 8  # output room per query a search starts with; grows with what searches find
        self._live = 0
        self._free = RowStack()  # dead rows no table refers to: taken by the next adds
        self._dying: list[np.ndarray] = []  # rows dead since the newest merge began
        self._delta = RowStack()  # rows not in every table yet (scanned flat)
        self._offsets: np.ndarray | None = None  # (TABLES, BUCKETS + 1), allocated by the first merge
        self._rows = np.zeros((K.TABLES, 0), dtype=np.uint32)
        self._table_rows = np.zeros(K.TABLES, dtype=np.int64)
        self._row_of_id = np.full(1024, -1, dtype=np.int64)
        if codes is not None and ids is not None and len(ids):
            self.add(codes, ids, merge=False)
            if len(ids) > MIN_DELTA:
                self.merge()

    # -- rows -----------------------------------------------------------------------------------
    def _rows_for_id(self, ids: np.ndarray) -> np.ndarray:
        if len(ids) and ids.max() >= len(self._row_of_id):
            grown = np.full(max(int(ids.max()) + 1, 2 * len(self._row_of_id)), -1, dtype=np.int64)
            grown[: len(self._row_of_id)] = self._row_of_id
            self._row_of_id = grown
        return self._row_of_id[ids]

    def _take_rows(self, n: int) -> np.ndarray:
        """n rows for new codes: free ones first, then new ones past the high-water mark."""
        reused = self._free.pop(n)
        extra = n - len(reused)
        if extra == 0:
            return reused
        needed = self._high + extra
        if needed > len(self._ids):
            capacity = max(needed, len(self._ids) * 2)
            for name in ("_codes", "_ids", "_alive", "_member_of_row"):
                old = getattr(self, name)
                new = np.full((capacity,) + old.shape[1:], -1 if name == "_member_of_row" else 0, dtype=old.dtype)
                new[: self._high] = old[: self._high]
                setattr(self, name, new)
        fresh = np.arange(self._high, needed, dtype=np.int64)
        self._high = needed
        return np.concatenate([reused, fresh])

    def _kill(self, rows: np.ndarray) -> None:
        """Rows are dead at once; they become free after the next merge (tables may refer to them)."""
        if len(rows):
            self._alive[rows] = False
            self._member_of_row[rows] = -1  # out of its group: the row may hold another code once free
            self._live -= len(rows)
            self._dying.append(rows)

    def __len__(self) -> int:
        return self._live

    # -- changes --------------------------------------------------------------------------------
    def add(self, codes: np.ndarray, ids: np.ndarray, merge: bool = True) -> None:
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
            self._kill(old[old >= 0])
            rows = self._take_rows(len(ids))
            self._codes[rows] = codes.view(np.uint64).reshape(-1, 4)
            self._ids[rows] = ids
            self._alive[rows] = True
            self._row_of_id[ids] = rows
            self._live += len(ids)
            self._delta.push(rows)
        self._changed_at = time.monotonic()
        if merge:
            self._maybe_merge()

    def remove(self, ids: np.ndarray) -> None:
        """Remove ids; unknown ids are ignored."""
        ids = np.asarray(ids, dtype=np.int64)
        ids = ids[(ids >= 0) & (ids < len(self._row_of_id))]
        with self._lock:
            rows = self._row_of_id[ids]
            rows = np.unique(rows[rows >= 0])
            self._row_of_id[self._ids[rows]] = -1
            self._kill(rows)
        self._changed_at = time.monotonic()
        self._maybe_merge()

    # -- table maintenance ----------------------------------------------------------------------
    def _delta_limit(self) -> int:
        return max(MIN_DELTA, int(self._live * DELTA_SHARE))

    def _dead_waiting(self) -> int:
        return sum(len(rows) for rows in self._dying)

    def _needs_merge(self, factor: int = 1) -> bool:
        limit = factor * self._delta_limit()
        return len(self._delta) > limit or self._dead_waiting() > limit

    def _maybe_merge(self) -> None:
        if not self._needs_merge():
            return
        if not self._background:
            self.merge()
        elif self._merging is None or not self._merging.is_alive():
            self._merging = threading.Thread(target=self._merge_while_needed, name="pdq-index-merge", daemon=True)
            self._merging.start()

    def _merge_while_needed(self) -> None:
        while self._needs_merge():
            if not self._needs_merge(BULK_MERGE_FACTOR) and time.monotonic() - self._changed_at < QUIET_S:
                time.sleep(MERGE_WAIT_POLL_S)  # changes are still coming: merge them together
                continue
            self.merge()

    def merge(self) -> None:
        """Bring the delta into every table and drop dead rows from them, one table at a time."""
        with self._lock:
            if self._offsets is None:
                self._offsets = np.zeros((K.TABLES, K.BUCKETS + 1), dtype=np.uint32)
            batch = self._delta.view().copy()
            dying_before = len(self._dying)  # kept in _dying until the merge ends (a snapshot keeps them)
            first = self._table_rows.max() == 0 and len(self._groups.leaders) == 0
            full = first or len(batch) > FULL_BUILD_SHARE * self._live
            live = self._alive[: self._high] & (self._member_of_row[: self._high] < 0) if full else self._alive
        # no lock: rows in the live snapshot cannot be reused while they are in it
        groups = find_groups(self._codes, live) if first else None
        if groups is not None:
            live[groups.rows] = False  # grouped codes stay out of the tables
        size = int(live.sum()) if full else int(self._table_rows.max()) + len(batch)
        offsets = np.zeros(K.BUCKETS + 1, dtype=np.uint32)
        rows = np.zeros(size, dtype=np.uint32)
        for t in range(K.TABLES):
            if full:  # no lock: the live snapshot's rows cannot be reused while they are in it
                n = K.build_table(self._codes, live, t, offsets, rows)
            else:  # no lock: only this thread writes tables; dead rows are dropped on the way
                keys = K.keys_of(self._codes, batch, t)
                order = np.argsort(keys, kind="stable")
                n = K.merge_table(self._alive, self._offsets[t], self._rows[t], batch[order], keys[order],
                                  offsets, rows)
            with self._lock:
                self._install(t, offsets, rows[:n])
            if full and size >= PROGRESS_FROM:
                log.info("index table built", extra={"table": f"{t + 1}/{K.TABLES}", "rows": n})
        with self._lock:
            dying, self._dying = self._dying[:dying_before], self._dying[dying_before:]
            if groups is not None:
                self._install_groups(groups)
            self._delta.drop_first(len(batch), self._alive)
            for gone in dying:
                self._free.push(gone)
        if not full:
            log.debug("index delta merged", extra={"rows": len(batch), "freed": sum(len(gone) for gone in dying)})

    def _install(self, t: int, offsets: np.ndarray, rows: np.ndarray) -> None:
        if len(rows) > self._rows.shape[1]:
            grown = np.zeros((K.TABLES, int(len(rows) * 1.1) + 1024), dtype=np.uint32)
            grown[:, : self._rows.shape[1]] = self._rows
            self._rows = grown
        self._offsets[t] = offsets
        self._rows[t, : len(rows)] = rows
        self._table_rows[t] = len(rows)

    def _install_groups(self, groups) -> None:
        """Members that died while the tables were built are left out (their rows may be reused)."""
        positions = np.arange(len(groups.rows), dtype=np.int64)
        alive = self._alive[groups.rows]
        self._member_of_row[groups.rows[alive]] = positions[alive]
        self._groups = groups
        log.info("index groups found", extra={"groups": len(groups.leaders), "rows": int(alive.sum())})

    def wait_for_merges(self) -> None:
        """Block until no background merge runs (tests and benchmarks)."""
        merging = self._merging
        if merging is not None:
            merging.join()

    # -- search ---------------------------------------------------------------------------------
    def search(self, queries: np.ndarray, max_distance: int = 31) -> SearchResult:
        """Every live code within max_distance (inclusive) of each query."""
        queries = check_codes(queries).view(np.uint64).reshape(-1, 4)
        max_distance = check_max_distance(max_distance)
        tables = max_distance <= K.MAX_TABLE_DISTANCE
        probes = K.probes_per_table(max_distance) if tables else None
        capacity = max(64, self._hits_per_query * len(queries))
        while True:
            out_q = np.empty(capacity, dtype=np.int64)
            out_rows = np.empty(capacity, dtype=np.int64)
            out_d = np.empty(capacity, dtype=np.int32)
            with self._lock:
                if not tables or self._offsets is None:
                    count = K.scan(self._codes, queries, K.NO_ROW_LIST, 0, self._high, self._alive, max_distance,
                                   out_q, out_rows, out_d, 0)
                else:
                    count = K.search_tables(self._codes, queries, self._offsets, self._rows, self._alive,
                                            max_distance, K.PROBE_MASKS, probes, out_q, out_rows, out_d, 0)
                    delta = self._delta.view()
                    count = K.scan(self._codes, queries, delta, 0, len(delta), self._alive, max_distance,
                                   out_q, out_rows, out_d, count)
                    g = self._groups
                    if len(g.leaders):
                        count = search_groups(g.leaders, g.radius, g.bounds, g.rows, g.codes, self._member_of_row,
                                              self._alive, queries, max_distance, out_q, out_rows, out_d, count)
                if count <= capacity:
                    return _per_query(len(queries), out_q[:count], self._ids[out_rows[:count]], out_d[:count])
            capacity = count
            # banks with crowded clusters return many hits per query: size the next searches for them
            self._hits_per_query = max(self._hits_per_query, -(-count // len(queries)))

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

    def export(self) -> dict[str, np.ndarray]:
        """Copies of the index's arrays as they are in memory (rows, tables, delta, free and dying
        rows, groups): a snapshot that `restore` loads without building a table."""
        with self._lock:
            width = int(self._table_rows.max())
            offsets = self._offsets if self._offsets is not None else np.zeros((0, K.BUCKETS + 1), dtype=np.uint32)
            return {
                "codes": self._codes[: self._high].copy(), "ids": self._ids[: self._high].copy(),
                "alive": self._alive[: self._high].copy(), "offsets": offsets.copy(),
                "table_rows": self._rows[:, :width].copy(), "table_sizes": self._table_rows.copy(),
                "row_of_id": self._row_of_id.copy(), "free": self._free.view().copy(),
                "delta": self._delta.view().copy(),
                "dying": np.concatenate(self._dying) if self._dying else np.zeros(0, dtype=np.int64),
                "counts": np.array([self._high, self._live, self._hits_per_query], dtype=np.int64),
                "member_of_row": self._member_of_row[: self._high].copy(),
                **{f"group_{name}": array.copy() for name, array in self._groups._asdict().items()},
            }

    @classmethod
    def restore(cls, exported: dict[str, np.ndarray], background_merge: bool = True) -> "MihPdqIndex":
        """The index an `export` was taken of: its arrays copied into place (with room to grow), nothing rebuilt."""
        index = cls(background_merge=background_merge)
        high, live, hits_per_query = (int(v) for v in exported["counts"])
        capacity = max(1024, high + high // 8)
        for name in ("codes", "ids", "alive", "member_of_row"):
            array = getattr(index, f"_{name}")
            grown = np.full((capacity,) + array.shape[1:], -1 if name == "member_of_row" else 0, dtype=array.dtype)
            grown[:high] = exported[name].reshape((high,) + array.shape[1:])
            setattr(index, f"_{name}", grown)
        index._groups = Groups(**{name: np.asarray(exported[f"group_{name}"]) for name in Groups._fields})
        index._high, index._live, index._hits_per_query = high, live, hits_per_query
        if len(exported["offsets"]):
            index._offsets = np.ascontiguousarray(exported["offsets"], dtype=np.uint32)
            table_rows = exported["table_rows"]
            index._rows = np.zeros((K.TABLES, int(table_rows.shape[1] * 1.1) + 1024), dtype=np.uint32)
            index._rows[:, : table_rows.shape[1]] = table_rows
            index._table_rows = np.asarray(exported["table_sizes"], dtype=np.int64).copy()
        index._row_of_id = np.asarray(exported["row_of_id"], dtype=np.int64)
        index._free.push(exported["free"])
        index._delta.push(exported["delta"])
        if len(exported["dying"]):
            index._dying.append(np.asarray(exported["dying"], dtype=np.int64))
        index._maybe_merge()  # a delta the exporting process had not merged yet
        return index

    def stats(self) -> dict[str, int]:
        """Row counts for metrics and tests: live, delta, free, dying, rows ever used."""
        with self._lock:
            return {"live": self._live, "delta": len(self._delta), "free": len(self._free),
                    "dying": self._dead_waiting(), "high": self._high,
                    "grouped": int((self._member_of_row[: self._high] >= 0).sum())}


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
