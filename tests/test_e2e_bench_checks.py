"""The e2e bench's own checks: answers beside a scan of the whole bank, and catch-up times read
from a worker's log."""

from __future__ import annotations

import numpy as np

from ops.bench.e2e_bench import brute_force_check, caught_up_s


def test_brute_force_check_counts_agreeing_and_differing_answers() -> None:
    rng = np.random.default_rng(5)
    codes = rng.integers(0, 256, (2000, 32), dtype=np.uint8)
    near = codes[41].copy()
    near[0] ^= 1
    far = rng.integers(0, 256, 32, dtype=np.uint8)
    queries = {"near": near.tobytes().hex(), "far": far.tobytes().hex(), "wrong": near.tobytes().hex()}
    hit = {"bank": "BENCH", "bank_content_id": 42}
    matched = {"near": {"matches": [hit]}, "far": {"matches": []}, "wrong": {"matches": []}}
    report = brute_force_check(codes, queries, matched, 10, rng)
    assert report["checked"] == 3
    assert (report["agree"], report["differ"]) == (2, 1)
    assert report["banked_within_threshold"] == 2  # row 41 (content id 42), for "near" and "wrong"


def test_caught_up_s_reads_the_log_clock() -> None:
    log_text = ('ts=2026-12-02T16:12:59 level=info logger=x msg="reading state in bulk" records=10\n'
                '\x1b[?25hts=2026-12-02T16:16:21 level=info logger=x msg="state caught up" view=worker-state\n')
    started = np.datetime64("2026-12-02T16:12:50").astype("datetime64[s]").astype(int)
    assert caught_up_s(log_text, float(started)) == 211.0
    assert caught_up_s(log_text.splitlines()[0], float(started)) is None
