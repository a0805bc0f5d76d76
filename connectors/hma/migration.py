"""An upstream HMA deployment's banks, content, exchanges and signal type settings onto this
deployment's topics: `hmas migrate from-hma`.

Records are made by the project's own writers (pipeline.banks, connectors.exchanges.config,
pipeline.config_keys) and compared with what the compacted topics hold: only what differs is
written, so a second run writes nothing and reports 0 changes. Content keeps upstream's ids; the
content-id counter (pipeline/services/content_ids.py) is moved past the highest one. Content goes
first, in id order and in batches, each acknowledged before a local checkpoint records the last id
done: an interrupted run continues after it. Exchange fetch states and exchange configs go last,
so that the fetcher finds the migrated content and its checkpoint when it first sees an exchange.
"""

from __future__ import annotations

import ast
import hashlib
import json
import logging
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from connectors.exchanges.config import InvalidExchange, exchange_api, exchange_record
from connectors.exchanges.records import record_id
from connectors.hma.source import UpstreamContent, UpstreamExchange, UpstreamSettings, UpstreamSource
from pipeline import topics as T
from pipeline.banks import (
    EXCHANGE, EXCHANGE_RECORD, METADATA_KEYS, ORIGINAL_MEDIA_URI, InvalidBank, bank_record, bank_signal_record,
    content_metadata_fields, enabled_fields,
)
from pipeline.client import Client
from pipeline.config import Settings
from pipeline.config_keys import CONTENT_ID_BASE, setting_record, signal_type_ratio_key
from pipeline.progress import ProgressBar
from pipeline.services.content_ids import claim_content_ids, content_id_base, content_id_from_offset
from pipeline.signal_types import SIGNAL_TYPES, InvalidSignal
from pipeline.state.log_reader import end_offset, iter_to_end, read_latest

log = logging.getLogger(__name__)

Write = tuple[T.TopicSpec, str, dict[str, Any]]
STAMPS = frozenset({"created_at", "updated_at"})  # not compared: when a record was written, not what it says
FETCH_PROGRESS = frozenset({"updated_at", "records_last_fetch", "records_per_s", "last_error", "last_success_ts"})


@dataclass
class MigrationReport:
    """What a migration wrote (or, dry, would write), per topic, and what it could not carry over."""

    source: str
    dry_run: bool
    resumed_after: int = 0  # content id of the checkpoint it continued from (0: from the start)
    content_items: int = 0
    max_content_id: int = 0
    signals: int = 0
    written: Counter = field(default_factory=Counter)  # topic suffix -> records written
    unchanged: Counter = field(default_factory=Counter)
    skipped: Counter = field(default_factory=Counter)  # reason -> count
    conflicts: list[str] = field(default_factory=list)
    unavailable: list[str] = field(default_factory=list)

    @property
    def changes(self) -> int:
        return sum(self.written.values())

    def as_json(self) -> dict[str, Any]:
        return {
            "source": self.source, "dry_run": self.dry_run, "changes": self.changes,
            "written" if not self.dry_run else "would_write": dict(self.written),
            "unchanged": dict(self.unchanged), "content_items": self.content_items, "signals": self.signals,
            "resumed_after_content_id": self.resumed_after, "skipped": dict(self.skipped),
            "conflicts": self.conflicts[:20], "not_migrated": self.unavailable,
        }


def _digest(record: dict[str, Any], ignore: frozenset[str] = frozenset()) -> str:
    kept = {k: v for k, v in record.items() if k not in ignore}
    return hashlib.sha1(json.dumps(kept, sort_keys=True, default=str).encode()).hexdigest()


def _signal_digest(record: dict[str, Any]) -> int:
    """What a bank signal record says, as one number (in-process hash: compared within one run)."""
    return hash((record["bank_content_id"], record["value"], record["disable_until_ts"], record["added_at"],
                 tuple(sorted(record["metadata"].items()))))


