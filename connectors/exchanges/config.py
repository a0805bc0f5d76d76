"""Exchange configurations: the installed python-threatexchange APIs, the hma.exchanges record of
one exchange, its collaboration config, and the field descriptors that upstream HMA's schema route
answers with.

An exchange is named like its bank (upstream's rule): `POST /c/exchanges {"bank": "NCMEC"}`
configures exchange NCMEC that fills bank NCMEC.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import typing as t
from typing import Any, Iterable

from threatexchange.exchanges.auth import SignalExchangeWithAuth
from threatexchange.exchanges.collab_config import CollaborationConfigBase
from threatexchange.exchanges.impl.fb_threatexchange_api import FBThreatExchangeSignalExchangeAPI
from threatexchange.exchanges.impl.file_api import LocalFileSignalExchangeAPI
from threatexchange.exchanges.impl.ncmec_api import NCMECSignalExchangeAPI
from threatexchange.exchanges.impl.static_sample import StaticSampleSignalExchangeAPI
from threatexchange.exchanges.impl.stop_ncii_api import StopNCIISignalExchangeAPI
from threatexchange.exchanges.impl.techagainstterrorism_api import TATSignalExchangeAPI
from threatexchange.exchanges.signal_exchange_api import TSignalExchangeAPICls
from threatexchange.signal_type.md5 import VideoMD5Signal
from threatexchange.signal_type.pdq.signal import PdqSignal
from threatexchange.signal_type.signal_base import SignalType
from threatexchange.utils import dataclass_json

from pipeline.banks import check_bank_name
from pipeline.clock import now_ms
from pipeline.topics import EXCHANGES

EXCHANGE_APIS: dict[str, TSignalExchangeAPICls] = {
    cls.get_name(): cls  # type: ignore[misc]
    for cls in (
        StaticSampleSignalExchangeAPI, LocalFileSignalExchangeAPI, NCMECSignalExchangeAPI,
        StopNCIISignalExchangeAPI, FBThreatExchangeSignalExchangeAPI, TATSignalExchangeAPI,
    )
}

# APIs whose every fetch returns everything they hold (no incremental checkpoint): each fetch is a
# full refetch, so what they no longer hold is removed from the bank.
SNAPSHOT_APIS = frozenset({StaticSampleSignalExchangeAPI.get_name(), LocalFileSignalExchangeAPI.get_name()})

# python-threatexchange's signal types that the pipeline's banks hold (pipeline/signal_types.py).
FETCHED_SIGNAL_TYPES: tuple[type[SignalType], ...] = (PdqSignal, VideoMD5Signal)

# Set from the exchange record, not from api_json (upstream's CONFIG_IGNORE_FIELDS).
RECORD_FIELDS = frozenset({"name", "api", "enabled"})


class InvalidExchange(ValueError):
    """An exchange configuration that cannot be stored; the message says why."""


def exchange_api(name: str) -> TSignalExchangeAPICls:
    try:
        return EXCHANGE_APIS[name]
    except KeyError:
        raise InvalidExchange(f"No such exchange type '{name}'") from None


def install_exchange_api(api_cls: TSignalExchangeAPICls) -> None:
    """Makes one more SignalExchangeAPI known to this process, as upstream's configurable exchange
    types do (the exchange bench's random exchange)."""
    EXCHANGE_APIS[api_cls.get_name()] = api_cls


def supports_auth(api_cls: TSignalExchangeAPICls) -> bool:
    return issubclass(api_cls, SignalExchangeWithAuth)


def exchange_record(name: str, api: str, api_json: dict[str, Any] | None = None, enabled: bool = True,
                    created_at: int | None = None, report_feedback: bool = False,
                    endpoint: str | None = None) -> dict[str, Any]:
    """A checked hma.exchanges value: the API's config must load from `api_json` (upstream's check).
    `report_feedback` and `endpoint` are this project's (write-back, a replaced base URL)."""
    from connectors.exchanges.clients import check_endpoint

    if not isinstance(report_feedback, bool):
        raise InvalidExchange("report_feedback must be true or false")
    try:
        check_bank_name(name)
    except ValueError as exc:
        raise InvalidExchange(str(exc)) from None
    if not isinstance(api_json, (dict, type(None))):
        raise InvalidExchange("Field `api_json` must be object")
    own = {k: v for k, v in (api_json or {}).items() if k not in RECORD_FIELDS}
    stamp = now_ms()
    record = {"name": name, "api": api, "enabled": bool(enabled), "api_json": json.dumps(own, sort_keys=True),
              "created_at": created_at or stamp, "updated_at": stamp, "report_feedback": report_feedback,
              "endpoint": check_endpoint(api, endpoint)}
    collab_config(record)
    return EXCHANGES.codec.conform(record)


def collab_config(record: dict[str, Any]) -> CollaborationConfigBase:
    """The API's collaboration config dataclass for an hma.exchanges value."""
    api_cls = exchange_api(record["api"])
    fields = {**json.loads(record["api_json"]), "name": record["name"], "api": record["api"],
              "enabled": record["enabled"]}
    try:
        return dataclass_json.dataclass_load_dict(fields, api_cls.get_config_cls())
    except Exception as exc:  # dacite raises several types, each saying which field is wrong
        raise InvalidExchange(f"Failed to parse `api_json` - {exc}") from None


def exchange_json(record: dict[str, Any]) -> dict[str, Any]:
    """Upstream's GET /c/exchange/<name> answer: the collaboration config as JSON (enums as their
    values, sets as lists)."""
    return json.loads(dataclass_json.dataclass_dumps(collab_config(record)))


def api_schema(api_cls: TSignalExchangeAPICls) -> dict[str, Any]:
    """Upstream's schema answer: field descriptors of api_json and, for APIs with auth, of credential_json."""
    credentials = None
    if supports_auth(api_cls):
        credentials = {"fields": field_descriptors(api_cls.get_credential_cls())}  # type: ignore[attr-defined]
    return {"config_schema": {"fields": field_descriptors(api_cls.get_config_cls(), RECORD_FIELDS)},
            "credentials_schema": credentials}


def field_descriptors(cls: type, skip: frozenset[str] = frozenset()) -> list[dict[str, Any]]:
    """{name, type, required, default, help, choices} per init field of a dataclass."""
    hints = t.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        if not f.init or f.name in skip:
            continue
        kind, choices = _kind(hints.get(f.name, str))
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        default = None
        if f.default is not dataclasses.MISSING:
            default = _plain(f.default)
        elif f.default_factory is not dataclasses.MISSING:
            default = _plain(f.default_factory())
        out.append({"name": f.name, "type": kind, "required": required, "default": default,
                    "help": (f.metadata or {}).get("help", ""), "choices": choices})
    return out


def _kind(hint: Any) -> tuple[str, list[Any] | None]:
    args = [a for a in t.get_args(hint) if a is not type(None)]
    origin = t.get_origin(hint)
    if origin in (set, frozenset, list) and args:
        inner, _ = _kind(args[0])
        return f"{'list' if origin is list else 'set'}_of_{inner}", None
    if origin is not None and len(args) == 1:  # Optional[X]
        return _kind(args[0])
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return "enum", [m.value for m in hint]
    if hint in (int, float):
        return "number", None
    if hint is bool:
        return "boolean", None
    return "string", None


def _plain(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (set, frozenset, list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def creation_writes(record: dict[str, Any], bank_exists: bool) -> list[tuple[Any, str, dict[str, Any] | None]]:
    """An exchange and, unless it exists, its bank (a normal bank with the default controls)."""
    from pipeline.banks import bank_record
    from pipeline.topics import BANKS

    bank = [] if bank_exists else [(BANKS, record["name"], BANKS.codec.conform(bank_record(record["name"])))]
    return bank + [(EXCHANGES, record["name"], record)]


def removal_writes(name: str, bank_signal_keys: Iterable[str], bank_exists: bool) -> list[tuple[Any, str, None]]:
    """Tombstones for an exchange, its fetch state, its bank and the bank's content."""
    from pipeline.topics import BANK_SIGNALS, BANKS, EXCHANGE_FETCH

    writes: list[tuple[Any, str, None]] = [(EXCHANGES, name, None), (EXCHANGE_FETCH, name, None)]
    writes += [(BANK_SIGNALS, key, None) for key in bank_signal_keys]
    return writes + ([(BANKS, name, None)] if bank_exists else [])


def changed(record: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """An hma.exchanges value with some fields changed (enabled, fetch_requested_at)."""
    return {**record, **changes, "updated_at": now_ms()}
