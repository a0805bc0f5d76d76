"""`hmas bench soak`: the worker's resident memory while uploads flow and the bank churns, and
how soon bank changes reach matching.

Every second: `rate` pre-hashed uploads (half near-duplicates of banked codes) and churn/60 of
the bank replaced (as many removals as additions, so the bank keeps its size). Every 10 s the
worker's RSS is sampled; after warm-up the growth is measured against the first minute's median.
Every 20 s a visibility probe: a new signal is banked and uploads of it are sent every 50 ms
until one matches; then it is disabled (disable_until_ts 0) and uploads are sent until one is no
longer an effective match, then re-enabled until one is again, then removed until none is: the
time from each change to the match record of the first upload that sees it bounds the change's
visibility from above (that upload's own trip through the pipeline is included).
"""

from __future__ import annotations

import statistics
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from ops.bench.e2e_bench import load_bank
from ops.bench.harness import BenchPipeline, log
from ops.bench.index_bench import machine, rss_mb
from pipeline import topics as T
from pipeline.banks import bank_record, bank_signal_record
from pipeline.client import Client
from pipeline.clock import now_ms
from pipeline.progress import ProgressBar
from pipeline.uploads import new_upload

SAMPLE_S = 10
PROBE_EVERY_S = 20
PROBE_STEP_S = 0.05


class MatchWatcher(threading.Thread):
    """Follows hma.matches from its end and remembers each probe upload's result."""

    def __init__(self, settings) -> None:
        super().__init__(daemon=True)
        self.settings = settings
        self.results: dict[str, tuple[bool, int]] = {}  # probe content id -> (effective match, matched_at)
        self.stop = threading.Event()

    def run(self) -> None:
        for key, record in Client(self.settings).read(T.MATCHES, from_beginning=False, timeout_s=10**6):
            if key and key.startswith("vis-"):
                self.results[key] = (any(h["status"] == "match" for h in record["matches"]), record["matched_at"])
            if self.stop.is_set():
                return


def _probe(p: BenchPipeline, watcher: MatchWatcher, code_hex: str, key: str, record: dict | None,
           want_match: bool, tag: str) -> float:
    """Seconds from producing the bank change to the match record of the first upload that sees it.

    An upper bound of the change's visibility: it includes that upload's own trip through the
    pipeline. Uploads of the code are sent every 50 ms from the change on.
    """
    changed_ms = now_ms()
    p.client.produce(T.BANK_SIGNALS, key, record)
    p.client.flush()
    sent: list[str] = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        cid = f"vis-{tag}-{len(sent)}"
        sent.append(cid)
        p.client.produce(T.UPLOADS, cid, new_upload(cid, "photo", signals={"pdq": code_hex}))
        p.client.flush()
        for done in sent:
            result = watcher.results.get(done)
            if result is not None and result[0] is want_match:
                return max(0.0, (result[1] - changed_ms) / 1000)
        time.sleep(PROBE_STEP_S)
    return float("inf")