class TargetState:
    """What this deployment's compacted topics hold now, as far as a migration compares with it.
    Bank signals are kept as digests (key -> content id, digest): a million of them fit."""

    def __init__(self, settings: Settings) -> None:
        self.banks = read_latest(settings, T.BANKS)
        self.exchanges = read_latest(settings, T.EXCHANGES)
        self.fetches = read_latest(settings, T.EXCHANGE_FETCH)
        self.config = read_latest(settings, T.CONFIG)
        self.signals: dict[str, tuple[int, int]] = {}
        self.content_bank: dict[int, str] = {}  # content id -> bank holding it
        self.exchange_records: dict[str, set[str]] = defaultdict(set)  # exchange -> record ids its bank holds
        for key, record in iter_to_end(settings, T.BANK_SIGNALS):
            if record is None:
                self.signals.pop(key, None)
                continue
            self.signals[key] = (record["bank_content_id"], _signal_digest(record))
            metadata = record["metadata"]
            if EXCHANGE in metadata and EXCHANGE_RECORD in metadata:
                self.exchange_records[metadata[EXCHANGE]].add(metadata[EXCHANGE_RECORD])
        for key, (content_id, _) in self.signals.items():
            self.content_bank[content_id] = key.split("/", 1)[0]
        base = content_id_base(self.config)
        self.next_content_id = content_id_from_offset(end_offset(settings, T.CONTENT_IDS), base)
        self.content_id_base = base

    def hold(self, key: str, record: dict[str, Any]) -> None:
        self.signals[key] = (record["bank_content_id"], _signal_digest(record))
        self.content_bank[record["bank_content_id"]] = record["bank"]


def fetch_id_as_record_id(fetch_id: str) -> str:
    """Upstream keys exchange data by str() of the record key; the fetcher here by record_id():
    a tuple key, which upstream shows as a Python tuple, becomes the fetcher's JSON list."""
    if fetch_id.startswith("("):
        try:
            key = ast.literal_eval(fetch_id)
        except (ValueError, SyntaxError):
            return fetch_id
        if isinstance(key, tuple):
            return record_id(key)
    return fetch_id


def content_signal_writes(item: UpstreamContent, report: MigrationReport) -> list[tuple[str, dict[str, Any]]]:
    """The hma.bank-signals records of one upstream content item: same id, disable time, note and metadata."""
    known = {k: v for k, v in (item.metadata or {}).items() if k in METADATA_KEYS}
    if item.metadata and len(known) < len(set(item.metadata) - {"collab"}):
        report.skipped["metadata fields upstream's API does not know"] += 1
    try:
        metadata = content_metadata_fields(known or None, item.note)
    except ValueError:
        report.skipped["unreadable note"] += 1
        metadata = content_metadata_fields(known or None, None)
    if item.original_media_uri:
        metadata[ORIGINAL_MEDIA_URI] = item.original_media_uri
    if item.exchange is not None and item.fetch_id is not None:
        metadata.update({EXCHANGE: item.exchange, EXCHANGE_RECORD: fetch_id_as_record_id(item.fetch_id)})
    out = []
    for kind, value in sorted(item.signals.items()):
        try:
            key, record = bank_signal_record(item.bank, item.id, kind, value, metadata)
        except InvalidSignal:
            report.skipped[f"signals of a type this deployment does not bank ({kind})" if kind not in SIGNAL_TYPES
                           else f"invalid {kind} values"] += 1
            continue
        except InvalidBank:
            report.skipped["content of banks with invalid names"] += 1
            return []
        record.update(disable_until_ts=item.disable_until_ts, added_at=item.created_s * 1000)
        out.append((key, record))
    if not item.signals:
        report.skipped["content without signals"] += 1
    return out


