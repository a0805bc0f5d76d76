"""`hmas bench exchange`: the exchange fetcher's rate into a bank, the time from a batch's commit
until uploads of its hashes match, the fetcher's peak memory, and the CPU time per fetched record
of the fetcher, the broker and the worker (from the fetch's first status to its last batch's), on
a broker of the bench's own.

The fetcher runs in a process of its own (`python -m ops.bench.exchange_bench`, the
`ExchangeFetcher` class that `hmas fetcher` runs, with the random exchange installed), so its
resident memory is its alone. HMAS_BENCH_PROFILE=<file> runs it under cProfile (its event
loop's thread: where the fetcher waits and what it spends outside its conversion threads).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Any, Callable

from confluent_kafka import OFFSET_BEGINNING, TopicPartition

from ops.bench.harness import BenchPipeline
from ops.bench.index_bench import machine
from ops.bench.random_exchange import API_NAME, delta_codes, install
from ops.kafka.broker import LocalBroker
from pipeline import kafka_clients
from pipeline import topics as T
from pipeline.config import Settings, load_settings
from pipeline.topics import TopicSpec
from pipeline.progress import ProgressBar
from pipeline.uploads import new_upload

PROBE_EVERY_S = 0.05
EXCHANGE = "RANDOM"


def cpu_s(pid: int) -> float:
    """User and system CPU seconds of a process so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def memory_kb(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak resident) of a process, in kB."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                name, value = line.split(":", 1)
                out[name] = int(value.split()[0])
    return out


