"""One index per signal type, behind one interface, keyed by the bank view's integer row ids.

Each index also keeps the signal values it holds (the bank view keeps none of its own) and can
hand them over as arrays for a snapshot, and be rebuilt from them.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Protocol, Sequence

import numpy as np

from pipeline.index import build_pdq_index, code_to_hex, codes_from_hex

Hits = list[list[tuple[int, int]]]  # per query: (row id, distance)


class SignalIndex(Protocol):
    def add(self, ids: Sequence[int], values: Sequence[str]) -> None: ...

    def remove(self, ids: Sequence[int]) -> None: ...

    def search(self, values: Sequence[str], max_distance: int) -> Hits: ...

    def values(self, ids: Sequence[int]) -> list[str]: ...

    def export(self) -> dict[str, np.ndarray]: ...

    def __len__(self) -> int: ...


class PdqSignalIndex:
    """PDQ codes in `pipeline.index`: exact Hamming-distance search."""

    def __init__(self, exported: dict[str, np.ndarray] | None = None) -> None:
        codes = exported["codes"] if exported else np.zeros((0, 32), dtype=np.uint8)
        ids = exported["ids"] if exported else np.zeros(0, dtype=np.int64)
        self._index = build_pdq_index(codes, ids)

    def add(self, ids: Sequence[int], values: Sequence[str]) -> None:
        if len(ids):
            self._index.add(codes_from_hex(values), np.asarray(ids, dtype=np.int64))

    def remove(self, ids: Sequence[int]) -> None:
        if len(ids):
            self._index.remove(np.asarray(ids, dtype=np.int64))

    def search(self, values: Sequence[str], max_distance: int) -> Hits:
        if not values:
            return []
        lims, ids, distances = self._index.search(codes_from_hex(values), max_distance=max_distance)
        return [
            list(zip(ids[lims[i]:lims[i + 1]].tolist(), distances[lims[i]:lims[i + 1]].tolist()))
            for i in range(len(values))
        ]

    def values(self, ids: Sequence[int]) -> list[str]:
        return [code_to_hex(code) for code in self._index.codes_of(np.asarray(ids, dtype=np.int64))]

    def stats(self) -> dict[str, int]:
        return self._index.stats()

    def wait_for_merges(self) -> None:
        self._index.wait_for_merges()

    def export(self) -> dict[str, np.ndarray]:
        codes, ids = self._index.live()
        return {"codes": codes, "ids": ids}

    def __len__(self) -> int:
        return len(self._index)


class ExactSignalIndex:
    """Signals that match only when equal (video MD5): a dict from value to row ids."""

    def __init__(self, exported: dict[str, np.ndarray] | None = None) -> None:
        self._by_value: dict[str, set[int]] = defaultdict(set)
        self._value_of: dict[int, str] = {}
        if exported:
            self.add(exported["ids"].tolist(), exported["values"].tolist())

    def add(self, ids: Sequence[int], values: Sequence[str]) -> None:
        self.remove([i for i in ids if i in self._value_of])
        for row, value in zip(ids, values):
            self._by_value[value].add(row)
            self._value_of[row] = value

    def remove(self, ids: Sequence[int]) -> None:
        for row in ids:
            value = self._value_of.pop(row, None)
            if value is None:
                continue
            rows = self._by_value[value]
            rows.discard(row)
            if not rows:
                del self._by_value[value]

    def search(self, values: Sequence[str], max_distance: int) -> Hits:
        # tuple() copies a set in one step, so a search on another thread never sees it change size
        return [[(row, 0) for row in tuple(self._by_value.get(value, ()))] for value in values]

    def values(self, ids: Sequence[int]) -> list[str]:
        return [self._value_of[row] for row in ids]

    def export(self) -> dict[str, np.ndarray]:
        ids = np.fromiter(self._value_of.keys(), dtype=np.int64, count=len(self._value_of))
        return {"ids": ids, "values": np.array(list(self._value_of.values()), dtype=str)}

    def __len__(self) -> int:
        return len(self._value_of)


class StoredValues(ExactSignalIndex):
    """Signal types that are banked but not matched (vPDQ): their values kept, never searched."""

    def search(self, values: Sequence[str], max_distance: int) -> Hits:
        return [[] for _ in values]


INDEX_KINDS: dict[str, type] = {"pdq": PdqSignalIndex, "video_md5": ExactSignalIndex}


def new_index(signal_type_name: str, exported: dict[str, np.ndarray] | None = None) -> Any:
    """The index for a signal type (fresh, or rebuilt from `export()`); unmatched types keep values only."""
    return INDEX_KINDS.get(signal_type_name, StoredValues)(exported)
