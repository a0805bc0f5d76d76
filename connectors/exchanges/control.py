"""Blocking exchange operations for command-line tools and the demo: configure an exchange, ask
the fetcher for a fetch, wait for it to finish, put dead-lettered writes back on the outbox
(through the topics, like every other tool)."""

from __future__ import annotations

import base64
import time
from typing import Any, Sequence

from connectors.exchanges.config import changed, creation_writes
from pipeline import topics as T
from pipeline.client import Client
from pipeline.clock import now_ms
from pipeline.config import Settings
from pipeline.state.log_reader import read_latest, read_to_end


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


def dead_writes(settings: Settings, exchange: str | None = None) -> list[dict[str, Any]]:
    """The outbox records the exchange writer gave up on (of one exchange, or all), oldest first,
    one per idempotency key: what `hmas exchange redeliver` puts back on the outbox. A write
    delivered since is skipped by the writer (its key is on hma.exchange-delivered)."""
    from connectors.exchanges.writer import STAGE

    outbox = T.EXCHANGE_OUTBOX.name(settings)
    found: dict[str, dict[str, Any]] = {}
    for _, letter in read_to_end(settings, T.DEAD_LETTERS):
        if not letter or letter["stage"] != STAGE or letter["topic"] != outbox or not letter["original_value_b64"]:
            continue
        try:
            write = T.EXCHANGE_OUTBOX.codec.decode(base64.b64decode(letter["original_value_b64"]))
        except ValueError:
            continue
        if exchange is None or write["exchange"] == exchange:
            found.setdefault(write["idempotency_key"], write)
    return list(found.values())
