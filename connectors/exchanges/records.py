"""From exchange records to bank signals: which hma.bank-signals records a fetched update adds,
changes or removes, with one bank content item per exchange record (upstream's rule).

`BankOfExchange` holds, for one exchange's bank, each exchange record's content id and signal
keys, on disk (connectors/exchanges/held.py), so that the fetcher's memory does not grow with the
bank; it is loaded from hma.bank-signals (the metadata names the exchange and the record) and
kept current by the writes it plans.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Iterable, Iterator

from threatexchange.exchanges.collab_config import CollaborationConfigBase
from threatexchange.exchanges.fetch_state import AggregateSignalOpinion, FetchedSignalMetadata
from threatexchange.exchanges.signal_exchange_api import SignalExchangeAPIWithSimpleUpdates, TSignalExchangeAPICls

from connectors.exchanges.config import FETCHED_SIGNAL_TYPES
from connectors.exchanges.held import HeldRecords
from pipeline import topics as T
from pipeline.banks import (
    EXCHANGE, EXCHANGE_CATEGORY, EXCHANGE_RECORD, EXCHANGE_TAGS, check_bank_name, valid_bank_signal_record,
)
from pipeline.clock import now_ms
from pipeline.services.output import Write
from pipeline.signal_types import InvalidSignal, signal_type

Signals = dict[tuple[str, str], dict[str, str]]  # (signal type, value) -> bank signal metadata
Held = dict[str, tuple[int, set[str]]]  # record id -> (content id, signal keys) the bank holds


TYPE_NAMES = {stype: stype.get_name() for stype in FETCHED_SIGNAL_TYPES}
TYPES_BY_NAME = {name: stype for stype, name in TYPE_NAMES.items()}


def keys_are_signals(api_cls: TSignalExchangeAPICls) -> bool:
    """Whether the API converts as python-threatexchange's simple-updates APIs do: a record's key
    is its (signal type, signal). ThreatExchange's API subclasses them with a conversion of its own."""
    simple = SignalExchangeAPIWithSimpleUpdates.naive_convert_to_signal_type.__func__  # type: ignore[attr-defined]
    return getattr(api_cls.naive_convert_to_signal_type, "__func__", None) is simple


def record_id(key: Any) -> str:
    """An exchange record's key as text: a tuple key (type, value) as a JSON list."""
    if type(key) is tuple and len(key) == 2:
        kind, value = key
        if type(kind) is str and type(value) is str and _plain_text(kind) and _plain_text(value):
            return f'["{kind}", "{value}"]'  # json.dumps's text, made without it (one per fetched record)
    return json.dumps(list(key)) if isinstance(key, tuple) else str(key)


_plain_text = re.compile(r"[ -!#-\[\]-~]*").fullmatch  # printable ASCII but for the quote and backslash: JSON as it is


def _opinion_fields(meta: FetchedSignalMetadata) -> dict[str, str]:
    """A record's opinions summed up as bank signal metadata (category and tags)."""
    opinion = AggregateSignalOpinion.from_opinions(meta.get_as_opinions())
    return {EXCHANGE_CATEGORY: opinion.category.name.lower(),
            EXCHANGE_TAGS: json.dumps(sorted(opinion.tags)) if opinion.tags else "[]"}


