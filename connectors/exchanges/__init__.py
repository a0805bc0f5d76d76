"""Signal exchanges, through python-threatexchange's exchange APIs."""

from __future__ import annotations

from threatexchange.exchanges.impl.static_sample import StaticSampleSignalExchangeAPI
from threatexchange.signal_type.md5 import VideoMD5Signal
from threatexchange.signal_type.pdq.signal import PdqSignal


def sample_signals() -> list[tuple[str, str]]:
    """python-threatexchange's static sample exchange: (signal type, value) pairs."""
    signals: list[tuple[str, str]] = []
    for delta in StaticSampleSignalExchangeAPI().fetch_iter([PdqSignal, VideoMD5Signal], None):
        signals.extend(key for key, meta in delta.updates.items() if meta is not None)
    return sorted(set(signals))
