"""Exact PDQ search by scanning every code: the reference implementation, and the index for small sets.

Codes are kept as rows of 4 uint64 words; a query's distance to all rows is the popcount of XOR.
Removal moves the last row into the hole, so memory stays one copy of the live codes.
"""

from __future__ import annotations

import numpy as np

from pipeline.index.codes import check_codes, check_max_distance

SearchResult = tuple[np.ndarray, np.ndarray, np.ndarray]  # lims, ids, distances


class FlatPdqIndex:
    def __init__(self, codes: np.ndarray | None = None, ids: np.ndarray | None = None) -> None:
        self._words = np.zeros((0, 4), dtype=np.uint64)
        self._ids = np.zeros(0, dtype=np.int64)
        self._row_of: dict[int, int] = {}
        if codes is not None and ids is not None:
            self.add(codes, ids)

    def __len__(self) -> int:
        return len(self._row_of)

    def add(self, codes: np.ndarray, ids: np.ndarray) -> None:
        """Add codes under ids; an id already present is replaced."""
        codes = check_codes(codes)
        ids = np.asarray(ids, dtype=np.int64)
        if len(codes) != len(ids):
            raise ValueError("codes and ids differ in length")
        # The last occurrence of an id within one call wins.
        _, last = np.unique(ids[::-1], return_index=True)
        keep = np.sort(len(ids) - 1 - last)
        codes, ids = codes[keep], ids[keep]
        words = codes.view(np.uint64).reshape(-1, 4)
        existing = np.array([i in self._row_of for i in ids.tolist()], dtype=bool)
        for i, w in zip(ids[existing].tolist(), words[existing]):
            self._words[self._row_of[i]] = w
        new_ids, new_words = ids[~existing], words[~existing]
        start = len(self._ids)
        self._words = np.concatenate([self._words, new_words])
        self._ids = np.concatenate([self._ids, new_ids])
        self._row_of.update(zip(new_ids.tolist(), range(start, start + len(new_ids))))

    def remove(self, ids: np.ndarray) -> None:
        """Remove ids; unknown ids are ignored."""
        for i in np.asarray(ids, dtype=np.int64).tolist():
            row = self._row_of.pop(i, None)
            if row is None:
                continue
            last = len(self._ids) - 1
            if row != last:
                moved = int(self._ids[last])
                self._words[row] = self._words[last]
                self._ids[row] = moved
                self._row_of[moved] = row
            self._words = self._words[:last]
            self._ids = self._ids[:last]

    def search(self, queries: np.ndarray, max_distance: int = 31) -> SearchResult:
        """Every code within max_distance (inclusive) of each query."""
        queries = check_codes(queries)
        max_distance = check_max_distance(max_distance)
        qwords = queries.view(np.uint64).reshape(-1, 4)
        lims = np.zeros(len(queries) + 1, dtype=np.int64)
        found_ids, found_d = [], []
        for qi, q in enumerate(qwords):
            d = np.bitwise_count(self._words ^ q).sum(axis=1, dtype=np.int32)
            hit = np.flatnonzero(d <= max_distance)
            found_ids.append(self._ids[hit])
            found_d.append(d[hit])
            lims[qi + 1] = lims[qi] + len(hit)
        ids = np.concatenate(found_ids) if found_ids else np.zeros(0, dtype=np.int64)
        distances = np.concatenate(found_d) if found_d else np.zeros(0, dtype=np.int32)
        return lims, ids.astype(np.int64), distances.astype(np.int32)
