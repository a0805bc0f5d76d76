"""Count-min sketch cells in a Faust table (RocksDB, with a changelog topic for recovery).

Faust keeps one RocksDB per partition and writes a key to the changelog partition of the event
being processed, so each partition of hma.flood-hits has its own sketch of the signals keyed to
it: every hit of a signal lands in that signal's partition, which is what makes its count whole.

Cells are kept in chunks of CHUNK columns, one table key per (partition, bucket, row, chunk), and
written back once per batch of hits of one partition: a burst of hits costs a few table writes
(and changelog records) instead of `depth` per hit. A chunk's value is its counts as raw int64
bytes (512 B), so reading and writing one costs a copy, not a JSON document of numbers. Keys
carry the partition because Faust reads a key from whichever partition's database holds it.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import faust
import numpy as np

from pipeline.state.tables import writes_to_partition_of

CHUNK = 64  # columns per table value: a hit rewrites depth chunks of 512 bytes
Chunk = tuple[int, int, int]  # (bucket, row, column // CHUNK)


class FaustTableCellStore:
    def __init__(self, table: faust.Table) -> None:
        self.table = table  # raw values: a chunk's counts as CHUNK little-endian int64
        self.partition = 0  # the partition whose hits are being counted (see in_partition_of)
        self._chunks: dict[Chunk, np.ndarray] = {}  # read or written in this batch
        self._dirty: set[Chunk] = set()

    def _key(self, chunk: Chunk) -> str:
        return f"{self.partition}:{chunk[0]}:{chunk[1]}:{chunk[2]}"

    def _chunk(self, chunk: Chunk) -> np.ndarray:
        counts = self._chunks.get(chunk)
        if counts is None:
            raw = self.table.get(self._key(chunk))
            if raw is not None and len(raw) == CHUNK * 8:
                counts = np.frombuffer(raw, dtype="<i8").copy()
            else:  # absent (or of another layout): counting starts from zero
                counts = np.zeros(CHUNK, dtype="<i8")
            self._chunks[chunk] = counts
        return counts

    def get(self, cell: tuple[int, int, int]) -> int:
        bucket, row, col = cell
        return int(self._chunk((bucket, row, col // CHUNK))[col % CHUNK])

    def add(self, cell: tuple[int, int, int], amount: int) -> None:
        bucket, row, col = cell
        chunk = (bucket, row, col // CHUNK)
        self._chunk(chunk)[col % CHUNK] += amount
        self._dirty.add(chunk)

    def flush(self) -> None:
        """Write the chunks changed since the last flush; call inside `in_partition_of`."""
        for chunk in self._dirty:
            self.table[self._key(chunk)] = self._chunks[chunk].tobytes()
        self._dirty.clear()
        self._chunks.clear()

    def drop_buckets_before(self, bucket: int) -> int:
        self.flush()
        prefix = f"{self.partition}:"
        old = [
            key for key in list(self.table.keys())
            if key.startswith(prefix) and int(key.split(":", 2)[1]) < bucket
        ]
        for key in old:
            del self.table[key]
        return len(old)


@contextlib.contextmanager
def in_partition_of(event: faust.EventT, store: FaustTableCellStore) -> Iterator[None]:
    """Table writes of a batch go to the partition of `event` (Faust takes it from the current event)."""
    store.partition = event.message.partition
    with writes_to_partition_of(event):
        yield
