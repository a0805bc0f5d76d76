"""What goes on hma.exchange-outbox: reviewers' decisions on signals that came from an exchange
that opted in (`report_feedback`), and the difference between what a bank with `share_to` holds
and what its exchanges were sent.

Every write has an idempotency key, the same for every copy of it, and hma.exchange-delivered
keeps, by that key, what the writer delivered: a copy of a delivered write (a retried request, an
outbox record produced again after a restart) is not sent again. A shared signal's key is one per
exchange and signal: present on hma.exchange-delivered while the exchange holds it, a tombstone
once withdrawn.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Iterable, Mapping

from pipeline import topics as T
from pipeline.banks import EXCHANGE, EXCHANGE_RECORD, EXCHANGE_TAGS, signal_enabled
from pipeline.clock import now_ms
from pipeline.services.output import Write
from pipeline.state.bank_view import BankView

FEEDBACK_OPS = {"harmful": "confirm", "benign": "deconfirm"}


def share_key(exchange: str, signal_type: str, value: str) -> str:
    return f"share/{exchange}/{signal_type}/{value}"


def feedback_key(exchange: str, decision: Mapping[str, Any], signal_type: str, value: str) -> str:
    digest = hashlib.sha256(json.dumps(
        [exchange, decision["content_id"], decision["decided_at"], decision["verdict"], signal_type, value]).encode())
    return f"feedback/{exchange}/{digest.hexdigest()[:32]}"


def outbox_record(exchange: str, op: str, signal_type: str, value: str, key: str, origin: str,
                  record_id: str | None = None, tags: Iterable[str] = ()) -> dict[str, Any]:
    return T.EXCHANGE_OUTBOX.codec.conform({
        "exchange": exchange, "op": op, "signal_type": signal_type, "value": value, "record_id": record_id,
        "tags": sorted(tags), "idempotency_key": key, "origin": origin, "requested_at": now_ms()})


def already_delivered(write: Mapping[str, Any], delivered: Mapping[str, Any]) -> bool:
    """Whether hma.exchange-delivered shows this write done: a withdrawal when the key is gone,
    anything else when the key is there."""
    held = write["idempotency_key"] in delivered
    return not held if write["op"] == "share_remove" else held


def feedback_writes(view: BankView, exchanges: Mapping[str, Mapping[str, Any]], decision: Mapping[str, Any]) -> list[Write]:
    """Outbox records for a feedback decision: one per decided signal held by a bank entry that
    an exchange with `report_feedback` gave us."""
    op = FEEDBACK_OPS[decision["verdict"]]
    writes: list[Write] = []
    seen: set[str] = set()
    for sid in decision["signals"]:
        for entry in view.entries_with_signal(sid):
            name = entry.metadata.get(EXCHANGE)
            config = exchanges.get(name or "")
            if config is None or not config["report_feedback"] or entry.bank != name:
                continue
            key = feedback_key(name, decision, entry.signal_type, entry.value)
            if key in seen:
                continue
            seen.add(key)
            tags = json.loads(entry.metadata.get(EXCHANGE_TAGS, "[]"))
            writes.append((T.EXCHANGE_OUTBOX, key, outbox_record(
                name, op, entry.signal_type, entry.value, key, decision["content_id"],
                entry.metadata.get(EXCHANGE_RECORD), tags)))
    return writes


def wanted_shares(banks: Mapping[str, Mapping[str, Any]], bank_signals: Iterable[Mapping[str, Any]],
                  exchanges: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Every (exchange, signal) that should be published, by share key: enabled signals of banks
    that name a configured exchange in `share_to`, except signals that exchange gave us."""
    wanted: dict[str, dict[str, Any]] = {}
    for record in bank_signals:
        bank = banks.get(record["bank"])
        if not bank or not bank["share_to"] or not signal_enabled(record["disable_until_ts"]):
            continue
        for exchange in bank["share_to"]:
            if exchange not in exchanges or record["metadata"].get(EXCHANGE) == exchange:
                continue
            key = share_key(exchange, record["signal_type"], record["value"])
            wanted.setdefault(key, outbox_record(exchange, "share_add", record["signal_type"], record["value"], key,
                                                 record["bank"]))
    return wanted


def share_writes(wanted: Mapping[str, dict[str, Any]], delivered: Mapping[str, Mapping[str, Any]],
                 pending: Mapping[str, str]) -> list[Write]:
    """Outbox records that bring the exchanges to `wanted`: additions not yet delivered, and
    withdrawals of delivered shares no longer wanted (a bank's signal removed or disabled, a bank
    no longer shared). `pending`: share key -> the op already on the outbox, not yet delivered."""
    writes: list[Write] = []
    for key, record in sorted(wanted.items()):
        if key not in delivered and pending.get(key) != "share_add":
            writes.append((T.EXCHANGE_OUTBOX, key, record))
    for key, done in sorted(delivered.items()):
        if not key.startswith("share/") or key in wanted or pending.get(key) == "share_remove":
            continue
        _, exchange, signal_type, value = key.split("/", 3)
        writes.append((T.EXCHANGE_OUTBOX, key, outbox_record(exchange, "share_remove", signal_type, value, key, "")))
    return writes
