"""Shared fixtures.

Kafka: the test session's broker is started once on free loopback ports and stopped at the end,
also when tests fail. With KAFKA_BOOTSTRAP_SERVERS set, tests use that cluster and start nothing.
In a parallel run (`make test`: pytest-xdist, `-n 2 --dist loadfile`) each process is a session
of its own, with its own broker; a module runs whole in one process, so its module-scoped
pipelines are started once.

Media: a test taking `media` runs once on the media shipped in tests/media and once on the larger
reference set named by HMAS_REFERENCE_MEDIA, the second skipped (saying why) when that is absent.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pipeline.config import Settings
from tests.pipeline_env import MediaSet, media_set


@dataclass(frozen=True)
class ExistingCluster:
    """A cluster named by KAFKA_BOOTSTRAP_SERVERS: used as it is, never started or stopped."""

    bootstrap: str


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The modules marked slow first, in their order, then the rest in theirs: `make test` runs the
    suite in two processes, a module at a time each, and a long module taken last would leave one
    process running it alone at the end."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[object]:
    """The session's Kafka: a LocalBroker (in <tmp>/kafka, as `hmas kafka` lays it out) or an ExistingCluster."""
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        yield ExistingCluster(os.environ["KAFKA_BOOTSTRAP_SERVERS"])
        return
    from ops.kafka.broker import LocalBroker, free_ports

    with tempfile.TemporaryDirectory(prefix="hmas-test-kafka-") as tmp:
        port, controller_port = free_ports(2)
        broker = LocalBroker(Path(tmp) / "kafka", port=port, controller_port=controller_port)
        try:
            broker.start()
            yield broker
        finally:
            broker.stop()


@pytest.fixture
def settings(kafka_broker, tmp_path) -> Settings:
    """Settings on the session's Kafka with a topic prefix of this test's own, its topics created."""
    from pipeline.admin import ensure_topics
    from tests.pipeline_env import pipeline_env, settings_from

    test_settings = settings_from(pipeline_env(kafka_broker.bootstrap, tmp_path / "state"))
    ensure_topics(kafka_broker.bootstrap, test_settings)
    return test_settings


@pytest.fixture(params=["shipped", "reference"])
def media(request) -> MediaSet:
    """Each media set in turn: tests/media always, the set HMAS_REFERENCE_MEDIA names when it is there."""
    return media_set(request.param)
