"""The exchange topics as one process sees them: configs, fetch status, which APIs have stored
credentials (the sealed values stay sealed), write-back status, kept current next to a bank view."""

from __future__ import annotations

from typing import Any

from pipeline import topics as T
from pipeline.state.log_reader import Change


class ExchangeView:
    def __init__(self) -> None:
        self.configs: dict[str, dict[str, Any]] = {}  # exchange name -> hma.exchanges value
        self.fetches: dict[str, dict[str, Any]] = {}  # exchange name -> hma.exchange-fetch value
        self.credentials: dict[str, dict[str, Any]] = {}  # API name -> sealed hma.exchange-credentials value
        self.writes: dict[str, dict[str, Any]] = {}  # exchange name -> hma.exchange-write-status value

    @property
    def listeners(self) -> dict[T.TopicSpec, Any]:
        return {spec: self.apply for spec in T.EXCHANGE_TOPICS}

    def apply(self, spec: T.TopicSpec, changes: list[Change]) -> None:
        held = {T.EXCHANGES: self.configs, T.EXCHANGE_FETCH: self.fetches, T.EXCHANGE_CREDENTIALS: self.credentials,
                T.EXCHANGE_WRITE_STATUS: self.writes}[spec]
        for key, record in changes:
            if record is None:
                held.pop(key, None)
            else:
                held[key] = record
