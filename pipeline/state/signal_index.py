"""The index interface of every signal type, keyed by the bank view's integer row ids, and the
indices shared by many types: a hash map for exact types, python-threatexchange's own for the rest
(each type's plug-in says which, pipeline/signal_types.py).

Each index also keeps the signal values it holds (the bank view keeps none of its own) and can
hand them over as arrays for a snapshot, and be rebuilt from them.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from typing import Any, Protocol, Sequence

import numpy as np

log = logging.getLogger(__name__)
Hits = list[list[tuple[int, int]]]  # per query: (row id, distance)


class SignalValues(Protocol):
    """A signal type's values by row: what a view that never searches keeps (SignalPlugin.new_value_store)."""

    def add(self, ids: Sequence[int], values: Sequence[str]) -> None: ...

    def remove(self, ids: Sequence[int]) -> None: ...

    def values(self, ids: Sequence[int]) -> list[str]: ...

    def export(self) -> dict[str, np.ndarray]: ...

    def __len__(self) -> int: ...


class SignalIndex(SignalValues, Protocol):
    def search(self, values: Sequence[str], max_distance: int) -> Hits: ...


class StoredValues:
    """Any signal type's values by row: alone, for a view without an index (a main worker in shard
    mode judges the candidates the shards found and never searches); as the base of an index whose
    values can be long (a video's frames) or that must rebuild itself from them."""

    def __init__(self, exported: dict[str, np.ndarray] | None = None) -> None:
        self._value_of: dict[int, str] = {}
        self._lock = threading.RLock()  # changes and exports under it (a subclass's index changes with them)
        if exported:
            self.add(*self.exported_rows(exported))

    @staticmethod
    def exported_rows(exported: dict[str, np.ndarray]) -> tuple[list[int], list[str]]:
        """The (row ids, values) of an export, to add to a new store."""
        return exported["ids"].tolist(), strings_from_arrays(exported["text"], exported["ends"])

    def add(self, ids: Sequence[int], values: Sequence[str]) -> None:
        with self._lock:
            self._value_of.update(zip(ids, values))

    def remove(self, ids: Sequence[int]) -> None:
        with self._lock:
            for row in ids:
                self._value_of.pop(row, None)

    def values(self, ids: Sequence[int]) -> list[str]:
        return [self._value_of[row] for row in ids]

    def export(self) -> dict[str, np.ndarray]:
        with self._lock:
            ids = np.fromiter(self._value_of.keys(), dtype=np.int64, count=len(self._value_of))
            return {"ids": ids, **strings_to_arrays(list(self._value_of.values()))}

    def __len__(self) -> int:
        return len(self._value_of)


class ExactSignalIndex:
    """Signals that match only when equal (video MD5, URLs...): a dict from value to row ids."""

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


def strings_to_arrays(values: Sequence[str]) -> dict[str, np.ndarray]:
    """Strings as one UTF-8 byte array and where each ends: long values (a video's frame hashes)
    cost their bytes, not the longest one's width for every value."""
    encoded = [v.encode() for v in values]
    ends = np.cumsum([len(b) for b in encoded], dtype=np.int64) if encoded else np.zeros(0, dtype=np.int64)
    return {"text": np.frombuffer(b"".join(encoded), dtype=np.uint8), "ends": ends}


def strings_from_arrays(text: np.ndarray, ends: np.ndarray) -> list[str]:
    data = text.tobytes()
    starts = [0] + ends[:-1].tolist()
    return [data[a:b].decode() for a, b in zip(starts, ends.tolist())]


class ThreatExchangeIndex(StoredValues):
    """Any other signal type: python-threatexchange's own index for it (`get_index_cls`), whose
    matches are the type's own decision (distance 0: per-bank distances do not apply).

    Its indices cannot remove entries: a removal marks the index stale, and the next search
    rebuilds it from the values kept here.
    """

    def __init__(self, tx: Any, exported: dict[str, np.ndarray] | None = None) -> None:
        self._tx = tx
        self._index: Any = None
        super().__init__(exported)

    def add(self, ids: Sequence[int], values: Sequence[str]) -> None:
        with self._lock:
            stale = any(i in self._value_of for i in ids)
            super().add(ids, values)
            if stale:
                self._index = None
            elif self._index is not None:
                self._index.add_all(zip(values, ids))

    def remove(self, ids: Sequence[int]) -> None:
        with self._lock:
            if any(i in self._value_of for i in ids):
                super().remove(ids)
                self._index = None

    def search(self, values: Sequence[str], max_distance: int) -> Hits:
        with self._lock:
            if self._index is None:
                self._index = self._tx.get_index_cls().build((v, row) for row, v in self._value_of.items())
            return [sorted({(match.metadata, 0) for match in self._query(value)}) for value in values]

    def _query(self, value: str) -> list[Any]:
        try:
            return list(self._index.query(value))
        except Exception as exc:  # an extension's index may reject a query: it matches nothing
            log.warning("signal index query failed", extra={"signal_type": self._tx.get_name(), "reason": str(exc)})
            return []
