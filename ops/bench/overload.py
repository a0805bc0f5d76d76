"""`hmas bench overload`: uploads produced at `factor` times what the worker sustains, for
`seconds`, photos by URL from a slow local server among them: the worker's memory through the
run, the time its lag takes to drain afterwards, and every upload accounted for.

First the worker's sustained rate is measured on the same mix (a burst, timed until its last
match record). Then the overload: uploads are produced at factor x that rate; a follower counts
the match records coming out, and the worker's resident memory (with its hashing processes) is
sampled every second, through the overload and the drain.

What bounds the worker's memory while its input runs ahead of it (pipeline/app.py): Faust stops
fetching a partition whose stream buffer holds STREAM_BUFFER_EVENTS events and fetches at most
CONSUMER_FETCH_BYTES per partition at a time, so unread uploads stay in Kafka; the hasher takes 64
events at a time, and at most FETCH_THREADS (pipeline/services/pools.py) photos are downloaded at
once, each at most fetch_max_bytes.
"""

from __future__ import annotations

import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np

from ops.bench.accounting import KeyFollower, account_uploads, nothing_lost
from ops.bench.e2e_bench import _uploads, load_bank
from ops.bench.harness import BenchPipeline, log
from ops.bench.index_bench import machine
from pipeline import topics as T
from pipeline.banks import bank_signal_record
from pipeline.hashing import hash_content
from pipeline.progress import ProgressBar
from pipeline.uploads import new_upload

PHOTO = Path(__file__).resolve().parents[2] / "tests" / "media" / "pdq" / "data" / "bridge-mods" / "aaa-orig.jpg"
TICK_S = 0.05  # uploads are produced in a slice per tick


