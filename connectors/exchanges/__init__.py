"""Signal exchanges, through python-threatexchange's exchange APIs.

config: the installed APIs and an exchange's hma.exchanges record; credentials: sealed or found in
the environment; records: fetched records into bank signals; fetcher: the one fetcher of a
deployment; view: the exchange topics as a process sees them.
"""

from __future__ import annotations


def sample_signals() -> list[tuple[str, str]]:
    """python-threatexchange's static sample exchange, converted as the fetcher converts it:
    (signal type, value) pairs."""
    from connectors.exchanges.config import FETCHED_SIGNAL_TYPES, collab_config, exchange_api, exchange_record
    from connectors.exchanges.records import BankOfExchange

    record = exchange_record("SAMPLE", "sample")
    api_cls = exchange_api("sample")
    bank = BankOfExchange(record["name"], api_cls, collab_config(record))
    signals: set[tuple[str, str]] = set()
    for delta in api_cls.for_collab(bank.collab).fetch_iter(list(FETCHED_SIGNAL_TYPES), None):
        for key, value in delta.updates.items():
            signals.update(bank.convert(key, value))
    return sorted(signals)
