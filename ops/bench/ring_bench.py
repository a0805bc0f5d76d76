"""`hmas bench ring`: the ring of recent hashes: memory when full, and how long a search of newly
banked signals takes against it."""

from __future__ import annotations

import gc
import statistics
import sys
import time
from typing import Any

import numpy as np

from ops.bench.index_bench import machine, rss_mb
from pipeline.clock import now_ms
from pipeline.recent.ring import RecentRing


def run_ring_bench(n: int, signals: int = 1000) -> dict[str, Any]:
    rng = np.random.default_rng(3)
    gc.collect()
    before = rss_mb()
    ring = RecentRing(horizon_ms=10**12, cap=n, bucket_ms=3_600_000)
    start = time.perf_counter()
    now = now_ms()
    for i, code in enumerate(rng.integers(0, 256, (n, 32), dtype=np.uint8)):
        ring.add({"content_id": f"upload-{i:09d}", "content_type": "photo",
                  "signals": {"pdq": {"value": code.tobytes().hex(), "quality": 100}},
                  "source": "signals", "metadata": {}, "submitted_at": now, "hashed_at": now - (n - i)})
        if i and i % 1_000_000 == 0:
            print(f"[bench] ring: {i:,} hashes", file=sys.stderr, flush=True)
    fill_s = time.perf_counter() - start
    memory = rss_mb() - before
    queries = rng.integers(0, 256, (signals, 32), dtype=np.uint8)
    ring.search(queries[:1], 31)
    singles = []
    for q in queries[:20]:
        t = time.perf_counter()
        ring.search(q[None, :], 31)
        singles.append(time.perf_counter() - t)
    t = time.perf_counter()
    ring.search(queries, 31)
    batch_s = time.perf_counter() - t
    return {"n": n, "machine": machine(), "fill_s": round(fill_s, 1), "memory_mb": round(memory),
            "one_signal_ms": round(statistics.median(singles) * 1000, 1),
            "signals": signals, "signals_s": round(batch_s, 2),
            "ten_thousand_signals_s_extrapolated": round(batch_s * 10_000 / signals, 1)}