def run_soak_bench(n: int, minutes: float, churn_per_min: float, rate: int, warmup_min: float,
                   plot_path: str) -> dict[str, Any]:
    rng = np.random.default_rng(12)
    with BenchPipeline() as p:
        codes = load_bank(p.settings, n)
        p.client.produce(T.BANKS, "VISIBLE", bank_record("VISIBLE"))
        per_s = max(1, int(n * churn_per_min / 60))
        total_s = (warmup_min + minutes) * 60
        # every code ever banked, by bank content id - 1; live_ids: the ones banked now
        all_codes = np.concatenate([codes, rng.integers(0, 256, (per_s * int(total_s + 1), 32), dtype=np.uint8)])
        live_ids = np.arange(n)
        next_id = n
        worker = p.start_worker()
        ready_s = p.wait_until_matching(codes[0].tobytes().hex())
        log(f"soak: worker matching after {ready_s:,.0f}s")
        watcher = MatchWatcher(p.settings)
        watcher.start()
        samples: list[tuple[float, float]] = []
        visible: dict[str, list[float]] = {"add": [], "disable": [], "enable": [], "remove": []}
        progress = ProgressBar("soak", int(total_s), "seconds")
        start = time.perf_counter()
        last_sample = last_probe = -1e9
        second = 0
        while (elapsed := time.perf_counter() - start) < total_s:
            for i in range(rate):  # this second's uploads
                code = all_codes[live_ids[rng.integers(0, n)]].copy() if i % 2 == 0 else rng.integers(0, 256, 32, dtype=np.uint8)
                code[0] ^= 1
                cid = f"soak-{second}-{i}"
                p.client.produce(T.UPLOADS, cid, new_upload(cid, "photo", signals={"pdq": code.tobytes().hex()}))
            slots = rng.choice(n, per_s, replace=False)  # this second's churn: remove, and bank as many new
            for idx in live_ids[slots].tolist():
                key, _ = bank_signal_record("BENCH", idx + 1, "pdq", all_codes[idx].tobytes().hex())
                p.client.produce(T.BANK_SIGNALS, key, None)
            live_ids[slots] = np.arange(next_id, next_id + per_s)
            for idx in range(next_id, next_id + per_s):
                p.client.produce(T.BANK_SIGNALS, *bank_signal_record("BENCH", idx + 1, "pdq", all_codes[idx].tobytes().hex()))
            next_id += per_s
            p.client.flush()
            if elapsed - last_sample >= SAMPLE_S:
                last_sample = elapsed
                samples.append((elapsed, rss_mb(worker.pid)))
            if elapsed >= warmup_min * 60 and elapsed - last_probe >= PROBE_EVERY_S:
                last_probe = elapsed
                code = rng.integers(0, 256, 32, dtype=np.uint8).tobytes().hex()
                key, record = bank_signal_record("VISIBLE", second + 1, "pdq", code)
                for change, value, effective in (("add", record, True), ("disable", {**record, "disable_until_ts": 0}, False),
                                                 ("enable", record, True), ("remove", None, False)):
                    visible[change].append(_probe(p, watcher, code, key, value, effective, f"{change}-{second}"))
            progress.update(second, f"worker RSS {samples[-1][1]:,.0f} MB")
            second += 1
            sleep = start + second - time.perf_counter()
            if sleep > 0:
                time.sleep(sleep)
        behind_s = time.perf_counter() - start - total_s
        progress.update(second, f"worker RSS {samples[-1][1]:,.0f} MB", final=True)
        watcher.stop.set()
    warm = [mb for t, mb in samples if warmup_min * 60 <= t < (warmup_min + 1) * 60]
    after = [mb for t, mb in samples if t >= warmup_min * 60]
    baseline = statistics.median(warm)
    end = statistics.median([mb for t, mb in samples if t >= total_s - 120])
    Path(plot_path).write_text(rss_svg(samples, warmup_min * 60, n, churn_per_min, rate))
    return {
        "banked_signals": n, "machine": machine(), "minutes_after_warmup": minutes, "warmup_minutes": warmup_min,
        "churn_per_minute": churn_per_min, "bank_changes_per_s": 2 * per_s, "uploads_per_s": rate,
        "worker_ready_s": round(ready_s, 1), "seconds_behind_schedule_at_end": round(behind_s, 1),
        "rss_mb_after_warmup": round(baseline), "rss_mb_end": round(end), "rss_mb_max": round(max(after)),
        "rss_growth_pct": round(100 * (end - baseline) / baseline, 2),
        **{f"{change}_visible_s": _summary(times) for change, times in visible.items()},
        "plot": plot_path, "samples": [(round(t), round(mb)) for t, mb in samples],
    }


def _summary(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    return {"probes": len(values), "median": round(statistics.median(values), 3), "max": round(max(values), 3)}


def rss_svg(samples: list[tuple[float, float]], warmup_s: float, n: int, churn: float, rate: int) -> str:
    """A line chart of RSS over time (SVG, no plotting library needed)."""
    w, h, pad = 720, 300, 50
    t_max = max(t for t, _ in samples) or 1
    lo = min(mb for _, mb in samples) * 0.95
    hi = max(mb for _, mb in samples) * 1.05
    x = lambda t: pad + (w - 2 * pad) * t / t_max  # noqa: E731
    y = lambda mb: h - pad - (h - 2 * pad) * (mb - lo) / (hi - lo)  # noqa: E731
    points = " ".join(f"{x(t):.1f},{y(mb):.1f}" for t, mb in samples)
    ticks = "".join(
        f'<text x="{pad - 6}" y="{y(v):.1f}" font-size="11" text-anchor="end">{v:,.0f}</text>'
        for v in np.linspace(lo, hi, 5)
    ) + "".join(
        f'<text x="{x(m * 60):.1f}" y="{h - pad + 16}" font-size="11" text-anchor="middle">{m:.0f}</text>'
        for m in np.linspace(0, t_max / 60, 7)
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif">'
        f'<rect width="{w}" height="{h}" fill="white"/>'
        f'<text x="{w / 2}" y="20" font-size="13" text-anchor="middle">worker RSS (MB), {n:,} signals, '
        f'{churn:.0%} churn/min, {rate:,} uploads/s; minutes on the x axis</text>'
        f'<line x1="{x(warmup_s):.1f}" y1="{pad}" x2="{x(warmup_s):.1f}" y2="{h - pad}" stroke="#aaa" stroke-dasharray="4"/>'
        f'<text x="{x(warmup_s) + 4:.1f}" y="{pad + 12}" font-size="11" fill="#777">warm-up ends</text>'
        f'<polyline fill="none" stroke="#1f77b4" stroke-width="2" points="{points}"/>'
        f'<line x1="{pad}" y1="{h - pad}" x2="{w - pad}" y2="{h - pad}" stroke="black"/>'
        f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{h - pad}" stroke="black"/>{ticks}</svg>'
    )
