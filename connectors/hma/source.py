"""What an upstream HMA deployment holds, as `hmas migrate from-hma` reads it: typed rows, and the
source that reads them from its PostgreSQL database (upstream_schema.sql names the tables).

Content is read in content-id order, in batches, after a given id: a migration that stopped
continues where its checkpoint says (connectors/hma/migration.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Iterator, Protocol
from urllib.parse import urlsplit, urlunsplit

# Columns every upstream version has; the others (note, metadata, credentials) came later.
REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = {
    "bank": ("id", "name", "enabled_ratio", "import_from_exchange_id"),
    "bank_content": ("id", "bank_id", "imported_from_id", "disable_until_ts", "original_content_uri"),
    "content_signal": ("content_id", "signal_type", "signal_val", "create_time"),
    "exchange": ("id", "name", "api_cls", "fetching_enabled", "typed_config"),
    "exchange_data": ("id", "collab_id", "fetch_id"),
    "exchange_fetch_status": ("collab_id", "running_fetch_start_ts", "last_fetch_succeeded",
                              "last_fetch_complete_ts", "is_up_to_date", "checkpoint_ts", "checkpoint_json"),
    "signal_type_override": ("name", "enabled_ratio"),
}
OPTIONAL_COLUMNS = {("bank_content", "note"), ("bank_content", "bank_content_metadata")}


class SourceError(Exception):
    """A source that cannot be read: the message says which and why (no password in it)."""


@dataclass(frozen=True)
class UpstreamBank:
    name: str
    enabled_ratio: float


@dataclass(frozen=True)
class UpstreamFetchStatus:
    checkpoint: dict[str, Any] | None  # the API's checkpoint dataclass as JSON; None: not fetched yet
    checkpoint_ts: int | None
    running_fetch_start_ts: int | None
    last_fetch_complete_ts: int | None
    last_fetch_succeeded: bool | None
    up_to_date: bool


@dataclass(frozen=True)
class UpstreamExchange:
    name: str  # also its bank's name
    api: str
    enabled: bool
    config: dict[str, Any]  # the collaboration config's fields
    status: UpstreamFetchStatus | None


@dataclass(frozen=True)
class UpstreamContent:
    id: int
    bank: str
    disable_until_ts: int
    signals: dict[str, str]  # signal type -> value
    created_s: int  # when upstream banked it (its first signal's create_time), unix s
    original_media_uri: str | None = None
    metadata: dict[str, Any] | None = None  # upstream's BankedContentMetadata fields
    note: str | None = None
    exchange: str | None = None  # the exchange it was fetched from, and that exchange's record key
    fetch_id: str | None = None


@dataclass
class UpstreamSettings:
    banks: list[UpstreamBank]
    exchanges: list[UpstreamExchange]
    signal_type_ratios: dict[str, float]
    unavailable: list[str] = field(default_factory=list)  # what this source cannot read, for the report


class UpstreamSource(Protocol):
    """A way into an HMA deployment: its database, or its HTTP API."""

    def describe(self) -> str:
        """The source, without secrets: what the report and the checkpoint name it by."""

    def settings(self) -> UpstreamSettings: ...

    def content_count(self, after_id: int) -> int:
        """How many content items have an id above `after_id` (for progress)."""

    def content(self, after_id: int, batch: int) -> Iterator[list[UpstreamContent]]:
        """Content items with an id above `after_id`, in id order, `batch` at a time."""

    def close(self) -> None: ...


def redacted_dsn(dsn: str) -> str:
    """A PostgreSQL URL without its password."""
    parts = urlsplit(dsn)
    if parts.password is None:
        return dsn
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


class PostgresSource:
    """An HMA deployment's PostgreSQL database, read with psycopg in one read-only transaction per query."""

    def __init__(self, dsn: str, connect_timeout_s: int = 10) -> None:
        try:
            import psycopg
        except ImportError:
            raise SourceError("reading an HMA database needs psycopg: pip install 'psycopg[binary]' "
                              "(or `pip install -e .[migrate]`)") from None
        self._dsn = dsn
        try:
            self.conn = psycopg.connect(dsn, connect_timeout=connect_timeout_s, autocommit=False)
        except psycopg.Error as exc:
            raise SourceError(f"cannot connect to {redacted_dsn(dsn)}: {_first_line(exc)}") from None
        self.conn.read_only = True
        self.columns = self._check_schema()

    def describe(self) -> str:
        return redacted_dsn(self._dsn)

    def _check_schema(self) -> set[tuple[str, str]]:
        """The (table, column) pairs present; SourceError naming what an HMA database would have."""
        rows = self._query(
            "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = current_schema()")
        present = {(t, c) for t, c in rows}
        missing = [f"{t}.{c}" for t, cols in REQUIRED_COLUMNS.items() for c in cols if (t, c) not in present]
        if missing:
            tables = sorted({m.split(".")[0] for m in missing})
            raise SourceError(f"{self.describe()} is not an HMA database: missing {', '.join(missing[:8])}"
                              f"{' ...' if len(missing) > 8 else ''} (tables {', '.join(tables)})")
        return present

    def _query(self, sql: str, params: tuple = ()) -> list[tuple]:
        import psycopg

        try:
            with self.conn.cursor() as cur:
                cur.execute(sql, params)
                rows = cur.fetchall()
            self.conn.commit()
            return rows
        except psycopg.Error as exc:
            self.conn.rollback()
            raise SourceError(f"reading {self.describe()}: {_first_line(exc)}") from None

    def settings(self) -> UpstreamSettings:
        banks = [UpstreamBank(name, float(ratio))
                 for name, ratio in self._query("SELECT name, enabled_ratio FROM bank ORDER BY name")]
        exchanges = []
        for row in self._query(
            "SELECT e.name, e.api_cls, e.fetching_enabled, e.typed_config, s.collab_id, s.checkpoint_json, "
            "s.checkpoint_ts, s.running_fetch_start_ts, s.last_fetch_complete_ts, s.last_fetch_succeeded, "
            "s.is_up_to_date FROM exchange e LEFT JOIN exchange_fetch_status s ON s.collab_id = e.id ORDER BY e.name"
        ):
            name, api, enabled, config, has_status, checkpoint, *times = row
            status = None if has_status is None else UpstreamFetchStatus(
                _json(checkpoint), times[0], times[1], times[2], times[3], bool(times[4]))
            exchanges.append(UpstreamExchange(name, api, bool(enabled), _json(config) or {}, status))
        ratios = {name: float(r) for name, r in self._query("SELECT name, enabled_ratio FROM signal_type_override")}
        unavailable = ["exchange credentials (store them again with `hmas exchange credentials`)"]
        return UpstreamSettings(banks, exchanges, ratios, unavailable)

    def content_count(self, after_id: int) -> int:
        [(count,)] = self._query("SELECT count(*) FROM bank_content WHERE id > %s", (after_id,))
        return int(count)

    def content(self, after_id: int, batch: int) -> Iterator[list[UpstreamContent]]:
        note = "c.note" if ("bank_content", "note") in self.columns else "NULL"
        meta = "c.bank_content_metadata" if ("bank_content", "bank_content_metadata") in self.columns else "NULL"
        sql = (
            f"SELECT c.id, b.name, c.disable_until_ts, c.original_content_uri, {meta}, {note}, e.name, d.fetch_id, "
            "s.signal_type, s.signal_val, floor(extract(epoch FROM s.create_time))::bigint "
            "FROM bank_content c JOIN bank b ON b.id = c.bank_id "
            "LEFT JOIN exchange_data d ON d.id = c.imported_from_id LEFT JOIN exchange e ON e.id = d.collab_id "
            "LEFT JOIN content_signal s ON s.content_id = c.id "
            "WHERE c.id > %s AND c.id <= %s ORDER BY c.id, s.signal_type"
        )
        while True:
            ids = self._query("SELECT id FROM bank_content WHERE id > %s ORDER BY id LIMIT %s", (after_id, batch))
            if not ids:
                return
            last = ids[-1][0]
            yield _grouped(self._query(sql, (after_id, last)))
            after_id = last

    def close(self) -> None:
        self.conn.close()


def _grouped(rows: list[tuple]) -> list[UpstreamContent]:
    """Joined rows (one per signal) as content items, in id order."""
    out: list[UpstreamContent] = []
    current: list[tuple] = []
    for row in rows + [None]:  # type: ignore[list-item]
        if current and (row is None or row[0] != current[0][0]):
            cid, bank, disable, uri, meta, note, exchange, fetch_id = current[0][:8]
            signals = {r[8]: r[9] for r in current if r[8] is not None}
            created = min((r[10] for r in current if r[10] is not None), default=0)
            out.append(UpstreamContent(cid, bank, int(disable), signals, int(created), uri, _json(meta), note,
                                       exchange, fetch_id))
            current = []
        if row is not None:
            current.append(row)
    return out


def _json(value: Any) -> Any:
    """A JSON column's value: psycopg decodes json columns; text from other drivers is parsed."""
    return json.loads(value) if isinstance(value, str) else value


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