class SlowPhotoServer:
    """Serves one photo at any path on loopback, slowly: `delay_s` before the first byte, then the
    rest in 4 KiB pieces with a pause after each (a slow origin, as a platform's CDN can be)."""

    def __init__(self, photo: bytes, delay_s: float, chunk_pause_s: float = 0.005) -> None:
        served = {"count": 0}

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                time.sleep(delay_s)
                self.send_response(200)
                self.send_header("Content-Type", "image/jpeg")
                self.send_header("Content-Length", str(len(photo)))
                self.end_headers()
                for start in range(0, len(photo), 4096):
                    self.wfile.write(photo[start:start + 4096])
                    time.sleep(chunk_pause_s)
                served["count"] += 1

            def log_message(self, *args: Any) -> None:
                pass

        self.served = served
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def tree_rss_mb(pid: int) -> float:
    """Resident memory of a process and its children (the worker and its hashing processes), MB."""
    total = 0.0
    pids = [pid]
    while pids:
        current = pids.pop()
        try:
            with open(f"/proc/{current}/statm") as fh:
                total += int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
            for task in Path(f"/proc/{current}/task").iterdir():
                pids += [int(child) for child in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


class RssSampler(threading.Thread):
    """The worker tree's RSS every second: (seconds from start, MB)."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.samples: list[tuple[float, float]] = []
        self.stop = threading.Event()
        self.start_time = time.perf_counter()

    def run(self) -> None:
        while not self.stop.wait(1.0):
            self.samples.append((time.perf_counter() - self.start_time, tree_rss_mb(self.pid)))


class UploadMix:
    """Pre-hashed uploads (half near-duplicates of banked codes) with one photo by URL in every
    `photo_every`; the photo is banked, so its uploads are acted on too."""

    def __init__(self, codes: np.ndarray, photo_url: str, photo_every: int, seed: int = 31) -> None:
        self.codes, self.photo_url, self.photo_every = codes, photo_url, photo_every
        self.rng = np.random.default_rng(seed)
        self.ids: set[str] = set()
        self.acted: set[str] = set()
        self.photos = 0

    def make(self, count: int, prefix: str) -> list[dict[str, Any]]:
        batch = _uploads(self.codes, count, prefix, self.rng)
        for i, upload in enumerate(batch):
            cid = upload["content_id"]
            if (len(self.ids) + i) % self.photo_every == 0:
                batch[i] = new_upload(cid, "photo", url=f"{self.photo_url}/{cid}.jpg")
                self.photos += 1
                self.acted.add(cid)
            elif i % 2 == 0:  # _uploads makes the even ones near-duplicates of banked codes
                self.acted.add(cid)
        self.ids.update(u["content_id"] for u in batch)
        return batch


def produce_at(p: BenchPipeline, mix: UploadMix, rate: float, seconds: float, prefix: str) -> tuple[int, float]:
    """Uploads of the mix at `rate` per second for `seconds`; returns (produced, seconds taken)."""
    per_tick = max(1, round(rate * TICK_S))
    ticks = int(seconds / TICK_S)
    progress = ProgressBar(f"overload at {rate:,.0f}/s", ticks * per_tick, "uploads sent")
    start = time.perf_counter()
    produced = 0
    for tick in range(ticks):
        for upload in mix.make(per_tick, f"{prefix}{tick}"):
            p.client.produce(T.UPLOADS, upload["content_id"], upload)
        produced += per_tick
        progress.update(produced)
        delay = start + (tick + 1) * TICK_S - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
    p.client.flush(300)
    progress.update(produced, final=True)
    return produced, time.perf_counter() - start


def run_overload_bench(n: int, sustain_uploads: int, factor: float, seconds: float, photo_every: int,
                       photo_delay_s: float) -> dict[str, Any]:
    photo = PHOTO.read_bytes()
    server = SlowPhotoServer(photo, photo_delay_s)
    try:
        with BenchPipeline(HMAS_FETCH_ALLOW_HOSTS="127.0.0.1") as p:
            codes = load_bank(p.settings, n)
            photo_pdq = hash_content("photo", photo)["pdq"].value
            p.client.produce(T.BANK_SIGNALS, *bank_signal_record("BENCH", n + 1, "pdq", photo_pdq))
            p.client.flush()
            worker = p.start_worker()
            ready_s = p.wait_until_matching(codes[0].tobytes().hex())
            log(f"overload: worker matching after {ready_s:,.0f}s")
            sampler = RssSampler(worker.pid)
            sampler.start()

            sustain = UploadMix(codes, server.url, photo_every, seed=30)
            follower = KeyFollower(p.settings, T.MATCHES, "s")
            follower.start()
            started = time.perf_counter()
            for upload in sustain.make(sustain_uploads, "s"):
                p.client.produce(T.UPLOADS, upload["content_id"], upload)
            p.client.flush(300)
            took = follower.wait_for(sustain_uploads, 1800)
            if took is None:
                raise TimeoutError(f"the sustain burst was not matched: {len(follower.keys):,} of {sustain_uploads:,}")
            sustained = sustain_uploads / (time.perf_counter() - started)
            follower.stop.set()
            rss_before = tree_rss_mb(worker.pid)
            log(f"overload: worker sustains {sustained:,.0f} uploads/s on this mix; RSS {rss_before:,.0f} MB")

            over = UploadMix(codes, server.url, photo_every, seed=32)
            follower = KeyFollower(p.settings, T.MATCHES, "o")
            follower.start()
            overload_started = time.perf_counter() - sampler.start_time
            produced, produce_s = produce_at(p, over, factor * sustained, seconds, "o")
            produced_at = time.perf_counter() - sampler.start_time
            behind = produced - len(follower.keys)
            log(f"overload: {produced:,} produced in {produce_s:,.0f}s; {behind:,} not yet matched")
            drain_s = follower.wait_for(produced, 3600)
            sampler.stop.set()
            follower.stop.set()
            log(f"overload: drained {'in ' + format(drain_s, ',.0f') + 's' if drain_s is not None else 'NOT within an hour'}; accounting")
            accounting = account_uploads(p.settings, over.ids, over.acted)
            during = [mb for t, mb in sampler.samples if t >= overload_started]
            while_producing = [mb for t, mb in sampler.samples if overload_started <= t <= produced_at]
    finally:
        server.close()
    return {
        "banked_signals": n, "machine": machine(), "load_average_at_end": os.getloadavg(),
        "photo_every": photo_every, "photo_delay_s": photo_delay_s, "photos_served": server.served["count"],
        "sustain_uploads": sustain_uploads, "sustained_per_s": round(sustained),
        "factor": factor, "target_per_s": round(factor * sustained), "seconds": seconds,
        "produced": produced, "photos": over.photos, "produced_per_s": round(produced / produce_s),
        "not_yet_matched_when_production_ended": behind, "drain_s": None if drain_s is None else round(drain_s, 1),
        "rss_mb_before": round(rss_before), "rss_mb_max_while_producing": round(max(while_producing)),
        "rss_mb_max": round(max(during)), "rss_mb_median": round(float(np.median(during))),
        "accounting": accounting, "nothing_lost": nothing_lost(accounting),
        "rss_samples": [(round(t), round(mb)) for t, mb in sampler.samples],
    }
