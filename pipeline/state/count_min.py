"""Count-min sketch over time buckets, with its cells behind a small store interface.

Width and depth follow from the error bound: with width w = ceil(e / epsilon) and depth
d = ceil(ln(1 / delta)), an estimate exceeds the true count by more than epsilon * N (N = all
counts added to the buckets summed) with probability at most delta, and never underestimates.

Counts go into time buckets; a window's count is the sum of its buckets, row by row, before the
minimum over rows is taken (the sum of sketches is the sketch of the sum, so the bound holds
for any window, with N the window's total).
"""

from __future__ import annotations

import hashlib
import math
from collections import defaultdict
from typing import Iterable, Protocol


class CellStore(Protocol):
    """Where counters live: (bucket, row, column) -> count. The worker keeps them in a Faust table."""

    def get(self, cell: tuple[int, int, int]) -> int: ...

    def add(self, cell: tuple[int, int, int], amount: int) -> None: ...

    def drop_buckets_before(self, bucket: int) -> int: ...


class MemoryCellStore:
    def __init__(self) -> None:
        self._cells: dict[int, dict[tuple[int, int], int]] = defaultdict(dict)

    def get(self, cell: tuple[int, int, int]) -> int:
        bucket, row, col = cell
        return self._cells.get(bucket, {}).get((row, col), 0)

    def add(self, cell: tuple[int, int, int], amount: int) -> None:
        bucket, row, col = cell
        cells = self._cells[bucket]
        cells[(row, col)] = cells.get((row, col), 0) + amount

    def drop_buckets_before(self, bucket: int) -> int:
        old = [b for b in self._cells if b < bucket]
        for b in old:
            del self._cells[b]
        return len(old)


def dimensions(epsilon: float, delta: float) -> tuple[int, int]:
    """(width, depth) for an overestimate of at most epsilon * N with probability 1 - delta."""
    if not (0 < epsilon < 1 and 0 < delta < 1):
        raise ValueError("epsilon and delta must be between 0 and 1")
    return math.ceil(math.e / epsilon), math.ceil(math.log(1 / delta))


class CountMinSketch:
    def __init__(self, store: CellStore, epsilon: float = 0.001, delta: float = 0.01) -> None:
        self.store = store
        self.epsilon, self.delta = epsilon, delta
        self.width, self.depth = dimensions(epsilon, delta)

    def columns(self, key: str) -> list[int]:
        """One column per row, from two 64-bit halves of one hash (Kirsch-Mitzenmacher)."""
        digest = hashlib.blake2b(key.encode(), digest_size=16).digest()
        h1, h2 = int.from_bytes(digest[:8], "little"), int.from_bytes(digest[8:], "little") | 1
        return [(h1 + row * h2) % self.width for row in range(self.depth)]

    def add(self, key: str, bucket: int, amount: int = 1) -> None:
        for row, col in enumerate(self.columns(key)):
            self.store.add((bucket, row, col), amount)

    def estimate(self, key: str, buckets: Iterable[int]) -> int:
        buckets = list(buckets)
        return min(
            sum(self.store.get((bucket, row, col)) for bucket in buckets)
            for row, col in enumerate(self.columns(key))
        )
