"""Blocking exchange operations for command-line tools and the demo: configure an exchange, ask
the fetcher for a fetch, wait for it to finish (through the topics, like every other tool)."""

from __future__ import annotations

import time
from typing import Any, Sequence

from connectors.exchanges.config import changed, creation_writes
from pipeline import topics as T
from pipeline.client import Client
from pipeline.clock import now_ms
from pipeline.config import Settings
from pipeline.state.log_reader import read_latest


def produce(settings: Settings, writes: Sequence[tuple[T.TopicSpec, str, dict[str, Any] | None]]) -> None:
    client = Client(settings)
    for spec, key, record in writes:
        client.produce(spec, key, record)
    client.flush()


def configure(settings: Settings, record: dict[str, Any]) -> None:
    """An hma.exchanges record and, unless it exists, its bank."""
    produce(settings, creation_writes(record, record["name"] in read_latest(settings, T.BANKS)))


def request_fetch(settings: Settings, record: dict[str, Any]) -> int:
    """Ask the fetcher to fetch this exchange now; the request's time (unix ms)."""
    requested = now_ms()
    produce(settings, [(T.EXCHANGES, record["name"], changed(record, fetch_requested_at=requested))])
    return requested


def wait_for_fetch(settings: Settings, name: str, requested_ms: int, timeout_s: float) -> dict[str, Any] | None:
    """The status of the first fetch that finished after the request, or None if none did in time."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = read_latest(settings, T.EXCHANGE_FETCH).get(name)
        if status and status["updated_at"] >= requested_ms and status["running_fetch_start_ts"] is None:
            return status
        time.sleep(0.5)
    return None