class Migration:
    """One run of `hmas migrate from-hma`: read the source, compare, write what differs."""

    def __init__(self, settings: Settings, source: UpstreamSource, dry_run: bool = False, batch: int = 10_000,
                 checkpoint_dir: Path | None = None) -> None:
        self.settings = settings
        self.source = source
        self.dry_run = dry_run
        self.batch = batch
        self.report = MigrationReport(source.describe(), dry_run)
        self.checkpoint = MigrationCheckpoint(checkpoint_dir or settings.data_dir / "migrate", settings, source.describe())
        self._client: Client | None = None

    @property
    def client(self) -> Client:
        if self._client is None:
            self._client = Client(self.settings)
        return self._client

    def run(self, stop_after_batches: int | None = None) -> MigrationReport:
        """The whole migration; `stop_after_batches` ends it early, as an interruption would."""
        target = TargetState(self.settings)
        upstream = self.source.settings()
        self.report.unavailable = list(upstream.unavailable)
        self._write(self._bank_writes(upstream, target) + self._signal_type_writes(upstream, target))
        after = 0 if self.dry_run else self.checkpoint.load()
        self.report.resumed_after = after
        finished = self._migrate_content(target, after, stop_after_batches)
        if not finished:
            return self.report
        self._advance_content_ids(target)
        self._write(self._exchange_writes(upstream, target))
        if not self.dry_run:
            self.checkpoint.clear()
        return self.report

    # -- settings ---------------------------------------------------------------------------------
    def _bank_writes(self, upstream: UpstreamSettings, target: TargetState) -> list[Write]:
        """Each bank with upstream's ratio; the controls of a bank that exists here stay as they are."""
        out: list[Write] = []
        for bank in upstream.banks:
            wanted = enabled_fields(bank.enabled_ratio)
            existing = target.banks.get(bank.name)
            if existing is not None and all(existing[k] == v for k, v in wanted.items()):
                self.report.unchanged[T.BANKS.suffix] += 1
                continue
            try:
                record = {**existing, **wanted, "renamed_from": None} if existing else bank_record(bank.name, **wanted)
            except InvalidBank:
                self.report.skipped["banks with names this deployment does not allow"] += 1
                continue
            out.append((T.BANKS, bank.name, T.BANKS.codec.conform(record)))
        return out

    def _signal_type_writes(self, upstream: UpstreamSettings, target: TargetState) -> list[Write]:
        out: list[Write] = []
        for kind, ratio in sorted(upstream.signal_type_ratios.items()):
            if kind not in SIGNAL_TYPES:
                self.report.skipped[f"settings of a signal type this deployment does not have ({kind})"] += 1
                continue
            key = signal_type_ratio_key(kind)
            if target.config.get(key, {}).get("number", 1.0) == float(ratio):  # unset: 1.0, as upstream
                self.report.unchanged[T.CONFIG.suffix] += 1
                continue
            out.append((T.CONFIG, key, setting_record(key, ratio)))
        return out

    def _exchange_writes(self, upstream: UpstreamSettings, target: TargetState) -> list[Write]:
        """Fetch states (checkpoints) before configs: the fetcher reads the state when it sees the config."""
        fetches: list[Write] = []
        configs: list[Write] = []
        for exchange in upstream.exchanges:
            try:
                record = exchange_record(exchange.name, exchange.api, exchange.config, exchange.enabled)
            except InvalidExchange as exc:
                self.report.skipped[f"exchanges this deployment cannot configure ({exc})"] += 1
                continue
            existing = target.exchanges.get(exchange.name)
            if existing is not None and _digest(existing, STAMPS | {"fetch_requested_at"}) == _digest(
                    record, STAMPS | {"fetch_requested_at"}):
                self.report.unchanged[T.EXCHANGES.suffix] += 1
            else:
                if existing is not None:
                    record = {**record, "created_at": existing["created_at"]}
                configs.append((T.EXCHANGES, exchange.name, record))
            status = self._fetch_state(exchange, len(target.exchange_records.get(exchange.name, ())))
            if status is None:
                continue
            held = target.fetches.get(exchange.name)
            if held is not None and _digest(held, FETCH_PROGRESS) == _digest(status, FETCH_PROGRESS):
                self.report.unchanged[T.EXCHANGE_FETCH.suffix] += 1
            else:
                fetches.append((T.EXCHANGE_FETCH, exchange.name, status))
        return fetches + configs

    def _fetch_state(self, exchange: UpstreamExchange, held: int) -> dict[str, Any] | None:
        """The hma.exchange-fetch record carrying upstream's checkpoint, in the fetcher's form."""
        from threatexchange.utils import dataclass_json

        status = exchange.status
        if status is None:
            return None
        checkpoint = None
        if status.checkpoint is not None:
            try:
                loaded = dataclass_json.dataclass_load_dict(status.checkpoint, exchange_api(exchange.api).get_checkpoint_cls())
                checkpoint = dataclass_json.dataclass_dumps(loaded)
            except Exception:  # dacite raises several types; the exchange then fetches from the start
                self.report.skipped["exchange checkpoints that do not load (a full fetch follows)"] += 1
        return T.EXCHANGE_FETCH.codec.conform({
            "exchange": exchange.name, "api": exchange.api, "checkpoint": checkpoint,
            "checkpoint_ts": status.checkpoint_ts if checkpoint is not None else None,
            "running_fetch_start_ts": None,  # no fetch of this deployment runs
            "last_fetch_complete_ts": status.last_fetch_complete_ts,
            "last_fetch_succeeded": status.last_fetch_succeeded,
            "up_to_date": status.up_to_date if checkpoint is not None else False,
            "fetched_items": held,
        })

    # -- content ----------------------------------------------------------------------------------
    def _migrate_content(self, target: TargetState, after: int, stop_after_batches: int | None) -> bool:
        """Content above `after`, batch by batch; False when stopped before the end."""
        total = self.source.content_count(after)
        progress = ProgressBar("migrating HMA content", total, unit="content items")
        done = 0
        for number, items in enumerate(self.source.content(after, self.batch)):
            if stop_after_batches is not None and number >= stop_after_batches:
                return False
            writes = self._content_writes(items, target)
            self._write(writes)
            done += len(items)
            self.report.content_items += len(items)
            self.report.max_content_id = max(self.report.max_content_id, items[-1].id)
            if not self.dry_run:
                self.checkpoint.save(items[-1].id)
            progress.update(done, note=f"{self.report.signals:,} signals")
        progress.finish(note=f"{self.report.signals:,} signals")
        return True

    def _content_writes(self, items: Iterable[UpstreamContent], target: TargetState) -> list[Write]:
        out: list[Write] = []
        for item in items:
            owner = target.content_bank.get(item.id)
            if owner is not None and owner != item.bank:
                self.report.conflicts.append(f"content id {item.id} of bank {item.bank} is held here by bank {owner}")
                continue
            for key, record in content_signal_writes(item, self.report):
                self.report.signals += 1
                held = target.signals.get(key)
                if held is not None and held[0] != item.id:
                    self.report.skipped["signals that another content item of the same bank holds already"] += 1
                    continue
                if item.exchange is not None:
                    target.exchange_records[item.exchange].add(record["metadata"][EXCHANGE_RECORD])
                if held is not None and held[1] == _signal_digest(record):
                    self.report.unchanged[T.BANK_SIGNALS.suffix] += 1
                    continue
                target.hold(key, record)
                out.append((T.BANK_SIGNALS, key, record))
        return out

    def _advance_content_ids(self, target: TargetState) -> None:
        """New content gets ids above every migrated one: the base moves so that the next claim's
        offset stands for the highest migrated id + 1 (one claim tells where the counter is)."""
        highest = max(self.report.max_content_id, max(target.content_bank, default=0))
        if target.next_content_id > highest:
            return
        if self.dry_run:
            self.report.written[T.CONFIG.suffix] += 1
            return
        [claimed] = claim_content_ids(self.settings, "MIGRATION", 1)
        offset = claimed + target.content_id_base - 1
        base = offset + 1 - highest
        self._write([(T.CONFIG, CONTENT_ID_BASE, setting_record(CONTENT_ID_BASE, base))])

    # -- writing ----------------------------------------------------------------------------------
    def _write(self, writes: list[Write]) -> None:
        """Produced and acknowledged (or, dry, only counted)."""
        for spec, key, record in writes:
            self.report.written[spec.suffix] += 1
            if not self.dry_run:
                self.client.produce(spec, key, record)
        if writes and not self.dry_run:
            self.client.flush(timeout_s=120)


class MigrationCheckpoint:
    """The last content id a run finished, per source and target, in a local file; gone once a run completes."""

    def __init__(self, folder: Path, settings: Settings, source: str) -> None:
        ident = hashlib.sha1(f"{source}|{settings.bootstrap_servers}|{settings.topic_prefix}".encode()).hexdigest()[:16]
        self.path = folder / f"{ident}.json"
        self.source = source

    def load(self) -> int:
        try:
            return int(json.loads(self.path.read_text())["after_content_id"])
        except (OSError, ValueError, KeyError):
            return 0

    def save(self, after_content_id: int) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"source": self.source, "after_content_id": after_content_id}))
        tmp.replace(self.path)

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)
