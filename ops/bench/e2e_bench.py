"""`hmas bench load` and `hmas bench e2e`: banks of random PDQ signals, and the whole pipeline's
throughput and upload-to-match latency against them, on a broker and workers of the bench's own."""

from __future__ import annotations

import re
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from ops.bench.harness import BenchPipeline, log
from ops.bench.index_bench import machine
from pipeline import topics as T
from pipeline.banks import bank_record, bank_signal_key, bank_signal_record
from pipeline.matching import bank_distance
from pipeline.client import Client
from pipeline.clock import now_ms
from pipeline.config import Settings
from pipeline.progress import ProgressBar
from pipeline.signal_types import signal_id
from pipeline.uploads import new_upload


def load_bank(settings: Settings, n: int, bank: str = "BENCH", seed: int = 11) -> np.ndarray:
    """Publish n random PDQ signals to hma.bank-signals (with progress); returns their codes.

    Each record is the first one's shape with its own content id, value and signal id: the first
    goes through the codec's checks, the rest are encoded directly (tens of thousands a second,
    so a 10M bank loads in minutes rather than the better part of an hour)."""
    client = Client(settings)
    client.produce(T.BANKS, bank, bank_record(bank))
    codes = np.random.default_rng(seed).integers(0, 256, (n, 32), dtype=np.uint8)
    progress = ProgressBar("load", n, "signals")
    template: dict[str, Any] | None = None
    for i, code in enumerate(codes):
        value = code.tobytes().hex()
        if template is None:
            key, template = bank_signal_record(bank, i + 1, "pdq", value)
            raw = T.BANK_SIGNALS.codec.encode(template)
        else:
            sid = signal_id("pdq", value)
            key = bank_signal_key(bank, "pdq", sid)
            raw = orjson.dumps({**template, "bank_content_id": i + 1, "signal_id": sid, "value": value})
        client.produce_raw(T.BANK_SIGNALS, key, raw)
        if i % 10_000 == 0:
            progress.update(i)
    client.flush(600)
    progress.update(n, final=True)
    return codes


def _uploads(codes: np.ndarray, count: int, prefix: str, rng: np.random.Generator) -> list[dict[str, Any]]:
    """Half near-duplicates of banked codes, half random."""
    out = []
    for i in range(count):
        code = codes[rng.integers(0, len(codes))].copy() if i % 2 == 0 else rng.integers(0, 256, 32, dtype=np.uint8)
        code[0] ^= 1
        out.append(new_upload(f"{prefix}-{i}", "photo", signals={"pdq": code.tobytes().hex()}))
    return out


def _wait_matched(settings: Settings, ids: set[str], timeout_s: float, label: str) -> dict[str, dict]:
    found: dict[str, dict] = {}
    progress = ProgressBar(label, len(ids), "uploads matched")
    for key, record in Client(settings).read(T.MATCHES, timeout_s=timeout_s):
        if key in ids:
            found[key] = record
            progress.update(len(found))
            if len(found) == len(ids):
                break
    progress.finish()
    return found


def _wait_acted(settings: Settings, ids: set[str], timeout_s: float) -> None:
    seen: set[str] = set()
    for key, _ in Client(settings).read(T.ACTIONS, timeout_s=timeout_s, raw=True):
        seen.add(key)
        if ids <= seen:
            return


SCAN_ROWS = 1_000_000  # banked codes scanned at a time by brute_force_check (32 MB of codes, 128 MB of counts)


def brute_force_check(codes: np.ndarray, queries: dict[str, str], matched: dict[str, dict], sample: int,
                      rng: np.random.Generator, bank: str = "BENCH") -> dict[str, int]:
    """The matched bank content ids of a sample of match records beside an exhaustive scan of
    every banked code (popcount of the XOR): what the shards and the merger answered together is
    what one index over the whole bank would have answered."""
    threshold = bank_distance(T.BANKS.codec.decode(T.BANKS.codec.encode(bank_record(bank))), "pdq")
    words = codes.view(np.uint64)  # (n, 4)
    ids = sorted(matched)
    agree = differ = hits = 0
    for cid in rng.choice(ids, size=min(sample, len(ids)), replace=False).tolist():
        record = matched[cid]
        query = np.frombuffer(bytes.fromhex(queries[cid]), dtype=np.uint64)
        expected = {start + int(i) + 1 for start in range(0, len(words), SCAN_ROWS)
                    for i in np.flatnonzero(np.bitwise_count(words[start:start + SCAN_ROWS] ^ query).sum(axis=1) <= threshold)}
        found = {h["bank_content_id"] for h in record["matches"] if h["bank"] == bank}
        hits += len(expected)
        agree, differ = (agree + 1, differ) if found == expected else (agree, differ + 1)
    return {"checked": agree + differ, "agree": agree, "differ": differ, "banked_within_threshold": hits,
            "threshold": threshold}


