"""The worker's delivery mode as its app is built (no broker needed): exactly once, its tables are
in memory and its producer's transactional id is its worker id; at least once, its tables are on
RocksDB and the flood agent keeps the ids of the hits it counted. A worker's static member id
changes with the topics it reads, and only with them."""

from __future__ import annotations

import os

import pytest

from pipeline.app import create_app, subscribed_topics
from pipeline.config import load_settings
from pipeline.services.delivery import AT_LEAST_ONCE, EXACTLY_ONCE, ExactlyOnce


def worker_app(tmp_path, guarantee: str, **env: str):
    settings = load_settings(env={"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1", "HMAS_DATA_DIR": str(tmp_path),
                                  "HMAS_PROCESSING_GUARANTEE": guarantee, **env}, config_file=os.devnull)
    return create_app(settings)


def test_exactly_once_keeps_the_tables_in_memory(tmp_path):
    """A RocksDB table would keep the writes of a transaction a SIGKILL aborted, and the restarted
    worker would count those hits again when it reads them again."""
    app, services = worker_app(tmp_path, EXACTLY_ONCE)
    stores = {table.name: type(table.data).__module__ for table in app.tables.values()}
    assert stores == {"flood-cells": "faust.stores.memory", "flood-seen": "faust.stores.memory"}  # the ids unused
    assert isinstance(services.delivery, ExactlyOnce)
    assert app.conf.consumer_group_instance_id.startswith(services.delivery.transactional_id + "-")
    assert app.in_transaction and app.consumer.in_transaction  # the consumer reads committed records


def test_at_least_once_keeps_the_tables_on_rocksdb(tmp_path):
    app, services = worker_app(tmp_path, AT_LEAST_ONCE)
    stores = {table.name: type(table.data).__module__ for table in app.tables.values()}
    assert stores == {"flood-cells": "faust.stores.rocksdb", "flood-seen": "faust.stores.rocksdb"}
    assert services.delivery.guarantee == AT_LEAST_ONCE and not app.in_transaction


def test_both_guarantees_read_the_same_topics(tmp_path):
    """A worker restarted in the other guarantee under its static id is handed its old assignment;
    a topic it no longer reads there would stop its group coordinator, so the topics are the same."""
    def read_topics(guarantee: str) -> set[str]:
        app, _ = worker_app(tmp_path / guarantee, guarantee)
        return subscribed_topics(app)

    assert read_topics(EXACTLY_ONCE) == read_topics(AT_LEAST_ONCE)


def test_the_static_member_id_follows_the_topics_read(tmp_path):
    """The same worker (same data folder, so the same kept worker id) restarted with other topics, as
    after an upgrade that adds or removes an agent or table (here: the matcher replaced by the shard
    merger), joins as another static member; restarted with the same topics, in either guarantee,
    it comes back as itself. Its transactional id, the worker id, stays, so fencing still works."""
    one, one_services = worker_app(tmp_path, EXACTLY_ONCE)
    again, _ = worker_app(tmp_path, AT_LEAST_ONCE)
    upgraded, upgraded_services = worker_app(tmp_path, EXACTLY_ONCE, HMAS_INDEX_SHARDS="2")
    assert subscribed_topics(one) != subscribed_topics(upgraded)
    assert again.conf.consumer_group_instance_id == one.conf.consumer_group_instance_id
    assert upgraded.conf.consumer_group_instance_id != one.conf.consumer_group_instance_id
    assert upgraded_services.delivery.transactional_id == one_services.delivery.transactional_id


def test_an_unknown_guarantee_is_refused(tmp_path):
    with pytest.raises(ValueError, match="processing_guarantee"):
        worker_app(tmp_path, "at_most_once")
