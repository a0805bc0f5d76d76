"""`hmas bench faults`: the pipeline's accounting when its worker or its broker is killed.

Each scenario runs a workload of pre-hashed uploads (half of them matching a bank of 50 signals)
and photo uploads (inline, all matching), injects its fault while the uploads flow, waits until
every upload came out, and counts what reached the output topics as a consumer reading with
`isolation_level=read_committed` sees them (the Client's reader, librdkafka's default):

- hma.hashes and hma.matches: one record per upload, by content id (missing, extra copies);
- hma.actions: one per matching upload (the bank's one action);
- hma.flood-hits: one per matching upload;
- flood counts: the flood agent's count-min sketch, read back from its table's changelog, per
  signal beside the true number of distinct hits: the overestimate must stay within the
  sketch's error (epsilon * all hits counted), so no hit is counted twice and none lost;
- stalls: for each fault, how long after it the first upload was matched again (from the match
  records' `matched_at`).

Scenarios: `worker-kills` (SIGKILL at random moments, restarted at once), `broker-kill` (the
broker SIGKILLed and restarted mid-stream). Each runs in each processing guarantee asked for.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from ops.bench.harness import BenchPipeline, log
from pipeline import topics as T
from pipeline.app import faust_app_id
from pipeline.banks import bank_record, bank_signal_record
from pipeline.client import Client
from pipeline.config import PROJECT_ROOT, Settings
from pipeline.services.output import PARTITIONER
from pipeline.state.count_min import CountMinSketch, MemoryCellStore
from pipeline.state.faust_cells import CHUNK
from pipeline.uploads import new_upload

BANK, ACTION = "FAULTS", "remove"
PHOTO = PROJECT_ROOT / "tests" / "media" / "pdq" / "data" / "bridge-mods" / "aaa-orig.jpg"
PHOTO_PDQ = "f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22"


@dataclass
class Workload:
    """The uploads of a run, in the order they are sent, and which of them must match."""

    uploads: list[dict[str, Any]]
    matching: set[str]
    bank_codes: list[str]

    @classmethod
    def make(cls, prehashed: int, photos: int, signals: int = 50, seed: int = 14,
             photo_url: str | None = None) -> "Workload":
        """`prehashed` uploads, every second one a near-duplicate of a banked signal, and `photos`
        photo uploads of the banked photo spread among them (inline, or by `photo_url`)."""
        rng = np.random.default_rng(seed)
        codes = rng.integers(0, 256, (signals, 32), dtype=np.uint8)
        uploads, matching = [], set()
        photo = None if photo_url else PHOTO.read_bytes()
        every = max(1, prehashed // max(photos, 1))
        photo_no = 0
        for i in range(prehashed):
            if i % 2 == 0:
                code = codes[i // 2 % signals].copy()
                code[i % 32] ^= 1
                matching.add(f"pre-{i}")
            else:
                code = rng.integers(0, 256, 32, dtype=np.uint8)
            uploads.append(new_upload(f"pre-{i}", "photo", signals={"pdq": code.tobytes().hex()}))
            if i % every == 0 and photo_no < photos:
                cid = f"photo-{photo_no}"
                uploads.append(new_upload(cid, "photo", url=photo_url, content=photo))
                matching.add(cid)
                photo_no += 1
        return cls(uploads, matching, [code.tobytes().hex() for code in codes])

    @property
    def content_ids(self) -> set[str]:
        return {u["content_id"] for u in self.uploads}


def create_bank(client: Client, workload: Workload) -> None:
    """The bank the workload matches: its signals and the photo's PDQ, one action."""
    client.produce(T.BANKS, BANK, bank_record(BANK, action=ACTION))
    for i, code in enumerate([*workload.bank_codes, PHOTO_PDQ]):
        client.produce(T.BANK_SIGNALS, *bank_signal_record(BANK, i + 1, "pdq", code))
    client.flush()


class Sender(threading.Thread):
    """Produces the workload's uploads at a steady rate (uploads/s) in the background."""

    def __init__(self, settings: Settings, uploads: list[dict[str, Any]], rate: float) -> None:
        super().__init__(daemon=True)
        self.settings, self.uploads, self.rate = settings, uploads, rate
        self.error: BaseException | None = None
        self.sent = 0

    @property
    def duration_s(self) -> float:
        return len(self.uploads) / self.rate

    def run(self) -> None:
        try:
            client = Client(self.settings)
            start = time.perf_counter()
            for i, upload in enumerate(self.uploads):
                delay = start + i / self.rate - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                client.produce(T.UPLOADS, upload["content_id"], upload)
                self.sent = i + 1
            client.flush(600)
        except BaseException as exc:  # the scenario reports it
            self.error = exc


def read_keys(settings: Settings, spec: T.TopicSpec, key_of: Callable[[str | None, dict], str | None] = lambda k, r: k,
              idle_timeout_s: float = 5) -> Counter:
    """How many records each key (or `key_of`) has in a topic, as read_committed sees them."""
    counts: Counter = Counter()
    for key, record in Client(settings).read(spec, idle_timeout_s=idle_timeout_s):
        counts[key_of(key, record)] += 1
    return counts


