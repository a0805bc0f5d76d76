"""Bank rules that the API, the CLI and the matcher share: upstream's matching_enabled_ratio and the
one validation of a bank configuration (`hmas bank create` refuses what the API refuses)."""

from __future__ import annotations

import pytest

from pipeline import topics as T
from pipeline.admin import ensure_topics
from pipeline.banks import (
    InvalidBank, bank_record, check_enabled_ratio, checked_bank, enabled_fields, matching_enabled_ratio,
)
from pipeline.state.log_reader import read_to_end
from tests.pipeline_env import hmas, pipeline_env, settings_from


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


def test_an_enabled_ratio_is_a_number_from_0_to_1():
    assert [check_enabled_ratio(v) for v in (0, 0.5, 1)] == [0.0, 0.5, 1.0]
    for bad in (-0.1, 1.5, True, "0.5", None):
        with pytest.raises(ValueError, match="enabled_ratio must be a number from 0 to 1"):
            check_enabled_ratio(bad)


@pytest.mark.parametrize("config, known, problem", [
    ({"name": "lower"}, (), "must be upper case"),
    ({"name": "B", "enabled_ratio": 2}, (), "enabled_ratio must be a number from 0 to 1"),
    ({"name": "B", "distances": {"sha1": 3}}, (), "No such SignalType 'sha1'"),
    ({"name": "B", "distances": {"pdq": 300}}, (), "distance for pdq must be an integer from 0 to 256"),
    ({"name": "B", "distances": {"pdq": True}}, (), "distance for pdq must be an integer"),
    ({"name": "B", "distances": ["pdq"]}, (), "distances must map signal types"),
    ({"name": "B", "suppressed_by": ["NEG"]}, ("OTHER",), "bank 'NEG' named in the configuration does not exist"),
    ({"name": "B", "confirmed_bank": "GONE"}, (), "bank 'GONE' named in the configuration does not exist"),
    ({"name": "B", "action": 5}, (), "invalid bank configuration"),
])
def test_checked_bank_refuses(config, known, problem):
    with pytest.raises(InvalidBank, match=problem):
        checked_bank(config, known)


def test_checked_bank_conforms_what_it_accepts():
    record = checked_bank(bank_record("B", distances={"pdq": 16}, suppressed_by=["NEG", "B"], confirmed_bank="C"),
                          {"NEG", "C"})
    assert record == T.BANKS.codec.conform(record) and record["distances"] == {"pdq": 16}


@pytest.mark.kafka
def test_the_cli_refuses_a_bad_bank_with_a_message_and_writes_nothing(kafka_broker, tmp_path):
    env = pipeline_env(kafka_broker.bootstrap, tmp_path / "state")
    settings = settings_from(env)
    ensure_topics(kafka_broker.bootstrap, settings)
    for args, problem in [
        (("lower",), "must be upper case"),
        (("GOOD", "--distance", "pdq:300"), "distance for pdq must be an integer from 0 to 256"),
        (("GOOD", "--distance", "sha1:3"), "No such SignalType 'sha1'"),
        (("GOOD", "--suppressed-by", "NEG"), "bank 'NEG' named in the configuration does not exist"),
    ]:
        result = hmas(env, "bank", "create", *args, check=False)
        assert result.returncode == 2 and problem in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr
    assert [key for key, _ in read_to_end(settings, T.BANKS)] == []
    hmas(env, "bank", "create", "NEG")
    hmas(env, "bank", "create", "GOOD", "--suppressed-by", "NEG", "--distance", "pdq:20")
    banks = {key: record for key, record in read_to_end(settings, T.BANKS)}
    assert sorted(banks) == ["GOOD", "NEG"] and banks["GOOD"]["suppressed_by"] == ["NEG"]
