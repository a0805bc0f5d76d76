"""The worker's delivery mode as its app is built (no broker needed): exactly once, its tables are
in memory and its producer's transactional id is its static member id; at least once, its tables
are on RocksDB and the flood agent keeps the ids of the hits it counted."""

from __future__ import annotations

import os

import pytest

from pipeline.app import create_app
from pipeline.config import load_settings
from pipeline.services.delivery import AT_LEAST_ONCE, EXACTLY_ONCE, ExactlyOnce


def worker_app(tmp_path, guarantee: str):
    settings = load_settings(env={"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1", "HMAS_DATA_DIR": str(tmp_path),
                                  "HMAS_PROCESSING_GUARANTEE": guarantee}, config_file=os.devnull)
    return create_app(settings)


def test_exactly_once_keeps_the_tables_in_memory(tmp_path):
    """A RocksDB table would keep the writes of a transaction a SIGKILL aborted, and the restarted
    worker would count those hits again when it reads them again."""
    app, services = worker_app(tmp_path, EXACTLY_ONCE)
    stores = {table.name: type(table.data).__module__ for table in app.tables.values()}
    assert stores == {"flood-cells": "faust.stores.memory", "flood-seen": "faust.stores.memory"}  # the ids unused
    assert isinstance(services.delivery, ExactlyOnce)
    assert services.delivery.transactional_id == app.conf.consumer_group_instance_id
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
        changelogs = {table.changelog_topic.get_topic_name() for table in app.tables.values()}
        return changelogs | {topic for agent in app.agents.values() for topic in agent.channel.topics}

    assert read_topics(EXACTLY_ONCE) == read_topics(AT_LEAST_ONCE)


def test_an_unknown_guarantee_is_refused(tmp_path):
    with pytest.raises(ValueError, match="processing_guarantee"):
        worker_app(tmp_path, "at_most_once")