class BankOfExchange:
    def __init__(self, exchange: str, api_cls: TSignalExchangeAPICls, collab: CollaborationConfigBase,
                 folder: Path | None = None) -> None:
        self.exchange = exchange
        self.bank = exchange
        self.api_cls = api_cls
        self.collab = collab
        self.folder = folder
        self._held: HeldRecords | None = None
        self._simple = keys_are_signals(api_cls)
        self._held_at_load: int | None = None  # records the bank held when loaded (None: not loaded)
        self.rejected = 0  # signals that the bank's signal types do not accept

    @property
    def held(self) -> HeldRecords:
        """Opened on first use: converting alone needs no map."""
        if self._held is None:
            self._held = HeldRecords(self.folder)
        return self._held

    def close(self) -> None:
        if self._held is not None:
            self._held.close()
            self._held = None

    def __len__(self) -> int:
        """How many exchange records the bank holds."""
        return len(self.held)

    def record_ids(self) -> list[str]:
        return self.held.ids()

    def load(self, bank_signals: Iterable[tuple[str, dict[str, Any] | None]]) -> None:
        """What the bank holds from this exchange, from hma.bank-signals changes in topic order
        (key, value or None for a tombstone): read as a stream, held on disk."""
        held = self.held
        for key, value in bank_signals:
            meta = (value or {}).get("metadata") or {}
            if value is None or value["bank"] != self.bank or meta.get(EXCHANGE) != self.exchange \
                    or EXCHANGE_RECORD not in meta:
                held.drop_signal(key)
                continue
            held.put_signal(key, meta[EXCHANGE_RECORD], value["bank_content_id"])
        held.index_records()
        self._held_at_load = len(held)

    def convert(self, key: Any, value: Any) -> Signals:
        """The signals one fetched record stands for; none for a deletion (None) or a record that
        no longer converts to any signal."""
        return self.convert_batch([(key, value)])[record_id(key)]

    def convert_batch(self, items: Iterable[tuple[Any, Any]]) -> dict[str, Signals]:
        """`convert` of each fetched (key, value), by record id. Records that share one metadata
        object (an exchange's deltas often do) have their opinions summed up once."""
        out: dict[str, Signals] = {}
        # id() of a metadata object -> the object (kept alive: its id stays its own) and its fields
        opinions: dict[int, tuple[FetchedSignalMetadata, dict[str, str]]] = {}
        for key, value in items:
            rid = record_id(key)
            signals: Signals = {}
            if value is not None:
                for name, signal, meta in self._signals_of(key, value):
                    known = opinions.get(id(meta))
                    if known is None:
                        known = opinions[id(meta)] = (meta, _opinion_fields(meta))
                    signals[name, signal] = {EXCHANGE: self.exchange, EXCHANGE_RECORD: rid, **known[1]}
            out[rid] = signals
        return out

    def _signals_of(self, key: Any, value: Any) -> Iterator[tuple[str, str, FetchedSignalMetadata]]:
        """(signal type name, signal as its type's `validate` returns it, metadata) of one fetched
        record; a signal that the bank's signal types do not accept is counted in `rejected`. An
        API whose records are their signals (key = (type, signal)) needs no conversion beyond the
        signal's own check, which is most of what a fetch of such an exchange costs when done
        through the API's general conversion one record at a time."""
        if self._simple:
            kind, signal = key
            if kind in TYPES_BY_NAME:
                valid = self._validated(kind, signal)
                if valid is not None:
                    yield kind, valid, value
            return
        converted = self.api_cls.naive_convert_to_signal_type(list(FETCHED_SIGNAL_TYPES), self.collab, {key: value})
        for stype, by_value in converted.items():
            for signal, meta in by_value.items():
                valid = self._validated(TYPE_NAMES[stype], signal)
                if valid is not None:
                    yield TYPE_NAMES[stype], valid, meta

    def _validated(self, kind: str, signal: str) -> str | None:
        try:
            return signal_type(kind).validate(signal)
        except InvalidSignal:
            self.rejected += 1
            return None

    def held_before(self, converted: dict[str, Signals]) -> tuple[Held, int]:
        """What the bank holds of these converted records, and how many content ids `writes` will
        need for them."""
        before = self.held.get(converted)
        return before, sum(1 for rid, signals in converted.items() if signals and rid not in before)

    def writes(self, converted: dict[str, Signals], new_ids: Iterator[int], before: Held | None = None) -> list[Write]:
        """hma.bank-signals records (None = tombstone) that make the bank hold `converted`;
        `before`: what `held_before` said the bank holds of them, if asked already."""
        out: list[Write] = []
        if before is None:
            before = self.held.get(converted)
        added: list[tuple[str, int, list[str]]] = []
        changed: list[tuple[str, set[str]]] = []
        removed: list[str] = []
        bank = check_bank_name(self.bank)
        added_at = now_ms()
        for rid, signals in converted.items():
            held = before.get(rid)
            if held is None:  # most records of a fetch: new to the bank, nothing to compare or remove
                if signals:
                    content_id = next(new_ids)
                    new_keys = []
                    for (kind, value), metadata in signals.items():
                        key, record = valid_bank_signal_record(bank, content_id, kind, value, metadata, added_at)
                        new_keys.append(key)
                        out.append((T.BANK_SIGNALS, key, record))
                    added.append((rid, content_id, new_keys))
                continue
            content_id, held_keys = held
            if not signals:
                out += [(T.BANK_SIGNALS, key, None) for key in sorted(held_keys)]
                removed.append(rid)
                continue
            keys: set[str] = set()
            for (kind, value), metadata in signals.items():
                key, record = valid_bank_signal_record(bank, content_id, kind, value, metadata, added_at)
                keys.add(key)
                out.append((T.BANK_SIGNALS, key, record))
            out += [(T.BANK_SIGNALS, key, None) for key in sorted(held_keys - keys)]
            if keys != held_keys:
                changed.append((rid, keys))
        self.held.update(added, changed, removed)
        return out

    def saw(self, record_ids: Iterable[str]) -> None:
        """Records that the current full fetch returned (a deletion counts: it removes itself).
        A bank that held nothing when loaded needs no marks: all it holds, this fetch brought."""
        if self._held_at_load != 0:
            self.held.saw(record_ids)

    def removals(self) -> list[Write]:
        """Tombstones for every held record that the full fetch did not return: what the exchange
        no longer holds."""
        if self._held_at_load == 0:
            return []
        return self.writes({rid: {} for rid in self.held.unseen()}, iter(()))
