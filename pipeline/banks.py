"""Banks and bank signals: naming rules, record keys and the records that describe them."""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING, Any

from pipeline.clock import now_ms
from pipeline.signal_types import signal_id, signal_type

if TYPE_CHECKING:
    from pipeline.state.bank_view import BankEntry

BANK_NAME = re.compile(r"[A-Z_][A-Z0-9_]*")
# This project's bank controls, beside upstream's name and matching ratio (schemas/hma.Bank.avsc).
CONTROL_FIELDS = ("action", "distances", "suppressed_by", "flood", "confirmed_bank", "deconfirm_disable_s")
RENAMED_FROM = "renamed_from"  # metadata of a signal moved by a bank rename: the bank it came from


class InvalidBank(ValueError):
    """A bank name or configuration that HMA's rules do not allow."""


def check_bank_name(name: str) -> str:
    if not isinstance(name, str) or not BANK_NAME.fullmatch(name):
        raise InvalidBank(f"bank name {name!r} must be upper case letters, digits and underscores, not starting with a digit")
    return name


def bank_record(name: str, **config: Any) -> dict[str, Any]:
    """A hma.banks value: the bank's configuration, defaults filled by the schema."""
    stamp = now_ms()
    return {"name": check_bank_name(name), "created_at": stamp, "updated_at": stamp, **config}


def bank_signal_key(bank: str, signal_type_name: str, sid: str) -> str:
    return f"{bank}/{signal_type_name}/{sid}"


def bank_signal_record(
    bank: str, bank_content_id: int, signal_type_name: str, value: str, metadata: dict[str, str] | None = None
) -> tuple[str, dict[str, Any]]:
    """The key and hma.bank-signals value for one signal of one bank content item."""
    value = signal_type(signal_type_name).validate(value)
    sid = signal_id(signal_type_name, value)
    record = {
        "bank": check_bank_name(bank),
        "bank_content_id": bank_content_id,
        "signal_type": signal_type_name,
        "signal_id": sid,
        "value": value,
        "metadata": dict(metadata or {}),
        "disable_until_ts": 1,
        "added_at": now_ms(),
    }
    return bank_signal_key(bank, signal_type_name, sid), record


def bank_controls(bank: dict[str, Any]) -> dict[str, Any]:
    """A bank record's controls, as GET /c/bank/<bank>/controls and `hmas bank controls` show them."""
    return {f: bank[f] for f in CONTROL_FIELDS}


def entry_record(entry: "BankEntry", **changes: Any) -> dict[str, Any]:
    """The hma.bank-signals value of a bank entry, with changes."""
    record = {
        "bank": entry.bank, "bank_content_id": entry.bank_content_id, "signal_type": entry.signal_type,
        "signal_id": entry.signal_id, "value": entry.value, "metadata": dict(entry.metadata),
        "disable_until_ts": entry.disable_until_ts, "added_at": now_ms(),
    }
    return {**record, **changes}


def signal_enabled(disable_until_ts: int, now_s: float | None = None) -> bool:
    """Upstream HMA's rule: 0 disabled, 1 enabled, a larger value disabled until that unix time."""
    if disable_until_ts == 1:
        return True
    if disable_until_ts == 0:
        return False
    return (time.time() if now_s is None else now_s) >= disable_until_ts


def content_id_from_offset(offset: int, base: int) -> int:
    """The bank content id that a claim at this hma.content-ids offset stands for."""
    return offset - base + 1
