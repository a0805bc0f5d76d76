"""Joining the shards' partial answers of each hashed upload, a batch of partials at a time.

The merger keeps the partials of uploads that some shard has not answered yet in a table
(RocksDB + changelog) and, per (hashes partition, shard), the highest offset it took, so that a
shard worker re-sending partials after a restart is not joined twice. Every table read costs a
RocksDB lookup and every write a changelog record, so a batch reads each upload's entry once and
writes once what is still waiting at its end: the partials of an upload that the batch completes
(usually all of them, since every shard answers within milliseconds) never touch the table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, MutableMapping, Sequence

Partial = dict[str, Any]  # a hma.ShardHits record


@dataclass
class JoinedBatch:
    """What one batch of partials gave: uploads every shard has answered (the index in the batch
    of the partial that completed it, and the S partials, ordered by shard), partials made under
    another shard count (their index in the batch), and duplicates dropped."""

    complete: list[tuple[int, list[Partial]]] = field(default_factory=list)
    mismatched: list[int] = field(default_factory=list)
    duplicates: list[int] = field(default_factory=list)


def source_of(part: Partial) -> str:
    """The hashed upload a partial answers: its hma.hashes partition and offset."""
    return f"{part['hashes_partition']}:{part['hashes_offset']}"


class ShardJoin:
    """Joins partials of `shards` shards, waiting ones in `pending` (source -> {shard: partial}),
    the highest offset taken per (partition, shard) in `taken` (missing: none taken)."""

    def __init__(self, shards: int, pending: MutableMapping[str, dict[str, Partial]],
                 taken: MutableMapping[str, int]) -> None:
        self.shards = shards
        self.pending = pending
        self.taken = taken

    def join(self, batch: Sequence[Partial]) -> JoinedBatch:
        out = JoinedBatch()
        taken: dict[str, int] = {}  # mark -> highest offset taken, as of this batch
        taken_before: dict[str, int] = {}
        waiting: dict[str, dict[str, Partial]] = {}  # source -> its partials so far
        stored: set[str] = set()  # sources that have an entry in the table
        for i, part in enumerate(batch):
            if part["shards"] != self.shards or not 0 <= part["shard"] < self.shards:
                out.mismatched.append(i)
                continue
            mark = f"{part['hashes_partition']}:{part['shard']}"
            if mark not in taken:
                taken[mark] = taken_before[mark] = self._taken(mark)
            if part["hashes_offset"] <= taken[mark]:
                out.duplicates.append(i)
                continue
            taken[mark] = part["hashes_offset"]
            source = source_of(part)
            if source not in waiting:
                earlier = self.pending.get(source)
                if earlier:
                    stored.add(source)
                waiting[source] = dict(earlier or {})
            parts = waiting[source]
            parts[str(part["shard"])] = part
            if len(parts) == self.shards:
                out.complete.append((i, [parts[str(k)] for k in range(self.shards)]))
                del waiting[source]
                if source in stored:
                    del self.pending[source]
        for source, parts in waiting.items():
            self.pending[source] = parts
        for mark, offset in taken.items():
            if offset != taken_before[mark]:
                self.taken[mark] = offset
        return out

    def _taken(self, mark: str) -> int:
        offset = self.taken.get(mark)
        return -1 if offset is None else offset
