"""Count-min sketch cells in a Faust table (RocksDB, with a changelog topic for recovery).

Faust keeps one RocksDB per partition and writes a key to the changelog partition of the event
being processed, so each partition of hma.flood-hits has its own sketch of the signals keyed to
it: every hit of a signal lands in that signal's partition, which is what makes its count whole.

Cells are kept in chunks of CHUNK columns, one table key per (partition, bucket, row, chunk), and
written back once per batch of hits of one partition: a burst of hits costs a few table writes
(and changelog records) instead of `depth` per hit. Keys carry the partition because Faust reads
a key from whichever partition's database holds it.
"""

from __future__ import annotations

import contextlib
import weakref
from typing import Iterator

import faust
from faust import streams as faust_streams

CHUNK = 512


class FaustTableCellStore:
    def __init__(self, table: faust.Table) -> None:
        self.table = table
        self.partition = 0  # the partition whose hits are being counted (see in_partition_of)
        self._chunks: dict[str, dict[str, int]] = {}  # read or written in this batch
        self._dirty: set[str] = set()

    def _chunk(self, cell: tuple[int, int, int]) -> tuple[dict[str, int], str]:
        bucket, row, col = cell
        key = f"{self.partition}:{bucket}:{row}:{col // CHUNK}"
        chunk = self._chunks.get(key)
        if chunk is None:
            chunk = self._chunks[key] = dict(self.table.get(key) or {})
        return chunk, str(col % CHUNK)

    def get(self, cell: tuple[int, int, int]) -> int:
        chunk, col = self._chunk(cell)
        return chunk.get(col, 0)

    def add(self, cell: tuple[int, int, int], amount: int) -> None:
        chunk, col = self._chunk(cell)
        chunk[col] = chunk.get(col, 0) + amount
        self._dirty.add(f"{self.partition}:{cell[0]}:{cell[1]}:{cell[2] // CHUNK}")

    def flush(self) -> None:
        """Write the chunks changed since the last flush; call inside `in_partition_of`."""
        for key in self._dirty:
            self.table[key] = self._chunks[key]
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
    token = faust_streams._current_event.set(weakref.ref(event))
    store.partition = event.message.partition
    try:
        yield
    finally:
        faust_streams._current_event.reset(token)