class Follower(threading.Thread):
    """Follows one topic from its start (committed records only) until `stop` is set."""

    def __init__(self, settings: Settings, spec: TopicSpec, on_record: Callable[[str, Any], Any],
                 stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.settings, self.spec, self.on_record, self.stop = settings, spec, on_record, stop

    def run(self) -> None:
        topic = self.spec.name(self.settings)
        consumer = kafka_clients.consumer(self.settings, {"group.id": "hmas-bench", "enable.auto.commit": False,
                                                          "isolation.level": "read_committed"})
        try:
            parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
            consumer.assign([TopicPartition(topic, part, OFFSET_BEGINNING) for part in parts])
            while not self.stop.is_set():
                msg = consumer.poll(0.2)
                if msg is not None and not msg.error() and msg.value() is not None:
                    self.on_record(msg.key().decode(), self.spec.codec.decode(msg.value()))
        finally:
            consumer.close()


def run_exchange_bench(n: int, match: bool = True, seed: int = 7, batch_records: int | None = None) -> dict[str, Any]:
    """`batch_records`: records per transaction (HMAS_EXCHANGE_BATCH_RECORDS; None: the setting's default)."""
    from connectors.exchanges.config import creation_writes, exchange_record

    install()
    per_delta = 5000
    batch_env = {} if batch_records is None else {"HMAS_EXCHANGE_BATCH_RECORDS": str(batch_records)}
    with BenchPipeline(HMAS_EXCHANGE_FETCH_INTERVAL_S="86400", **batch_env) as p:
        record = exchange_record(EXCHANGE, API_NAME, {"signals": n, "per_delta": per_delta, "seed": seed})
        for spec, key, value in creation_writes(record, bank_exists=False):
            p.client.produce(spec, key, value)
        p.client.flush()
        processes: dict[str, int] = {}  # whose CPU per fetched record the report gives
        broker = p.broker.pid() if isinstance(p.broker, LocalBroker) else None
        if broker is not None:
            processes["broker"] = broker
        if match:
            processes["worker"] = p.start_worker().pid
        statuses: list[dict[str, Any]] = []
        matched: dict[str, int] = {}
        stop = threading.Event()
        followers = [Follower(p.settings, T.EXCHANGE_FETCH, lambda k, r: statuses.append(r), stop)]
        if match:
            followers.append(Follower(p.settings, T.MATCHES, lambda k, r: r["matches"] and k.startswith("probe-")
                                      and matched.setdefault(k, r["matched_at"]), stop))
        for follower in followers:
            follower.start()
        fetcher = subprocess.Popen([sys.executable, "-m", "ops.bench.exchange_bench"], env={**os.environ, **p.env},
                                   stdout=open(p.dir / "fetcher.log", "ab"), stderr=subprocess.STDOUT)
        processes["fetcher"] = fetcher.pid
        cpu_at: dict[str, dict[str, float]] = {}  # "start" (the fetch's first status), "end" (its last batch)
        last_delta = delta_codes(seed, (n - 1) // per_delta, n - (n - 1) // per_delta * per_delta)
        progress = ProgressBar("exchange fetch", n, "signals")
        peak, rss_at_end, probes, cpu = 0, 0, 0, 0.0
        started = time.time()
        try:
            while True:
                if fetcher.poll() is not None:
                    raise RuntimeError(f"fetcher exited with {fetcher.returncode}: see {p.dir / 'fetcher.log'}")
                mem, cpu = memory_kb(fetcher.pid), cpu_s(fetcher.pid)
                peak = max(peak, mem["VmHWM"])
                done = statuses[-1] if statuses else {}
                for moment, reached in (("start", bool(statuses)), ("end", (done.get("records_last_fetch") or 0) >= n)):
                    if reached and moment not in cpu_at:
                        cpu_at[moment] = {name: cpu_s(pid) for name, pid in processes.items()}
                progress.update(done.get("records_last_fetch") or 0, f"fetcher RSS {mem['VmRSS'] // 1024} MB")
                if done.get("last_fetch_succeeded") is False:
                    raise RuntimeError(f"fetch failed: {done.get('last_error')}")
                if match and (done.get("records_last_fetch") or 0) >= n - 2 * per_delta:
                    cid = f"probe-{probes}"
                    p.client.produce(T.UPLOADS, cid, new_upload(cid, "photo", signals={"pdq": last_delta[probes % len(last_delta)]}))
                    p.client.flush()
                    probes += 1
                finished = done.get("up_to_date") and done.get("records_last_fetch") == n
                if finished and (not match or matched):
                    rss_at_end = mem["VmRSS"]
                    break
                if time.time() - started > 6 * 3600:
                    raise TimeoutError("the fetch did not finish in 6 h")
                time.sleep(PROBE_EVERY_S)
        finally:
            fetcher.send_signal(signal.SIGTERM)
            fetcher.wait(60)
            stop.set()
            for follower in followers:
                follower.join()
        progress.update(n, final=True)
        final = statuses[-1]
        # the status committed with the last batch: its updated_at is taken just before that commit
        last_batch = next(s for s in statuses if s.get("records_last_fetch") == n)
        report: dict[str, Any] = {
            "signals": n, "batch_records": p.settings.exchange_batch_records,
            "machine": machine(), "load_average": os.getloadavg(),
            "signals_per_s": final["records_per_s"],
            "fetch_s": round(final["updated_at"] / 1000 - statuses[0]["running_fetch_start_ts"], 1),
            "fetcher_cpu_s": round(cpu, 1), "signals_per_fetcher_cpu_s": round(n / max(cpu, 1e-3)),
            "fetcher_peak_rss_mb": round(peak / 1024, 1), "fetcher_rss_at_end_mb": round(rss_at_end / 1024, 1),
        }
        per_record = {name: round((cpu_at["end"][name] - cpu_at["start"][name]) / n * 1e6) for name in processes}
        report["cpu_us_per_record"] = {**per_record, "total": sum(per_record.values())}
        if match:
            first = min(matched.values())
            report["match_after_commit_s"] = round((first - last_batch["updated_at"]) / 1000, 2)
        return report


async def _run_fetcher() -> None:
    from connectors.exchanges.fetcher import ExchangeFetcher

    install()
    fetcher = ExchangeFetcher(load_settings(config_file=os.devnull), name="bench-fetcher")
    stopping = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stopping.set)
    await fetcher.start()
    try:
        await fetcher.run_until(stopping)
    finally:
        await fetcher.stop()


if __name__ == "__main__":
    if os.environ.get("HMAS_BENCH_PROFILE"):
        import cProfile
        cProfile.run("asyncio.run(_run_fetcher())", os.environ["HMAS_BENCH_PROFILE"])
    else:
        asyncio.run(_run_fetcher())
