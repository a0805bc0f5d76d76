"""An exchange of random PDQ signals for the exchange bench (like upstream HMA's load-test
exchange): a python-threatexchange `SignalExchangeAPI` that the real fetcher fetches like any other.

Its records are generated from a seed, delta by delta, so the bench can name the codes of any
delta (the last batch's, for the match-after-commit probes) without keeping them.
"""

from __future__ import annotations

import typing as t
from dataclasses import dataclass

import numpy as np
from threatexchange.exchanges import fetch_state as state
from threatexchange.exchanges.collab_config import CollaborationConfigWithDefaults
from threatexchange.exchanges.signal_exchange_api import SignalExchangeAPIWithSimpleUpdates
from threatexchange.signal_type.pdq.signal import PdqSignal
from threatexchange.signal_type.signal_base import SignalType

from connectors.exchanges.config import install_exchange_api

API_NAME = "random_pdq"
PDQ = PdqSignal.get_name()


@dataclass
class RandomPdqConfig(CollaborationConfigWithDefaults):
    signals: int = 1_000_000
    per_delta: int = 5000
    seed: int = 7


@dataclass
class RandomPdqCheckpoint(state.FetchCheckpointBase):
    fetched: int = 0

    def get_progress_timestamp(self) -> int:
        return self.fetched


def delta_codes(seed: int, delta: int, count: int) -> list[str]:
    """The PDQ codes (hex) of one delta."""
    raw = np.random.default_rng([seed, delta]).integers(0, 256, (count, 32), dtype=np.uint8).tobytes().hex()
    return [raw[i * 64:(i + 1) * 64] for i in range(count)]


@dataclass
class RandomPdqExchange(SignalExchangeAPIWithSimpleUpdates[RandomPdqConfig, RandomPdqCheckpoint,
                                                           state.FetchedSignalMetadata]):
    """`signals` random PDQ records in deltas of `per_delta`, resumable from its checkpoint."""

    collab: RandomPdqConfig

    @staticmethod
    def get_name() -> str:
        return API_NAME

    @staticmethod
    def get_config_cls() -> type[RandomPdqConfig]:
        return RandomPdqConfig

    @staticmethod
    def get_checkpoint_cls() -> type[RandomPdqCheckpoint]:
        return RandomPdqCheckpoint

    @staticmethod
    def get_record_cls() -> type[state.FetchedSignalMetadata]:
        return state.FetchedSignalMetadata

    @classmethod
    def for_collab(cls, collab: RandomPdqConfig) -> "RandomPdqExchange":
        return cls(collab)

    def fetch_iter(self, _types: t.Sequence[type[SignalType]],
                   checkpoint: RandomPdqCheckpoint | None) -> t.Iterator[state.FetchDelta]:
        c = self.collab
        done = checkpoint.fetched if checkpoint is not None else 0
        while done < c.signals:
            count = min(c.per_delta, c.signals - done)
            codes = delta_codes(c.seed, done // c.per_delta, count)
            done += count
            meta = state.FetchedSignalMetadata()
            updates = {(PDQ, code): meta for code in codes}
            yield state.FetchDelta(updates, RandomPdqCheckpoint(done))


def install() -> None:
    """Makes the exchange known to this process (the bench, and the fetcher it starts)."""
    install_exchange_api(RandomPdqExchange)
