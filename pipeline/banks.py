"""Banks and bank signals: naming rules, record keys and the records that describe them."""

from __future__ import annotations

import json
import re
import time
from typing import Any, Collection

from pipeline.clock import now_ms
from pipeline.signal_types import SIGNAL_TYPES, signal_id, signal_type
from pipeline.topics import BANKS

BANK_NAME = re.compile(r"[A-Z_][A-Z0-9_]*")
# This project's bank controls, beside upstream's name and matching ratio (schemas/hma.Bank.avsc).
CONTROL_FIELDS = ("action", "distances", "suppressed_by", "flood", "confirmed_bank", "deconfirm_disable_s", "share_to")
RENAMED_FROM = "renamed_from"  # metadata of a signal moved by a bank rename: the bank it came from


class InvalidBank(ValueError):
    """A bank name or configuration that HMA's rules do not allow."""


def check_bank_name(name: str) -> str:
    if not isinstance(name, str) or not BANK_NAME.fullmatch(name):
        raise InvalidBank(f"bank name {name!r} must be upper case letters, digits and underscores, not starting with a digit")
    return name


def check_enabled_ratio(value: Any) -> float:
    """An enabled_ratio (a bank's or a signal type's) as upstream HMA allows it: a number from 0 to 1."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value <= 1:
        raise ValueError("enabled_ratio must be a number from 0 to 1")
    return float(value)


def checked_bank(bank: dict[str, Any], known_banks: Collection[str]) -> dict[str, Any]:
    """The hma.banks value, checked and conformed to hma.Bank, or InvalidBank saying what is wrong.

    The one validation of a bank configuration, for the API and the CLI alike: its name, its
    enabled_ratio, a distance per known signal type within that type's range, and every bank it
    names (negative banks, the confirmed bank) among `known_banks` or itself.
    """
    check_bank_name(bank.get("name"))
    try:
        check_enabled_ratio(bank.get("enabled_ratio", 1.0))
    except ValueError as exc:
        raise InvalidBank(str(exc)) from None
    distances = bank.get("distances") or {}
    if not isinstance(distances, dict):
        raise InvalidBank("distances must map signal types to distances, e.g. {\"pdq\": 16}")
    for kind, distance in distances.items():
        if kind not in SIGNAL_TYPES:
            raise InvalidBank(f"No such SignalType '{kind}'")
        top = SIGNAL_TYPES[kind].max_distance
        if not isinstance(distance, int) or isinstance(distance, bool) or not 0 <= distance <= top:
            raise InvalidBank(f"distance for {kind} must be an integer from 0 to {top}, got {distance!r}")
    named = list(bank.get("suppressed_by") or []) + ([bank["confirmed_bank"]] if bank.get("confirmed_bank") else [])
    for other in named:
        if other not in known_banks and other != bank["name"]:
            raise InvalidBank(f"bank '{other}' named in the configuration does not exist")
    share_to = bank.get("share_to") or []
    if not isinstance(share_to, list) or not all(isinstance(x, str) and BANK_NAME.fullmatch(x) for x in share_to):
        raise InvalidBank("share_to must be a list of exchange names, e.g. [\"STOPNCII\"]")
    try:
        return BANKS.codec.conform(bank)
    except ValueError as exc:
        raise InvalidBank(f"invalid bank configuration: {exc}") from None


def bank_record(name: str, **config: Any) -> dict[str, Any]:
    """A hma.banks value: the bank's configuration, defaults filled by the schema."""
    stamp = now_ms()
    return {"name": check_bank_name(name), "created_at": stamp, "updated_at": stamp, **config}


def matching_enabled_ratio(bank: dict[str, Any]) -> float:
    """Upstream HMA's matching_enabled_ratio: the bank's enabled_ratio, 0 while it is disabled."""
    return bank["enabled_ratio"] if bank["enabled"] else 0.0


def enabled_fields(ratio: float) -> dict[str, Any]:
    """The hma.banks fields that give a bank this matching_enabled_ratio (upstream's PUT: a ratio,
    or `enabled` true / false for 1 / 0)."""
    return {"enabled_ratio": float(ratio), "enabled": ratio > 0}


