"""Flood detection logic: limit, window, baseline multiple, allowance after release."""

from pipeline.flood import FloodDetector
from pipeline.state.count_min import CountMinSketch, MemoryCellStore

LIMIT = {"max_matches": 100, "window_ms": 60_000, "baseline_multiple": None}


def detector() -> FloodDetector:
    return FloodDetector(CountMinSketch(MemoryCellStore(), 0.001, 0.01), bucket_ms=10_000, baseline_windows=4)


def burst(det, signal, n, start_ms, flood, allowance=0, step_ms=1):
    verdicts = [det.observe(signal, f"c{i}", start_ms + i * step_ms, flood, allowance) for i in range(n)]
    return [i for i, v in enumerate(verdicts) if v is not None], verdicts


def test_quarantine_comes_right_after_the_limit():
    det = detector()
    fired, verdicts = burst(det, "sig", 150, 1_000_000, LIMIT)
    assert fired[0] == 100  # the 101st hit crosses "more than 100"
    assert verdicts[100].count == 101 and verdicts[100].sample_content_ids[-1] == "c100"


def test_hits_outside_the_window_do_not_count():
    det = detector()
    burst(det, "sig", 90, 0, LIMIT)
    fired, _ = burst(det, "sig", 90, 200_000, LIMIT)  # two windows later
    assert fired == []


def test_banks_without_a_limit_never_quarantine_and_other_signals_are_apart():
    det = detector()
    assert burst(det, "sig", 500, 0, None)[0] == []
    assert burst(det, "other", 100, 0, LIMIT)[0] == []


def test_baseline_multiple_lets_steady_popular_signals_through():
    det = detector()
    flood = {**LIMIT, "baseline_multiple": 3.0}
    for w in range(4):  # 150 per window in the four windows before
        burst(det, "popular", 150, w * 60_000, None, step_ms=10)
    fired, _ = burst(det, "popular", 300, 4 * 60_000, flood, step_ms=10)
    assert fired == []  # 300 <= 3 x baseline of ~150
    fired, _ = burst(det, "popular", 300, 4 * 60_000 + 3_000, flood, step_ms=10)
    assert fired  # 600 in the window > 3 x baseline


def test_release_allowance_resets_the_limit():
    det = detector()
    burst(det, "sig", 500, 0, None)  # counted while quarantined
    allowance = det.allowance("sig", released_at=1234, at_ms=600, window_ms=60_000)
    assert allowance == 500 and det.allowance("sig", 1234, 900, 60_000) == 500  # fixed at the first sight
    fired, _ = burst(det, "sig", 101, 1000, LIMIT, allowance=allowance)
    assert fired == [100]
    assert det.allowance("sig", None, 2000, 60_000) == 0


def test_a_matcher_judges_a_replayed_hit_as_before_without_counting_it_again():
    from pipeline.flood import LocalFloodGuard

    guard = LocalFloodGuard(0.001, 0.01, bucket_ms=10_000)
    limit = {**LIMIT, "max_matches": 2}
    first = [guard.over_limit("sig", f"c{i}", 1_000_000 + i, limit, event_id=f"hit-{i}") for i in range(3)]
    assert [v is not None for v in first] == [False, False, True]
    replayed = [guard.over_limit("sig", f"c{i}", 1_000_100 + i, limit, event_id=f"hit-{i}") for i in range(3)]
    assert replayed == first
    assert guard.detector.window_count("sig", 1_000_200, limit["window_ms"]) == 3
    assert guard.over_limit("sig", "c-new", 1_000_300, limit, event_id="hit-new") is not None
