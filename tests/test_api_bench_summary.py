"""`hmas bench api`'s summary: the best rate of each route whose p99 stayed within the target."""

import pytest

from ops.bench.api_bench import best_within, settings_of


def run(route: str, connections: int, rate: int, p99: float) -> dict:
    return {"route": route, "connections": connections, "requests_per_s": rate, "p50_ms": p99 / 3, "p99_ms": p99}


def test_the_best_rate_within_the_latency_bound_per_route():
    runs = [run("lookup", 16, 2_000, 15.0), run("lookup", 32, 3_500, 19.9), run("lookup", 64, 5_000, 66.0),
            run("raw_lookup", 16, 2_500, 25.0)]
    best = best_within(runs, p99_ms=20)
    assert best == {"lookup": {"connections": 32, "requests_per_s": 3_500, "p50_ms": 19.9 / 3, "p99_ms": 19.9}}


def test_a_variant_is_settings_of_this_project():
    assert settings_of("HMAS_API_EVENT_LOOP=asyncio, HMAS_API_SWITCH_INTERVAL_MS=5") == {
        "HMAS_API_EVENT_LOOP": "asyncio", "HMAS_API_SWITCH_INTERVAL_MS": "5"}
    for wrong in ("API_EVENT_LOOP=asyncio", "HMAS_API_EVENT_LOOP"):
        with pytest.raises(SystemExit, match="HMAS_KEY=VALUE"):
            settings_of(wrong)
