"""The event ids a partition's agent has already taken, in a Faust table (RocksDB and changelog),
so that input written again after a crash (same event id, see pipeline/event_ids.py) is taken once.

A key is `partition:event_id`, its value the time bucket it was first seen in (int64 bytes); ids
are kept for a horizon that covers a replay (a crashed worker's uncommitted input, written again
when it or another worker takes the partition over) and dropped after it. Like the count-min
cells, writes go to the partition of the event being processed (`in_partition_of`).
"""

from __future__ import annotations

import faust


class SeenEvents:
    def __init__(self, table: faust.Table) -> None:
        self.table = table
        self.partition = 0  # set with the cells' partition by the agent

    def _key(self, event_id: str) -> str:
        return f"{self.partition}:{event_id}"

    def first_time(self, event_id: str | None, bucket: int) -> bool:
        """Whether this id is new (and now remembered); input without an id always counts as new."""
        if not event_id:
            return True
        key = self._key(event_id)
        if self.table.get(key) is not None:
            return False
        self.table[key] = bucket.to_bytes(8, "little", signed=True)
        return True

    def drop_before(self, bucket: int) -> int:
        """Forget this partition's ids first seen before `bucket`; how many were dropped."""
        prefix = f"{self.partition}:"
        old = [key for key, seen in list(self.table.items())
               if key.startswith(prefix) and int.from_bytes(seen, "little", signed=True) < bucket]
        for key in old:
            del self.table[key]
        return len(old)
