"""The test session's Kafka broker: started once on free loopback ports, stopped at the end.

With KAFKA_BOOTSTRAP_SERVERS set, tests use that cluster instead and start nothing.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass(frozen=True)
class ExistingCluster:
    bootstrap: str


@pytest.fixture(scope="session")
def kafka_broker():
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        yield ExistingCluster(os.environ["KAFKA_BOOTSTRAP_SERVERS"])
        return
    from ops.kafka.broker import LocalBroker, free_port

    with tempfile.TemporaryDirectory(prefix="hmas-test-kafka-") as tmp:
        broker = LocalBroker(Path(tmp), port=free_port(), controller_port=free_port())
        broker.start()
        try:
            yield broker
        finally:
            broker.stop()
