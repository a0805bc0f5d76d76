"""The PDQ plug-in: photos hashed as python-threatexchange hashes them, searched exactly in
`pipeline.index` by Hamming distance, bounded per bank, skipped below the quality floor.

This is the one place that names the PDQ signal type; everything else asks the registry.
"""

from __future__ import annotations

import re
from typing import Any, Sequence

import numpy as np
from threatexchange.signal_type.pdq.pdq_utils import PDQ_CONFIDENT_MATCH_THRESHOLD
from threatexchange.signal_type.pdq.signal import PdqSignal

from pipeline.config import Settings
from pipeline.hashing.base import SignalValue
from pipeline.index.codes import CODE_BYTES, code_to_hex, codes_from_hex
from pipeline.signal_types import Comparison, SignalPlugin
from pipeline.state.signal_index import Hits

PDQ_HEX = re.compile(r"[0-9a-fA-F]{64}")


def hamming(a: str, b: str) -> int:
    return (int(a, 16) ^ int(b, 16)).bit_count()


class PdqSignalIndex:
    """PDQ codes in `pipeline.index`: exact Hamming-distance search."""

    def __init__(self, exported: dict[str, np.ndarray] | None = None) -> None:
        """`exported`: an `export` of one, restored as it was (a snapshot's: no table is rebuilt).
        The index module is imported here: a process that only validates PDQ signals (the
        exchange fetcher) does not load numba."""
        from pipeline.index.mih import MihPdqIndex

        self._index = MihPdqIndex.restore(exported) if exported else MihPdqIndex()

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
        return self._index.export()

    def __len__(self) -> int:
        return len(self._index)


class PdqCodeValues:
    """PDQ codes by row, 32 bytes each, without an index: the values a main worker in shard mode
    keeps (a tenth of an index's memory per signal). Exports its codes and their rows."""

    def __init__(self, exported: dict[str, np.ndarray] | None = None) -> None:
        self._codes = np.zeros((0, CODE_BYTES), dtype=np.uint8)
        self._held = np.zeros(0, dtype=bool)
        self._count = 0
        if exported:
            self._put(exported["codes"], exported["ids"])

    def add(self, ids: Sequence[int], values: Sequence[str]) -> None:
        self._put(codes_from_hex(values), ids)

    def _put(self, codes: np.ndarray, ids: Sequence[int] | np.ndarray) -> None:
        rows = np.asarray(ids, dtype=np.int64)
        if not len(rows):
            return
        top = int(rows.max()) + 1
        if top > len(self._held):
            size = max(top, len(self._held) * 3 // 2, 1024)
            self._codes = np.resize(self._codes, (size, CODE_BYTES))
            self._held = np.concatenate([self._held, np.zeros(size - len(self._held), dtype=bool)])
        self._count += int((~self._held[rows]).sum())
        self._codes[rows] = codes
        self._held[rows] = True

    def remove(self, ids: Sequence[int]) -> None:
        rows = np.asarray(ids, dtype=np.int64)
        rows = rows[rows < len(self._held)]
        self._count -= int(self._held[rows].sum())
        self._held[rows] = False

    def values(self, ids: Sequence[int]) -> list[str]:
        return [code_to_hex(code) for code in self._codes[np.asarray(ids, dtype=np.int64)]]

    def export(self) -> dict[str, np.ndarray]:
        ids = np.flatnonzero(self._held).astype(np.int64)
        return {"codes": self._codes[ids], "ids": ids}

    def __len__(self) -> int:
        return self._count


class PdqPlugin(SignalPlugin):
    default_distance = PDQ_CONFIDENT_MATCH_THRESHOLD
    max_distance = 256
    hamming = True
    description = "64 hex characters"

    _hasher: Any = None  # made on first use: it reads the settings

    @staticmethod
    def served() -> type[PdqSignal]:
        return PdqSignal

    def validate(self, value: object) -> str:
        if not isinstance(value, str) or not PDQ_HEX.fullmatch(value):
            raise self.invalid(value)
        return value.lower()

    def min_quality(self, settings: Settings) -> int | None:
        return settings.pdq_min_quality

    def new_index(self, exported: dict[str, Any] | None = None) -> PdqSignalIndex:
        return PdqSignalIndex(exported)

    def new_value_store(self, exported: dict[str, Any] | None = None) -> PdqCodeValues:
        return PdqCodeValues(exported)

    def hash_content(self, content_type: str, data: bytes) -> SignalValue | None:
        if content_type not in self.content_types:
            return None
        if self._hasher is None:
            from pipeline.hashing.photo import PdqHasher

            self._hasher = PdqHasher()
        return self._hasher.hash_bytes(data)

    def compare(self, a: str, b: str) -> Comparison:
        distance = hamming(a, b)
        return Comparison(distance <= self.default_distance, distance)

    def recent_codes(self, value: str) -> list[str]:
        return [value]


PLUGIN = PdqPlugin