def wait_all_matched(settings: Settings, ids: set[str], timeout_s: float, alive: Callable[[], None]) -> float:
    """Seconds until every id has a match record (`alive` raises when a process died)."""
    started = time.perf_counter()
    seen: set[str] = set()
    while time.perf_counter() - started < timeout_s:
        for key, _ in Client(settings).read(T.MATCHES, timeout_s=10, raw=True):
            seen.add(key)
        if ids <= seen:
            return time.perf_counter() - started
        alive()
    raise TimeoutError(f"{len(ids - seen):,} of {len(ids):,} uploads unmatched after {timeout_s:.0f}s")


def stalls_after(settings: Settings, faults_ms: list[int]) -> list[float]:
    """For each fault (a time in ms), seconds until the next match record's `matched_at`."""
    matched = sorted(record["matched_at"] for _, record in Client(settings).read(T.MATCHES, idle_timeout_s=5))
    stalls = []
    for fault in faults_ms:
        later = next((at for at in matched if at >= fault), None)
        stalls.append(round((later - fault) / 1000, 1) if later is not None else None)
    return stalls


def flood_sketch_errors(settings: Settings, hits_per_signal: dict[str, int]) -> dict[str, Any]:
    """The flood agent's counts (its sketch cells, from the flood-cells table's changelog) beside
    the true distinct hits of each signal."""
    topic = f"{faust_app_id(settings)}-flood-cells-changelog"
    latest: dict[str, bytes | None] = {}
    for key, value in Client(settings).read(topic, raw=True, idle_timeout_s=5):
        latest[key.strip('"')] = value
    stores: dict[int, MemoryCellStore] = defaultdict(MemoryCellStore)
    buckets: set[int] = set()
    for key, value in latest.items():
        if value is None or len(value) != CHUNK * 8:
            continue
        partition, bucket, row, chunk = (int(part) for part in key.split(":"))
        buckets.add(bucket)
        for column, count in enumerate(np.frombuffer(value, dtype="<i8")):
            if count:
                stores[partition].add((bucket, row, chunk * CHUNK + column), int(count))
    partitions = list(range(settings.topic_partitions))
    total = sum(hits_per_signal.values())
    over = {}
    for sid, true in hits_per_signal.items():
        partition = PARTITIONER(sid.encode(), partitions, partitions)
        sketch = CountMinSketch(stores[partition], settings.flood_epsilon, settings.flood_delta)
        over[sid] = sketch.estimate(sid, buckets) - true
    return {
        "signals": len(over), "hits": total, "error_bound": settings.flood_epsilon * total,
        "max_over": max(over.values(), default=0), "min_over": min(over.values(), default=0),
        "off_signals": {sid: (hits_per_signal[sid], o) for sid, o in over.items() if o},  # (true hits, estimate - true)
        "within_bound": all(0 <= o <= settings.flood_epsilon * total for o in over.values()),
    }


def account(settings: Settings, workload: Workload) -> dict[str, Any]:
    """What the output topics hold for the workload: per topic, uploads missing and extra copies."""
    ids, matching = workload.content_ids, workload.matching
    expected = {T.HASHES: ids, T.MATCHES: ids, T.ACTIONS: matching}
    report: dict[str, Any] = {}
    for spec, want in expected.items():
        counts = read_keys(settings, spec)
        report[spec.suffix] = _tally(counts, want)
        report[spec.suffix]["examples"] = _duplicate_examples(settings, spec, counts)
    by_upload = Counter()
    per_signal: dict[str, set[str]] = defaultdict(set)
    for key, record in Client(settings).read(T.FLOOD_HITS, idle_timeout_s=5):
        by_upload[record["content_id"]] += 1
        per_signal[record["signal_id"]].add(record["content_id"])
    report[T.FLOOD_HITS.suffix] = _tally(by_upload, matching)
    report["flood_counts"] = flood_sketch_errors(settings, {sid: len(c) for sid, c in per_signal.items()})
    return report


def _duplicate_examples(settings: Settings, spec: T.TopicSpec, counts: Counter, limit: int = 3) -> dict[str, list]:
    """A few keys written more than once: each copy's event id and when it was written."""
    keys = {key for key, n in counts.items() if n > 1}
    keys = set(sorted(keys)[:limit])
    copies: dict[str, list] = defaultdict(list)
    if keys:
        for key, record in Client(settings).read(spec, idle_timeout_s=5):
            if key in keys:
                copies[key].append((record.get("event_id"), record.get("hashed_at") or record.get("matched_at")))
    return dict(copies)


def _tally(counts: Counter, want: set[str]) -> dict[str, int]:
    return {
        "expected": len(want),
        "missing": sum(1 for cid in want if counts[cid] == 0),
        "duplicated_uploads": sum(1 for cid in want if counts[cid] > 1),
        "extra_copies": sum(counts[cid] - 1 for cid in want if counts[cid] > 1),
    }


