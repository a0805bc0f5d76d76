"""The worker's Faust tables and topics as the agents declare them."""

from __future__ import annotations

from typing import Any

import faust

from pipeline.transport import exactly_once_of

# RocksDB options of every table partition. Faust's defaults (a 2 GB block cache and three 64 MB
# memtables per partition) let a worker's memory grow for hours towards gigabytes; these tables
# hold little (sketch chunks, pending shard partials, tallies).
ROCKSDB_OPTIONS = {"write_buffer_size": 8 << 20, "max_write_buffer_number": 2, "block_cache_size": 16 << 20}


class Table(faust.Table):
    """Faust's table; in exactly-once mode a changelog record's offset is saved as the store's
    persisted offset only when its transaction commits (Faust's own exactly-once path for this
    keys it by the wrong partitions)."""

    def _on_changelog_sent(self, fut: Any) -> None:
        transactions = exactly_once_of(self.app)
        if transactions is None:
            return super()._on_changelog_sent(fut)
        sent = fut.result()
        transactions.persist_on_commit(self.data, sent.topic_partition, sent.offset)


def state_table(app: faust.App, name: str, **kwargs: Any) -> faust.Table:
    """A Faust table on RocksDB with bounded memory (ROCKSDB_OPTIONS); in exactly-once mode in
    memory, restored from its changelog's committed records at every start: a RocksDB store would
    keep the writes of a transaction that a crash aborted, and its table would count them while
    their input is processed again."""
    if exactly_once_of(app) is not None:
        kwargs["store"] = "memory://"
    return app.tables.add(Table(app, name=name, beacon=app.tables.beacon, options=ROCKSDB_OPTIONS, **kwargs))


def raw_topic(app: faust.App, *names: str) -> faust.TopicT:
    """Topics carry bytes; the codecs decode them, so bad records become dead letters, not crashes."""
    return app.topic(*names, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
