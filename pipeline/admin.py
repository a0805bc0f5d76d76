"""Topic administration: create every pipeline topic with its partitions and cleanup policy."""

from __future__ import annotations

import logging
import time

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from pipeline import kafka_clients
from pipeline.config import Settings
from pipeline.topics import ALL_TOPICS, partitions_for

log = logging.getLogger(__name__)


def ensure_topics(bootstrap: str, settings: Settings, timeout_s: float = 30.0) -> list[str]:
    """Create the topics that do not exist yet (existing ones are left alone); returns those created."""
    admin = kafka_clients.admin(settings, bootstrap)
    existing = admin.list_topics(timeout=timeout_s).topics
    wanted = [
        NewTopic(spec.name(settings), partitions_for(spec, settings), settings.topic_replication,
                 config=spec.config(settings))
        for spec in ALL_TOPICS
        if spec.name(settings) not in existing
    ]
    if not wanted:
        return []
    created = []
    for name, future in admin.create_topics(wanted, request_timeout=timeout_s).items():
        try:
            future.result(timeout_s)
            created.append(name)
        except KafkaException as exc:
            if exc.args[0].name() != "TOPIC_ALREADY_EXISTS":  # another process won the race
                raise
    if created:
        _wait_for_leaders(admin, created, timeout_s)
        log.info("topics created", extra={"topics": created})
    return created


def _wait_for_leaders(admin: AdminClient, topics: list[str], timeout_s: float) -> None:
    """New topics answer reads only once each partition has a leader."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        meta = admin.list_topics(timeout=timeout_s).topics
        if all(
            t in meta and meta[t].error is None and meta[t].partitions
            and all(p.leader >= 0 and p.error is None for p in meta[t].partitions.values())
            for t in topics
        ):
            return
        time.sleep(0.2)
    raise TimeoutError(f"topics without a leader after {timeout_s}s: {', '.join(topics)}")