def exactly_once_held(report: dict[str, Any]) -> bool:
    """Every upload's records exactly once, flood counts within the sketch's error."""
    topics = [report[spec.suffix] for spec in (T.HASHES, T.MATCHES, T.ACTIONS, T.FLOOD_HITS)]
    return all(t["missing"] == 0 and t["extra_copies"] == 0 for t in topics) and report["flood_counts"]["within_bound"]


def nothing_lost(report: dict[str, Any]) -> bool:
    topics = [report[spec.suffix] for spec in (T.HASHES, T.MATCHES, T.ACTIONS, T.FLOOD_HITS)]
    return all(t["missing"] == 0 for t in topics) and report["flood_counts"]["within_bound"]


@dataclass
class Run:
    """One scenario's pipeline, workload and faults."""

    pipeline: BenchPipeline
    workload: Workload
    faults_ms: list[int] = field(default_factory=list)

    def alive(self) -> None:
        for worker in self.pipeline.workers:
            if worker.poll() is not None:
                raise RuntimeError(f"worker exited with {worker.returncode}; {self.pipeline.log_excerpt(worker)}")

    def finish(self, sender: Sender, timeout_s: float) -> dict[str, Any]:
        sender.join()
        if sender.error is not None:
            raise sender.error
        settings = self.pipeline.settings
        try:
            drained_s = wait_all_matched(settings, self.workload.content_ids, timeout_s, self.alive)
        except TimeoutError as exc:
            excerpt = self.pipeline.log_excerpt(self.pipeline.workers[-1], tail=40)
            raise TimeoutError(f"{exc}; the last worker's {excerpt}") from exc
        for worker in list(self.pipeline.workers):
            self.pipeline.stop_worker(worker)  # SIGTERM: the flood table's last writes are committed
        report = account(settings, self.workload)
        report["uploads"] = len(self.workload.uploads)
        report["faults"] = len(self.faults_ms)
        report["matching_again_after_s"] = stalls_after(settings, self.faults_ms)
        report["drained_after_sending_s"] = round(drained_s, 1)
        return report


def worker_kills(p: BenchPipeline, workload: Workload, kills: int, rate: float, seed: int = 1,
                 timeout_s: float = 900) -> dict[str, Any]:
    """The worker SIGKILLed `kills` times at random moments while the uploads flow, restarted at once."""
    run = Run(p, workload)
    create_bank(p.client, workload)
    p.start_worker(log_name="worker-0")
    p.wait_until_matching(workload.bank_codes[0])
    sender = Sender(p.settings, workload.uploads, rate)
    rng = random.Random(seed)
    moments = sorted(rng.uniform(0.05, 0.95) * sender.duration_s for _ in range(kills))
    started = time.perf_counter()
    sender.start()
    for i, moment in enumerate(moments, 1):
        time.sleep(max(0.0, started + moment - time.perf_counter()))
        run.alive()
        p.stop_worker(p.workers[0], crash=True)
        run.faults_ms.append(int(time.time() * 1000))
        p.start_worker(log_name=f"worker-{i}")
        log(f"faults: worker killed and restarted ({i}/{kills}) at {moment:,.1f}s, {sender.sent:,} uploads sent")
    return run.finish(sender, timeout_s)


def broker_kill(p: BenchPipeline, workload: Workload, rate: float, down_s: float = 5,
                timeout_s: float = 900) -> dict[str, Any]:
    """The broker SIGKILLed halfway through the uploads and restarted `down_s` later."""
    run = Run(p, workload)
    create_bank(p.client, workload)
    p.start_worker()
    p.wait_until_matching(workload.bank_codes[0])
    sender = Sender(p.settings, workload.uploads, rate)
    sender.start()
    time.sleep(sender.duration_s / 2)
    run.alive()
    p.broker.kill()
    run.faults_ms.append(int(time.time() * 1000))
    log(f"faults: broker killed, {sender.sent:,} uploads sent")
    time.sleep(down_s)
    p.broker.start()
    log("faults: broker restarted")
    return run.finish(sender, timeout_s)


SCENARIOS = ("worker-kills", "broker-kill")


def run_faults_bench(scenarios: list[str], guarantees: list[str], prehashed: int, photos: int, kills: int,
                     rate: float) -> dict[str, Any]:
    """Every scenario in every processing guarantee, each on a broker of its own."""
    results: dict[str, Any] = {}
    for guarantee in guarantees:
        for scenario in scenarios:
            workload = Workload.make(prehashed, photos)
            log(f"faults: {scenario}, {guarantee}: {len(workload.uploads):,} uploads at {rate:,.0f}/s")
            with BenchPipeline(HMAS_PROCESSING_GUARANTEE=guarantee) as p:
                if scenario == "worker-kills":
                    report = worker_kills(p, workload, kills, rate)
                elif scenario == "broker-kill":
                    report = broker_kill(p, workload, rate)
                else:
                    raise ValueError(f"unknown scenario {scenario}")
            report["exactly_once"] = exactly_once_held(report)
            report["nothing_lost"] = nothing_lost(report)
            results[f"{scenario} {guarantee}"] = report
            log(f"faults: {scenario}, {guarantee}: {json.dumps(report)}")
    return results
