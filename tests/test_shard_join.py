"""The merger's join of shard partials: one table read per upload per batch, no table writes for
uploads a batch completes, duplicates (a shard re-sending after a restart) dropped, waiting
partials surviving into later batches."""

from __future__ import annotations

from pipeline.shard_join import ShardJoin


class CountingTable(dict):
    """A dict that counts reads and writes, as a Faust table would cost RocksDB reads and
    changelog records."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = self.writes = self.deletes = 0

    def get(self, key, default=None):
        self.reads += 1
        return super().get(key, default)

    def __setitem__(self, key, value) -> None:
        self.writes += 1
        super().__setitem__(key, value)

    def __delitem__(self, key) -> None:
        self.deletes += 1
        super().__delitem__(key)


def partial(shard: int, offset: int, partition: int = 0, shards: int = 2, candidates=()) -> dict:
    return {"shard": shard, "shards": shards, "hashes_partition": partition, "hashes_offset": offset,
            "upload": {"content_id": f"c{partition}-{offset}"}, "skipped": {}, "candidates": list(candidates)}


def new_join(shards: int = 2) -> tuple[ShardJoin, CountingTable, CountingTable]:
    pending, taken = CountingTable(), CountingTable()
    return ShardJoin(shards, pending, taken), pending, taken


def test_a_batch_that_completes_its_uploads_writes_no_pending_entry():
    join, pending, taken = new_join()
    batch = [partial(0, o) for o in range(5)] + [partial(1, o) for o in range(5)]
    out = join.join(batch)
    assert [i for i, _ in out.complete] == [5, 6, 7, 8, 9]
    assert all([p["shard"] for p in parts] == [0, 1] for _, parts in out.complete)
    assert pending.writes == 0 and pending.deletes == 0 and not pending
    assert pending.reads == 5  # one per upload, not one per partial
    assert taken == {"0:0": 4, "0:1": 4} and taken.writes == 2  # one per (partition, shard)


def test_partials_wait_across_batches_and_complete_later():
    join, pending, _ = new_join(shards=3)
    first = join.join([partial(0, 7, shards=3), partial(2, 7, shards=3)])
    assert not first.complete and set(pending) == {"0:7"}
    second = join.join([partial(1, 7, shards=3, candidates=[{"key": "k"}])])
    [(i, parts)] = second.complete
    assert i == 0 and [p["shard"] for p in parts] == [0, 1, 2] and parts[1]["candidates"] == [{"key": "k"}]
    assert not pending


def test_a_resent_partial_is_dropped_once_taken():
    join, pending, _ = new_join()
    join.join([partial(0, 1), partial(1, 1), partial(0, 2)])
    out = join.join([partial(0, 1), partial(0, 2), partial(1, 2), partial(1, 2)])
    assert out.duplicates == [0, 1, 3]
    assert [parts[0]["hashes_offset"] for _, parts in out.complete] == [2]
    assert not pending


def test_partitions_are_joined_apart_and_other_shard_counts_are_refused():
    join, pending, _ = new_join()
    out = join.join([partial(0, 3, partition=0), partial(1, 3, partition=1), partial(0, 3, shards=3),
                     partial(2, 3)])
    assert out.mismatched == [2, 3] and not out.complete
    assert set(pending) == {"0:3", "1:3"}