# Bank signal metadata of upstream's content fields: the client's metadata ({content_id,
# content_uri, json}, `json` kept as JSON text), the note, and the source's URI of imported content.
METADATA_KEYS = ("content_id", "content_uri", "json")
NOTE = "note"
ORIGINAL_MEDIA_URI = "original_media_uri"


def content_metadata_fields(raw: dict[str, Any] | None, note: Any) -> dict[str, str]:
    """Upstream's BankedContentMetadata and note as bank signal metadata; ValueError for what
    upstream refuses (keys it does not know, a note that is no string or too long)."""
    out: dict[str, str] = {}
    if raw is not None:
        if not isinstance(raw, dict):
            raise ValueError("metadata should be a json object")
        unexpected = set(raw) - set(METADATA_KEYS) - {"collab"}
        if unexpected:
            raise ValueError(f"Invalid metadata: unexpected keys {', '.join(sorted(unexpected))}")
        for key in METADATA_KEYS:
            if key in raw and raw[key] is not None:
                out[key] = json.dumps(raw[key]) if key == "json" else str(raw[key])
    if note:
        if not isinstance(note, str):
            raise ValueError("note should be a string")
        if len(note) > 255:
            raise ValueError("note must be at most 255 characters")
        out[NOTE] = note
    return out


# Bank signal metadata of signals fetched from an exchange (connectors/exchanges/records.py).
EXCHANGE = "exchange"
EXCHANGE_RECORD = "exchange_record"
EXCHANGE_CATEGORY = "exchange_category"
EXCHANGE_TAGS = "exchange_tags"  # a JSON list


def exchange_source(metadata: dict[str, str]) -> dict[str, Any] | None:
    """The hma.ExchangeSource of a bank signal fetched from an exchange, None for any other."""
    if EXCHANGE not in metadata:
        return None
    return {"exchange": metadata[EXCHANGE], "record_id": metadata.get(EXCHANGE_RECORD, ""),
            "category": metadata.get(EXCHANGE_CATEGORY, ""), "tags": json.loads(metadata.get(EXCHANGE_TAGS, "[]"))}


def bank_signal_key(bank: str, signal_type_name: str, sid: str) -> str:
    return f"{bank}/{signal_type_name}/{sid}"


def bank_signal_record(
    bank: str, bank_content_id: int, signal_type_name: str, value: str, metadata: dict[str, str] | None = None
) -> tuple[str, dict[str, Any]]:
    """The key and hma.bank-signals value for one signal of one bank content item."""
    return valid_bank_signal_record(check_bank_name(bank), bank_content_id, signal_type_name,
                                    signal_type(signal_type_name).validate(value), metadata)


def valid_bank_signal_record(
    bank: str, bank_content_id: int, signal_type_name: str, value: str, metadata: dict[str, str] | None = None,
    added_at: int | None = None,
) -> tuple[str, dict[str, Any]]:
    """`bank_signal_record` for a bank name already checked and a value its signal type's
    `validate` returned: a bulk writer that validated each value once (a fetched exchange's),
    and gives a batch one `added_at`."""
    sid = signal_id(signal_type_name, value)
    record = {
        "bank": bank,
        "bank_content_id": bank_content_id,
        "signal_type": signal_type_name,
        "signal_id": sid,
        "value": value,
        "metadata": dict(metadata or {}),
        "disable_until_ts": 1,
        "added_at": now_ms() if added_at is None else added_at,
    }
    return bank_signal_key(bank, signal_type_name, sid), record


def bank_controls(bank: dict[str, Any]) -> dict[str, Any]:
    """A bank record's controls, as GET /c/bank/<bank>/controls and `hmas bank controls` show them."""
    return {f: bank[f] for f in CONTROL_FIELDS}


def signal_enabled(disable_until_ts: int, now_s: float | None = None) -> bool:
    """Upstream HMA's rule: 0 disabled, 1 enabled, a larger value disabled until that unix time."""
    if disable_until_ts == 1:
        return True
    if disable_until_ts == 0:
        return False
    return (time.time() if now_s is None else now_s) >= disable_until_ts