def caught_up_s(log_text: str, started_at: float) -> float | None:
    """Seconds from a worker's start to its bank view's "state caught up" line, by the log's clock."""
    found = re.search(r'ts=(\S+) [^\n]*msg="state caught up"', log_text)  # a line may start with a terminal escape
    if found is None:
        return None
    at = datetime.fromisoformat(found.group(1)).replace(tzinfo=timezone.utc).timestamp()
    return round(at - started_at, 1)


def _rss_mb(pid: int) -> float:
    """A process's resident memory now (Linux), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def run_e2e_bench(n: int, uploads: int, rate: int, seconds: int, workers: int = 1, shards: int = 1,
                  guarantees: tuple[str, ...] = ("at_least_once",)) -> dict[str, Any]:
    """One bank and broker; for each processing guarantee in turn, the same group's workers
    (restarted with that guarantee) take a burst and a paced run of fresh uploads. Replica mode
    (shards=1): `workers` main workers. Shard mode: `workers` main workers (the merger) and one
    shard worker per index shard."""
    rng = np.random.default_rng(2)
    with BenchPipeline(HMAS_INDEX_SHARDS=str(shards)) as p:
        codes = load_bank(p.settings, n)
        runs = {guarantee: _e2e_run(p, codes, uploads, rate, seconds, workers, shards, guarantee, rng)
                for guarantee in guarantees}
    report: dict[str, Any] = {"banked_signals": n, "machine": machine(), "workers": workers, "shards": shards}
    if len(runs) == 1:
        return {**report, **next(iter(runs.values()))}
    return {**report, "runs": runs}


def _e2e_run(p: BenchPipeline, codes: np.ndarray, uploads: int, rate: int, seconds: int, workers: int, shards: int,
             guarantee: str, rng: np.random.Generator) -> dict[str, Any]:
    settings, client = p.settings, p.client
    env = {"HMAS_PROCESSING_GUARANTEE": guarantee}
    started_at = time.time()
    started = [p.start_worker(log_name=f"worker-{i}-{guarantee}", data_dir=p.dir / f"replica-{i}", env=env)
               for i in range(workers)]
    if shards > 1:
        started += [p.start_worker("--shard", str(k), log_name=f"shard-{k}-{guarantee}", env=env) for k in range(shards)]
    ready_s = p.wait_until_matching(codes[0].tobytes().hex(), timeout_s=max(1800, len(codes) / 500))
    catch_up = {p.log_names[w.pid]: caught_up_s(p.worker_log(p.log_names[w.pid]), started_at) for w in started}
    rss_ready = {p.log_names[w.pid]: _rss_mb(w.pid) for w in started}
    log(f"e2e: {workers} worker(s), {shards} shard(s), {guarantee}, matching after {ready_s:,.0f}s "
        f"({len(codes):,} signals)")

    burst = _uploads(codes, uploads, f"burst-{guarantee}", rng)
    start = time.perf_counter()
    for u in burst:
        client.produce(T.UPLOADS, u["content_id"], u)
    client.flush()
    matched = _wait_matched(settings, {u["content_id"] for u in burst}, 600, "e2e burst")
    throughput = len(matched) / (time.perf_counter() - start)
    log(f"e2e: {len(matched):,} uploads matched at {throughput:,.0f}/s ({guarantee})")
    answers = brute_force_check(codes, {u["content_id"]: u["signals"]["pdq"] for u in burst}, matched, 100, rng)
    log(f"e2e: answers beside a scan of the whole bank: {answers}")
    acted = {cid for cid, r in matched.items() if any(h["status"] == "match" for h in r["matches"])}
    _wait_acted(settings, acted, timeout_s=600)  # the burst's actions and flood counts are done

    paced = _uploads(codes, rate * seconds, f"paced-{guarantee}", rng)
    progress = ProgressBar(f"e2e at {rate:,}/s", len(paced), "uploads sent")
    start = time.perf_counter()
    for i, u in enumerate(paced):
        progress.update(i)
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        u["submitted_at"] = now_ms()
        client.produce(T.UPLOADS, u["content_id"], u)
    client.flush()
    progress.update(len(paced), final=True)
    timed = _wait_matched(settings, {u["content_id"] for u in paced}, 600, "e2e paced")
    latency = np.array([r["matched_at"] - r["submitted_at"] for r in timed.values()], dtype=float)
    rss = {p.log_names[w.pid]: _rss_mb(w.pid) for w in started}
    for worker in started:
        p.stop_worker(worker)
    return {
        "processing_guarantee": guarantee, "worker_ready_s": round(ready_s, 1), "caught_up_s": catch_up,
        "rss_mb_ready": rss_ready, "rss_mb": rss, "answers_beside_scan": answers,
        "burst_uploads": uploads, "burst_matched": len(matched), "uploads_per_s": round(throughput),
        "paced_rate_per_s": rate, "paced_seconds": seconds, "paced_matched": len(timed),
        "latency_ms_p50": round(float(np.percentile(latency, 50)), 1),
        "latency_ms_p99": round(float(np.percentile(latency, 99)), 1),
    }
