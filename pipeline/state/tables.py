"""The worker's Faust tables and topics as the agents declare them."""

from __future__ import annotations

import contextlib
import weakref
from typing import Any, Iterator

import faust
from faust import streams as faust_streams

from pipeline.transport import exactly_once_of

# RocksDB options of every table partition. Faust's defaults (a 2 GB block cache and three 64 MB
# memtables per partition) let a worker's memory grow for hours towards gigabytes; these tables
# hold little (sketch chunks, pending shard partials, tallies).
ROCKSDB_OPTIONS = {"write_buffer_size": 8 << 20, "max_write_buffer_number": 2, "block_cache_size": 16 << 20}


MEMORY_STORE = "memory://"


class Table(faust.Table):
    """Faust's table on RocksDB; in exactly-once mode in memory, restored from its changelog's
    committed records at every start. A RocksDB store would keep the writes of a transaction that
    a crash aborted, and the restarted worker would count them again while it processes their
    input again (a flood count one over per replayed hit)."""

    def _new_store(self) -> Any:
        # Not Table(store="memory://"): Faust takes `store or app.conf.store`, and that URL is
        # falsy (yarl), so the table would silently stay on the app's RocksDB.
        if exactly_once_of(self.app) is not None:
            return self._new_store_by_url(MEMORY_STORE)
        return super()._new_store()

    def _on_changelog_sent(self, fut: Any) -> None:
        """At least once, the store records the changelog offset it holds (where recovery reads
        on from); a memory store holds none."""
        if exactly_once_of(self.app) is None:
            super()._on_changelog_sent(fut)


def state_table(app: faust.App, name: str, **kwargs: Any) -> faust.Table:
    """A Faust table with bounded memory (ROCKSDB_OPTIONS), in memory in exactly-once mode (`Table`)."""
    return app.tables.add(Table(app, name=name, beacon=app.tables.beacon, options=ROCKSDB_OPTIONS, **kwargs))


def raw_topic(app: faust.App, *names: str) -> faust.TopicT:
    """Topics carry bytes; the codecs decode them, so bad records become dead letters, not crashes."""
    return app.topic(*names, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")


@contextlib.contextmanager
def writes_to_partition_of(event: faust.EventT) -> Iterator[None]:
    """Table writes go to the changelog partition of `event`: Faust takes it from the current
    event, which a batch from `take_events` does not set. (Faust has no public setter; this is
    the one use of its context variable.)"""
    token = faust_streams._current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        faust_streams._current_event.reset(token)
