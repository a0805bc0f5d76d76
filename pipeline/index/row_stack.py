"""A growable stack of row numbers: free rows, rows waiting for a merge."""

from __future__ import annotations

import numpy as np


class RowStack:
    """A growable array of row numbers (numpy, so millions of them cost 8 bytes each)."""

    def __init__(self) -> None:
        self.array = np.zeros(1024, dtype=np.int64)
        self.n = 0

    def __len__(self) -> int:
        return self.n

    def push(self, rows: np.ndarray) -> None:
        if self.n + len(rows) > len(self.array):
            grown = np.zeros(max(self.n + len(rows), 2 * len(self.array)), dtype=np.int64)
            grown[: self.n] = self.array[: self.n]
            self.array = grown
        self.array[self.n : self.n + len(rows)] = rows
        self.n += len(rows)

    def pop(self, k: int) -> np.ndarray:
        k = min(k, self.n)
        self.n -= k
        taken = self.array[self.n : self.n + k].copy()
        self._shrink()
        return taken

    def view(self) -> np.ndarray:
        return self.array[: self.n]

    def drop_first(self, k: int, alive: np.ndarray) -> None:
        """Drop the first k rows, and dead rows among the rest."""
        rest = self.array[k : self.n]
        rest = rest[alive[rest]]
        self.array[: len(rest)] = rest
        self.n = len(rest)
        self._shrink()

    def _shrink(self) -> None:
        """Give memory back after a large batch has gone (a bulk load's delta: 80 MB at 10M)."""
        if len(self.array) > 4096 and self.n < len(self.array) // 4:
            self.array = self.array[: max(1024, 2 * self.n)].copy()
