"""The worker's Faust tables and topics as the agents declare them."""

from __future__ import annotations

import contextlib
import weakref
from typing import Any, Iterator

import faust
from faust import streams as faust_streams

# RocksDB options of every table partition. Faust's defaults (a 2 GB block cache and three 64 MB
# memtables per partition) let a worker's memory grow for hours towards gigabytes; these tables
# hold little (sketch chunks, pending shard partials, tallies).
ROCKSDB_OPTIONS = {"write_buffer_size": 8 << 20, "max_write_buffer_number": 2, "block_cache_size": 16 << 20}


def state_table(app: faust.App, name: str, **kwargs: Any) -> faust.Table:
    """A Faust table on RocksDB with bounded memory (ROCKSDB_OPTIONS)."""
    return app.Table(name, options=ROCKSDB_OPTIONS, **kwargs)


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
