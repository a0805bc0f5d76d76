"""Count-min sketch cells in a Faust table (RocksDB, with a changelog topic for recovery).

Faust keeps one RocksDB per partition and writes a cell to the changelog partition of the event
being processed, so each partition of hma.flood-hits has its own sketch of the signals keyed to it:
every hit of a signal lands in that signal's partition, which is what makes its count whole.
Calls must come from inside the agent's stream iteration.
"""

from __future__ import annotations

import faust


def _cell_key(cell: tuple[int, int, int]) -> str:
    bucket, row, col = cell
    return f"{bucket}:{row}:{col}"


class FaustTableCellStore:
    def __init__(self, table: faust.Table) -> None:
        self.table = table

    def get(self, cell: tuple[int, int, int]) -> int:
        return self.table.get(_cell_key(cell), 0)

    def add(self, cell: tuple[int, int, int], amount: int) -> None:
        key = _cell_key(cell)
        self.table[key] = self.table.get(key, 0) + amount

    def drop_buckets_before(self, bucket: int) -> int:
        old = [key for key in list(self.table.keys()) if int(key.split(":", 1)[0]) < bucket]
        for key in old:
            del self.table[key]
        return len(old)
