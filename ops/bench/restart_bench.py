"""`hmas bench restart`: how long a worker with N banked signals takes to match again after a
restart (from its view snapshot, reading only the tail), beside a cold start from the topics."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from ops.bench.e2e_bench import load_bank
from ops.bench.harness import BenchPipeline, log
from ops.bench.index_bench import machine
from pipeline import topics as T
from pipeline.banks import bank_signal_record


def run_restart_bench(n: int, tail_share: float = 0.01, kill: bool = False,
                      guarantee: str = "at_least_once") -> dict[str, Any]:
    """With `kill`, the first worker is killed with SIGKILL rather than stopped: the restarted one
    then also rejoins its consumer group as the member that crashed (static membership). Both
    workers run with the processing `guarantee`."""
    with BenchPipeline(HMAS_PROCESSING_GUARANTEE=guarantee) as p:
        codes = load_bank(p.settings, n)
        worker = p.start_worker()
        cold_s = p.wait_until_matching(codes[0].tobytes().hex())
        log(f"restart: cold start matching after {cold_s:,.1f}s ({n:,} signals read from the topic)")
        snapshot_wait = time.perf_counter()
        while "bank view snapshot saved" not in p.worker_log():
            time.sleep(1)
        log(f"restart: first snapshot saved {time.perf_counter() - snapshot_wait:,.1f}s later")
        p.stop_worker(worker, crash=kill)

        tail = int(n * tail_share)
        rng = np.random.default_rng(8)
        fresh = rng.integers(0, 256, (tail // 2, 32), dtype=np.uint8)
        for i, code in enumerate(fresh):
            p.client.produce(T.BANK_SIGNALS, *bank_signal_record("BENCH", n + i + 1, "pdq", code.tobytes().hex()))
        for i in rng.choice(n, tail - len(fresh), replace=False):
            key, _ = bank_signal_record("BENCH", int(i) + 1, "pdq", codes[i].tobytes().hex())
            p.client.produce(T.BANK_SIGNALS, key, None)
        p.client.flush(600)
        log(f"restart: {tail:,} changes while the worker was down")

        started = time.perf_counter()
        p.start_worker(log_name="worker-2")
        warm_s = p.wait_until_matching(fresh[-1].tobytes().hex())
        log(f"restart: matching again (newest change included) after {warm_s:,.1f}s")
        loaded = [line for line in p.worker_log("worker-2").splitlines() if "loaded from snapshot" in line]
        snapshot_mb = sum(f.stat().st_size for f in (p.dir / "view-snapshots").glob("*.snapshot")) / 2**20
    return {
        "banked_signals": n, "machine": machine(), "processing_guarantee": guarantee,
        "stopped_by": "SIGKILL" if kill else "SIGTERM", "cold_start_s": round(cold_s, 1),
        "tail_changes": tail, "restart_s": round(warm_s, 1), "snapshot_mb": round(snapshot_mb),
        "snapshot_log": loaded[-1] if loaded else None, "wall_s": round(time.perf_counter() - started, 1),
    }
