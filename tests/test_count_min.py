"""Count-min sketch: never under, over by at most epsilon * N with probability 1 - delta."""

import math
from collections import Counter

import numpy as np
import pytest

from pipeline.state.count_min import CountMinSketch, MemoryCellStore, dimensions


def test_dimensions_follow_the_bound():
    assert dimensions(0.001, 0.01) == (math.ceil(math.e / 0.001), 5)
    with pytest.raises(ValueError):
        dimensions(0, 0.5)


def test_overestimate_stays_within_the_bound():
    epsilon, delta = 0.01, 0.01
    sketch = CountMinSketch(MemoryCellStore(), epsilon, delta)
    rng = np.random.default_rng(11)
    # Zipf-like stream over 20,000 keys, in 3 time buckets.
    keys = rng.zipf(1.3, 60_000) % 20_000
    truth = Counter()
    for i, k in enumerate(keys):
        sketch.add(f"s{k}", bucket=i % 3)
        truth[f"s{k}"] += 1
    total = len(keys)
    errors = [sketch.estimate(k, range(3)) - truth[k] for k in list(truth)[:2000]]
    assert min(errors) >= 0  # never underestimates
    over = sum(e > epsilon * total for e in errors)
    assert over <= delta * len(errors) + 3  # allowance for sampling noise on 2,000 keys


def test_window_sums_buckets_and_old_buckets_can_be_dropped():
    store = MemoryCellStore()
    sketch = CountMinSketch(store, 0.01, 0.01)
    for bucket in (1, 2, 3):
        sketch.add("sig", bucket, amount=bucket * 10)
    assert sketch.estimate("sig", [2, 3]) == 50
    assert store.drop_buckets_before(3) == 2
    assert sketch.estimate("sig", [1, 2, 3]) == 30
