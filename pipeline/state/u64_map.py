"""A map from 64-bit keys to row numbers in two numpy arrays (open addressing, linear probing).

The bank view keeps one row per bank signal; at 10M signals a Python dict from key to row costs
about 1 GB and seconds to rebuild, this map 16 bytes a slot and a compiled loop. Deletion shifts
later entries back (no tombstones), so lookups stay short under churn.
"""

from __future__ import annotations

import numpy as np
from numba import njit

EMPTY = -1
MAX_LOAD = 0.7


@njit(cache=True, inline="always")
def _home(key: np.uint64, mask: np.int64) -> np.int64:
    h = key * np.uint64(0x9E3779B97F4A7C15)
    return np.int64(h >> np.uint64(17)) & mask


@njit(cache=True, inline="always")
def _slot(keys, vals, key, mask) -> np.int64:
    """Where key is, or the empty slot that ends its probe sequence."""
    i = _home(key, mask)
    while vals[i] != EMPTY and keys[i] != key:
        i = (i + 1) & mask
    return i


@njit(cache=True)
def _get_many(keys, vals, queries, out):
    mask = np.int64(len(keys) - 1)
    for q in range(len(queries)):
        out[q] = vals[_slot(keys, vals, queries[q], mask)]


@njit(cache=True)
def _put_many(keys, vals, new_keys, new_vals) -> int:
    """Insert or update; returns how many keys were new."""
    mask = np.int64(len(keys) - 1)
    added = 0
    for q in range(len(new_keys)):
        i = _slot(keys, vals, new_keys[q], mask)
        if vals[i] == EMPTY:
            added += 1
            keys[i] = new_keys[q]
        vals[i] = new_vals[q]
    return added


@njit(cache=True)
def _delete_many(keys, vals, gone) -> int:
    mask = np.int64(len(keys) - 1)
    removed = 0
    for q in range(len(gone)):
        i = _slot(keys, vals, gone[q], mask)
        if vals[i] == EMPTY:
            continue
        removed += 1
        # backward-shift deletion: move later entries of the cluster into the hole when their
        # home slot is not cyclically within (hole, position]
        j = i
        while True:
            vals[i] = EMPTY
            while True:
                j = (j + 1) & mask
                if vals[j] == EMPTY:
                    break
                k = _home(keys[j], mask)
                if i <= j:
                    stays = i < k <= j
                else:
                    stays = k > i or k <= j
                if not stays:
                    break
            if vals[j] == EMPTY:
                break
            keys[i] = keys[j]
            vals[i] = vals[j]
            i = j
    return removed


class U64Map:
    """uint64 key -> non-negative int64 value."""

    def __init__(self, capacity: int = 1024) -> None:
        size = 1024
        while size * MAX_LOAD < capacity:
            size *= 2
        self._keys = np.zeros(size, dtype=np.uint64)
        self._vals = np.full(size, EMPTY, dtype=np.int64)
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def get_many(self, keys: np.ndarray) -> np.ndarray:
        """The value of each key, or -1."""
        keys = np.ascontiguousarray(keys, dtype=np.uint64)
        out = np.empty(len(keys), dtype=np.int64)
        _get_many(self._keys, self._vals, keys, out)
        return out

    def put_many(self, keys: np.ndarray, values: np.ndarray) -> None:
        keys = np.ascontiguousarray(keys, dtype=np.uint64)
        values = np.ascontiguousarray(values, dtype=np.int64)
        if len(values) and values.min() < 0:
            raise ValueError("values must be non-negative")
        self._reserve(self._count + len(keys))
        self._count += _put_many(self._keys, self._vals, keys, values)

    def delete_many(self, keys: np.ndarray) -> None:
        self._count -= _delete_many(self._keys, self._vals, np.ascontiguousarray(keys, dtype=np.uint64))

    def _reserve(self, count: int) -> None:
        if count <= len(self._keys) * MAX_LOAD:
            return
        live = self._vals != EMPTY
        keys, vals = self._keys[live], self._vals[live]
        # twice the slots (half full after growing), or as many as a larger batch needs: at 16
        # bytes a slot the headroom is the map's main cost (30M keys: 1 GiB, not 2 as before)
        bigger = U64Map(max(count, int(2 * len(self._keys) * MAX_LOAD)))
        bigger._count = _put_many(bigger._keys, bigger._vals, keys, vals)
        self._keys, self._vals, self._count = bigger._keys, bigger._vals, bigger._count

    def export(self) -> dict[str, np.ndarray]:
        return {"keys": self._keys.copy(), "vals": self._vals.copy()}

    @classmethod
    def restore(cls, exported: dict[str, np.ndarray]) -> "U64Map":
        """The map an `export` was taken of, its slots as they were (no key inserted again)."""
        restored = cls()
        restored._keys = np.ascontiguousarray(exported["keys"], dtype=np.uint64)
        restored._vals = np.ascontiguousarray(exported["vals"], dtype=np.int64)
        restored._count = int((restored._vals != EMPTY).sum())
        return restored

    def nbytes(self) -> int:
        return self._keys.nbytes + self._vals.nbytes
