"""Bank rules that the API, the CLI and the matcher share: upstream's matching_enabled_ratio."""

from __future__ import annotations

import pytest

from pipeline import topics as T
from pipeline.banks import bank_record, enabled_fields, matching_enabled_ratio


def bank(**config) -> dict:
    return T.BANKS.codec.conform(bank_record("B", **config))


@pytest.mark.parametrize("config, ratio", [
    ({}, 1.0),
    ({"enabled_ratio": 0.5}, 0.5),
    ({"enabled": False}, 0.0),  # disabled wins over any ratio
    ({"enabled": False, "enabled_ratio": 0.5}, 0.0),
    ({"enabled_ratio": 0.0}, 0.0),
])
def test_matching_enabled_ratio(config, ratio):
    assert matching_enabled_ratio(bank(**config)) == ratio


@pytest.mark.parametrize("ratio", [0.0, 0.25, 1.0, 1])
def test_enabled_fields_give_the_ratio_back(ratio):
    fields = enabled_fields(ratio)
    assert matching_enabled_ratio(bank(**fields)) == ratio and fields["enabled"] == (ratio > 0)

