"""Sampling by enabled_ratio: the coin of a content id, and the rule a bank and a signal type share."""

import pytest

from pipeline.sampling import content_coin, sampled_out

IDS = [f"upload-{i}" for i in range(4000)]


def test_the_coin_is_fixed_by_the_content_id_and_in_zero_one():
    coins = [content_coin(c) for c in IDS]
    assert coins == [content_coin(c) for c in IDS]
    assert all(0 <= c < 1 for c in coins) and len(set(coins)) == len(IDS)


@pytest.mark.parametrize("ratio", [0.1, 0.5, 0.9])
def test_a_fraction_keeps_about_that_share_of_content_ids(ratio):
    kept = sum(sampled_out(ratio, c) is None for c in IDS)
    assert abs(kept / len(IDS) - ratio) < 0.04  # 4000 draws: the binomial spread is under 0.008


def test_zero_keeps_nothing_and_one_keeps_everything():
    assert all(sampled_out(0.0, c) is not None for c in IDS)
    assert all(sampled_out(1.0, c) is None for c in IDS)


def test_a_sampled_out_content_reports_its_coin_and_a_larger_ratio_keeps_a_superset():
    out = [c for c in IDS if sampled_out(0.3, c) is not None]
    assert all(sampled_out(0.3, c) == content_coin(c) >= 0.3 for c in out)
    kept_small = {c for c in IDS if sampled_out(0.3, c) is None}
    kept_large = {c for c in IDS if sampled_out(0.6, c) is None}
    assert kept_small < kept_large


def test_no_content_id_keeps_every_fraction_and_still_not_zero():
    assert sampled_out(0.01, None) is None and sampled_out(1.0, None) is None
    assert sampled_out(0.0, None) is not None
