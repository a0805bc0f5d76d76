"""From exchange records to bank signals: which hma.bank-signals records a fetched update adds,
changes or removes, with one bank content item per exchange record (upstream's rule).

`BankOfExchange` holds, for one exchange's bank, each exchange record's content id and signal
keys; it is loaded from hma.bank-signals (the metadata names the exchange and the record) and
kept current by the writes it plans.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

from threatexchange.exchanges.collab_config import CollaborationConfigBase
from threatexchange.exchanges.fetch_state import AggregateSignalOpinion
from threatexchange.exchanges.signal_exchange_api import TSignalExchangeAPICls

from connectors.exchanges.config import FETCHED_SIGNAL_TYPES
from pipeline import topics as T
from pipeline.banks import EXCHANGE, EXCHANGE_CATEGORY, EXCHANGE_RECORD, EXCHANGE_TAGS, bank_signal_record
from pipeline.services.output import Write
from pipeline.signal_types import InvalidSignal

Signals = dict[tuple[str, str], dict[str, str]]  # (signal type, value) -> bank signal metadata


def record_id(key: Any) -> str:
    """An exchange record's key as text: a tuple key (type, value) as a JSON list."""
    return json.dumps(list(key)) if isinstance(key, tuple) else str(key)


@dataclass
class HeldRecord:
    content_id: int
    signal_keys: set[str] = field(default_factory=set)


class BankOfExchange:
    def __init__(self, exchange: str, api_cls: TSignalExchangeAPICls, collab: CollaborationConfigBase) -> None:
        self.exchange = exchange
        self.bank = exchange
        self.api_cls = api_cls
        self.collab = collab
        self.records: dict[str, HeldRecord] = {}
        self.rejected = 0  # signals that the bank's signal types do not accept

    def load(self, bank_signals: Iterable[tuple[str, dict[str, Any]]]) -> None:
        """What the bank holds from this exchange, from (key, hma.bank-signals value) pairs."""
        for key, value in bank_signals:
            meta = value.get("metadata") or {}
            if value["bank"] != self.bank or meta.get(EXCHANGE) != self.exchange or EXCHANGE_RECORD not in meta:
                continue
            held = self.records.setdefault(meta[EXCHANGE_RECORD], HeldRecord(value["bank_content_id"]))
            held.signal_keys.add(key)

    def convert(self, key: Any, value: Any) -> Signals:
        """The signals one fetched record stands for; none for a deletion (None) or a record that
        no longer converts to any signal."""
        if value is None:
            return {}
        rid = record_id(key)
        converted = self.api_cls.naive_convert_to_signal_type(list(FETCHED_SIGNAL_TYPES), self.collab, {key: value})
        out: Signals = {}
        for stype, by_value in converted.items():
            for signal, meta in by_value.items():
                opinion = AggregateSignalOpinion.from_opinions(meta.get_as_opinions())
                out[stype.get_name(), signal] = {
                    EXCHANGE: self.exchange, EXCHANGE_RECORD: rid, EXCHANGE_CATEGORY: opinion.category.name.lower(),
                    EXCHANGE_TAGS: json.dumps(sorted(opinion.tags)),
                }
        return out

    def new_records(self, converted: dict[str, Signals]) -> int:
        """How many content ids `writes` will need for these converted records."""
        return sum(1 for rid, signals in converted.items() if signals and rid not in self.records)

    def writes(self, converted: dict[str, Signals], new_ids: Iterator[int]) -> list[Write]:
        """hma.bank-signals records (None = tombstone) that make the bank hold `converted`."""
        out: list[Write] = []
        for rid, signals in converted.items():
            held = self.records.get(rid)
            if not signals:
                if held is not None:
                    out += [(T.BANK_SIGNALS, key, None) for key in sorted(held.signal_keys)]
                    del self.records[rid]
                continue
            if held is None:
                held = self.records[rid] = HeldRecord(next(new_ids))
            keys: set[str] = set()
            for (kind, value), metadata in signals.items():
                try:
                    key, record = bank_signal_record(self.bank, held.content_id, kind, value, metadata)
                except InvalidSignal:
                    self.rejected += 1
                    continue
                keys.add(key)
                out.append((T.BANK_SIGNALS, key, record))
            out += [(T.BANK_SIGNALS, key, None) for key in sorted(held.signal_keys - keys)]
            held.signal_keys = keys
        return out

    def removals(self, keep: set[str]) -> list[Write]:
        """Tombstones for every record not in `keep`: what the exchange no longer holds after a full fetch."""
        return self.writes({rid: {} for rid in set(self.records) - keep}, iter(()))
