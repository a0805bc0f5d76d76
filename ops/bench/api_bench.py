"""`hmas bench api`: lookups/s through the HTTP API with N banked signals, beside the index's own
batched rate on the same codes and queries, so that the cost of HTTP shows.

The bench banks N random PDQ signals on a broker of its own, starts `hmas api`, and drives
`/m/raw_lookup` and `/m/lookup` with `wrk` (one thread, C connections, random hashes read from a
file) for S seconds each. It reports requests/s, p50/p99 latency, the CPU the API and the load
generator used (they share the machine), the API's resident memory, how long the API took to
answer `/status` 200 at a cold start and after a restart (from its view snapshot, with bank
changes made while it was down), and checks that the API's answers are the index's, hit for hit.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ops.bench.e2e_bench import load_bank
from ops.bench.harness import BenchPipeline, log
from ops.bench.index_bench import machine, rss_mb, run_peer
from ops.kafka.broker import free_port
from pipeline import topics as T
from pipeline.api.state import SNAPSHOT_ROLE
from pipeline.banks import bank_signal_record
from pipeline.state.snapshot import snapshot_path

ROUTES = {
    "raw_lookup": "/m/raw_lookup?signal_type=pdq&signal={}",
    "lookup": "/m/lookup?signal_type=pdq&signal={}",
}
# One wrk thread cycling through the request paths of a file (its own start per connection is
# not needed: the paths are random codes); `done` prints the figures as one JSON line.
WRK_SCRIPT = """
local paths = {}
local i = 0
init = function(args)
  for line in io.lines(args[1]) do paths[#paths + 1] = line end
end
request = function()
  i = i % #paths + 1
  return wrk.format(nil, paths[i])
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "max_us": %d, "errors": %d, "non_2xx": %d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), latency.max,
    e.connect + e.read + e.write + e.timeout, e.status))
end
"""
CHECKED_QUERIES = 300  # planted near-duplicates and random codes whose answers are checked exactly
P99_TARGET_MS = 20.0  # the latency bound: the best rate within it is reported per API and route


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_ready(url: str, timeout_s: float = 3600) -> float:
    """Seconds until GET /status answers 200."""
    started = time.perf_counter()
    while time.perf_counter() - started < timeout_s:
        try:
            with urllib.request.urlopen(f"{url}/status", timeout=5) as response:
                if response.status == 200:
                    return time.perf_counter() - started
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url}/status not ready within {timeout_s}s")


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())


def drive(url: str, paths_file: Path, script: Path, connections: int, seconds: float,
          api_pids: list[int]) -> dict[str, Any]:
    """One wrk run; its figures, with the CPU wrk and the API used meanwhile (cores busy)."""
    api_before = sum(cpu_s(pid) for pid in api_pids)
    started = time.perf_counter()
    wrk = subprocess.Popen(["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "10s",
                            "-s", str(script), url, "--", str(paths_file)],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    output = wrk.stdout.read().decode(errors="replace") if wrk.stdout else ""
    _, status, usage = os.wait4(wrk.pid, 0)
    wrk.returncode = os.waitstatus_to_exitcode(status)
    elapsed = time.perf_counter() - started
    api_used = sum(cpu_s(pid) for pid in api_pids) - api_before
    line = next((ln for ln in output.splitlines() if ln.startswith("{")), None)
    if wrk.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({wrk.returncode}):\n{output}")
    figures = json.loads(line)
    return {
        "connections": connections, "requests": figures["requests"],
        "requests_per_s": round(figures["requests"] / (figures["duration_us"] / 1e6)),
        "p50_ms": round(figures["p50_us"] / 1000, 2), "p99_ms": round(figures["p99_us"] / 1000, 2),
        "max_ms": round(figures["max_us"] / 1000, 1), "errors": figures["errors"], "non_2xx": figures["non_2xx"],
        "api_cores": round(api_used / elapsed, 2),
        "api_cpu_us_per_request": round(api_used / max(figures["requests"], 1) * 1e6),
        "wrk_cores": round((usage.ru_utime + usage.ru_stime) / elapsed, 2),
    }


REPO = Path(__file__).resolve().parents[2]


def drive_at_rate(url: str, paths_file: Path, rate: float, connections: int, seconds: float,
                  api_pids: list[int]) -> dict[str, Any]:
    """One open-loop run (ops/bench/open_loop.py: requests due at `rate`, latency from when each was
    due); its figures, with the CPU the generator and the API used meanwhile."""
    api_before = sum(cpu_s(pid) for pid in api_pids)
    started = time.perf_counter()
    gen = subprocess.Popen([sys.executable, "-m", "ops.bench.open_loop", url, str(paths_file), "--rate", str(rate),
                            "--connections", str(connections), "--seconds", str(seconds)],
                           cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    output = gen.stdout.read().decode(errors="replace") if gen.stdout else ""
    _, status, usage = os.wait4(gen.pid, 0)
    elapsed = time.perf_counter() - started
    api_used = sum(cpu_s(pid) for pid in api_pids) - api_before
    line = next((ln for ln in output.splitlines() if ln.startswith("{")), None)
    if os.waitstatus_to_exitcode(status) != 0 or line is None:
        raise RuntimeError(f"open-loop load failed:\n{output}")
    figures = json.loads(line)
    return {
        "connections": connections, **figures,
        "api_cores": round(api_used / elapsed, 2),
        "api_cpu_us_per_request": round(api_used / max(figures["answered"], 1) * 1e6),
        "load_cores": round((usage.ru_utime + usage.ru_stime) / elapsed, 2),
    }


def rates_within(runs: list[dict[str, Any]], p99_ms: float = P99_TARGET_MS) -> dict[str, dict[str, Any]]:
    """Per route, the highest offered rate that was kept up with (99% of the due requests answered,
    none failed) with p99 within `p99_ms` (none: absent)."""
    best: dict[str, dict[str, Any]] = {}
    for run in runs:
        kept_up = run["answered"] >= 0.99 * run["due"] and run["errors"] == 0 and run["non_2xx"] == 0
        if kept_up and run["p99_ms"] <= p99_ms and run["offered_per_s"] > best.get(run["route"], {}).get("offered_per_s", -1):
            best[run["route"]] = {k: run[k] for k in ("offered_per_s", "answered_per_s", "p50_ms", "p99_ms")}
    return best


def best_within(runs: list[dict[str, Any]], p99_ms: float = P99_TARGET_MS) -> dict[str, dict[str, Any]]:
    """Per route, the run with the most requests/s whose p99 stayed within `p99_ms` (none: absent)."""
    best: dict[str, dict[str, Any]] = {}
    for run in runs:
        if run["p99_ms"] <= p99_ms and run["requests_per_s"] > best.get(run["route"], {}).get("requests_per_s", -1):
            best[run["route"]] = {k: run[k] for k in ("connections", "requests_per_s", "p50_ms", "p99_ms")}
    return best


def planted(codes: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """Near-duplicates of banked codes, 0 to 31 bits flipped."""
    out = codes[rng.integers(0, len(codes), count)].copy()
    bits = np.unpackbits(out, axis=1)
    for i in range(count):
        bits[i, rng.choice(256, i % 32, replace=False)] ^= 1
    return np.packbits(bits, axis=1)


class ApiUnderTest:
    """`hmas api` processes of the bench on one port, with a data dir of their own (their snapshot)."""

    def __init__(self, p: BenchPipeline, name: str, processes: int, source: Path | None = None,
                 env: dict[str, str] | None = None) -> None:
        """`env`: settings of this API beside the bench's (HMAS_* variables), to measure a variant."""
        self.p, self.name, self.processes, self.source = p, name, processes, source
        self.env = env or {}
        self.url = f"http://127.0.0.1:{free_port()}"
        self.runs = 0
        self.procs: list[subprocess.Popen] = []

    def start(self) -> float:
        """Start and wait for /status 200; seconds it took."""
        self.runs += 1
        started = time.perf_counter()
        # no per-client rate limit: wrk is one client, and the bench measures the API, not its limiter
        env = {"HMAS_API_PROCESSES": str(self.processes), "HMAS_API_LOOKUP_RATE": "0", **self.env}
        self.procs = [self.p.start_command("api", "--port", self.url.rsplit(":", 1)[1], log_name=self.log_name,
                                           env=env, source=self.source, data_dir=self.p.dir / self.name)]
        wait_ready(self.url)
        return time.perf_counter() - started

    @property
    def snapshot(self) -> Path:
        """Where this API keeps its view snapshot (pipeline/state/snapshot.py)."""
        return snapshot_path(self.p.settings.with_overrides(data_dir=self.p.dir / self.name), SNAPSHOT_ROLE)

    @property
    def log_name(self) -> str:
        return f"{self.name}-{self.runs}"

    @property
    def pids(self) -> list[int]:
        """The API's processes: the one started and the server processes it forked, if any."""
        out = []
        for proc in self.procs:
            out.append(proc.pid)
            children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
            if children.exists():
                out += [int(pid) for pid in children.read_text().split()]
        return out

    def memory_mb(self) -> dict[str, float]:
        """Resident memory summed over the API's processes, and proportional (shared pages split)."""
        rss = sum(rss_mb(pid) for pid in self.pids)
        pss = 0.0
        for pid in self.pids:
            with open(f"/proc/{pid}/smaps_rollup") as fh:
                pss += next(int(ln.split()[1]) for ln in fh if ln.startswith("Pss:")) / 1024
        return {"rss_mb": round(rss), "pss_mb": round(pss)}

    def stop(self) -> None:
        for proc in self.procs:
            self.p.stop_worker(proc)

    def log(self) -> str:
        return self.p.worker_log(self.log_name)


@dataclass
class Workload:
    """What every API of one bench is measured with."""

    codes: np.ndarray  # banked, content ids 1..n
    checked: np.ndarray  # queries whose answers are compared with the index's
    script: Path
    paths: dict[str, Path]  # route -> its request paths (random codes)
    seconds: float
    connections: list[int]
    tail_share: float
    rates: list[float] = field(default_factory=list)  # open-loop runs: requests/s offered
    rate_connections: int = 32


@dataclass
class BankChanges:
    """What the restarts of the APIs measured so far changed in the bank (later APIs see it)."""

    removed: set[int] = field(default_factory=set)  # content ids
    added: dict[int, np.ndarray] = field(default_factory=dict)  # content id -> code

    def expected(self, index_hits: list[tuple[int, int]], query: np.ndarray) -> list[tuple[int, int]]:
        """The index's hits (content id, distance) for the bank as it is now, at distance 31."""
        hits = [(cid, d) for cid, d in index_hits if cid not in self.removed]
        for cid, code in self.added.items():
            d = int(np.unpackbits(np.bitwise_xor(code, query)).sum())
            if d <= 31:
                hits.append((cid, d))
        return sorted(hits)


def measure(p: BenchPipeline, api: ApiUnderTest, work: Workload, rng: np.random.Generator,
            changes: BankChanges, seed: Path | None = None) -> dict[str, Any]:
    """One API: first start, wrk runs, memory, checked answers; then a restart after bank changes.
    `seed`: a snapshot of an API measured before (on the same bank), given to this one so that its
    first start is not a second cold read of the whole topic (at 10M, the longest part of a run)."""
    n = len(work.codes)
    if seed is not None:
        api.snapshot.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(seed, api.snapshot)
    cold_s = api.start()
    first_from = "snapshot" if seed is not None else "topic"
    log(f"{api.name}: ready after {cold_s:,.1f}s (first start, {n:,} signals read from the {first_from})")
    first = next(iter(work.paths.values()))
    probe = f"{api.url}{first.read_text().split(chr(10), 1)[0]}"
    while True:  # the first lookups may compile the index's kernels
        try:
            get_json(probe)
            break
        except (urllib.error.URLError, TimeoutError):
            time.sleep(1)
    saves = float(api.env.get("HMAS_VIEW_SNAPSHOT_INTERVAL_S", p.settings.view_snapshot_interval_s)) > 0
    waited = time.perf_counter()
    while saves and not api.snapshot.is_file() and time.perf_counter() - waited < 900:
        time.sleep(1)  # a first start from the topic saves its snapshot now: seconds of a core at 10M
    drive(api.url, first, work.script, max(work.connections), 5, api.pids)  # warm-up
    runs = []
    for route, paths in work.paths.items():
        for c in work.connections:
            run = {"api": api.name, "route": route, **drive(api.url, paths, work.script, c, work.seconds, api.pids)}
            runs.append(run)
            log(f"{api.name}: {route} c={c}: {run['requests_per_s']:,}/s, p50 {run['p50_ms']} ms, p99 {run['p99_ms']} ms, "
                f"api {run['api_cores']} cores ({run['api_cpu_us_per_request']} us/request), wrk {run['wrk_cores']}")
    at_rate = []
    for route, paths in work.paths.items():
        for rate in work.rates:
            run = {"api": api.name, "route": route,
                   **drive_at_rate(api.url, paths, rate, work.rate_connections, work.seconds, api.pids)}
            at_rate.append(run)
            log(f"{api.name}: {route} at {rate:,.0f}/s offered: {run['answered_per_s']:,}/s answered, p50 {run['p50_ms']} ms, "
                f"p99 {run['p99_ms']} ms, max {run['max_ms']} ms, api {run['api_cores']} cores "
                f"({run['api_cpu_us_per_request']} us/request), load {run['load_cores']}")
    memory = api.memory_mb()
    answers = [get_json(f"{api.url}/m/raw_lookup?signal_type=pdq&include_distance=true&signal={q.tobytes().hex()}")
               for q in work.checked]
    api.stop()

    tail = max(int(n * work.tail_share), 2)
    fresh = rng.integers(0, 256, (tail // 2, 32), dtype=np.uint8)
    first_id = n + 1 + int(rng.integers(0, 10**9))
    for i, code in enumerate(fresh):
        p.client.produce(T.BANK_SIGNALS, *bank_signal_record("BENCH", first_id + i, "pdq", code.tobytes().hex()))
    removed = rng.choice(n, tail - len(fresh), replace=False)
    for i in removed:
        key, _ = bank_signal_record("BENCH", int(i) + 1, "pdq", work.codes[i].tobytes().hex())
        p.client.produce(T.BANK_SIGNALS, key, None)
    p.client.flush(600)
    bank_now = BankChanges(changes.removed.copy(), dict(changes.added))  # what this API's answers reflect
    changes.removed.update(int(i) + 1 for i in removed)
    changes.added.update((first_id + i, code) for i, code in enumerate(fresh))
    restart_s = api.start()
    log(f"{api.name}: ready again after {restart_s:,.1f}s ({tail:,} bank changes while it was down)")
    loaded = [ln for ln in api.log().splitlines() if "loaded from snapshot" in ln]
    new_hits = get_json(f"{api.url}/m/raw_lookup?signal_type=pdq&signal={fresh[-1].tobytes().hex()}")["matches"]
    gone_hits = get_json(f"{api.url}/m/raw_lookup?signal_type=pdq&signal={work.codes[removed[0]].tobytes().hex()}")["matches"]
    api.stop()
    log(f"{api.name}: {memory['rss_mb']:,} MB resident ({memory['pss_mb']:,} MB proportional), new signal found: "
        f"{first_id + len(fresh) - 1 in new_hits}, removed one gone: {int(removed[0]) + 1 not in gone_hits}")
    return {
        "runs": runs, "at_rate": at_rate, **memory, "ready_first_start_s": round(cold_s, 1), "first_start_from": first_from,
        "ready_after_restart_s": round(restart_s, 1),
        "changes_while_down": tail, "snapshot_log": loaded[-1] if loaded else None,
        "new_signal_found": first_id + len(fresh) - 1 in new_hits, "removed_signal_gone": int(removed[0]) + 1 not in gone_hits,
        "answers": answers, "bank": bank_now,
    }


def settings_of(variant: str) -> dict[str, str]:
    """`KEY=VALUE,KEY=VALUE` (HMAS_* settings) as an environment."""
    env = {}
    for item in filter(None, (part.strip() for part in variant.split(","))):
        key, eq, value = item.partition("=")
        if not eq or not key.startswith("HMAS_"):
            raise SystemExit(f"--with {variant!r}: expected HMAS_KEY=VALUE entries, comma-separated")
        env[key] = value
    return env


def variant_name(env: dict[str, str]) -> str:
    return "api-with-" + "-".join(f"{k.removeprefix('HMAS_').lower()}={v}" for k, v in env.items())


def run_api_bench(n: int, seconds: float, connections: list[int], routes: list[str], processes: list[int],
                  tail_share: float = 0.01, sources: list[Path] | None = None,
                  variants: list[dict[str, str]] | None = None, rates: list[float] | None = None) -> dict[str, Any]:
    """The API with each count of `processes`, then this checkout's API with each of `variants`
    (other settings, the most processes), then the API of each of `sources` (other checkouts, one
    process: a before/after comparison on one machine), on the same bank and queries."""
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (Debian: apt-get install wrk; the Makefile's setup does it)")
    rng = np.random.default_rng(5)
    with BenchPipeline() as p:
        codes = load_bank(p.settings, n)
        queries = rng.integers(0, 256, (20_000, 32), dtype=np.uint8)
        checked = np.concatenate([planted(codes, CHECKED_QUERIES // 2, rng), queries[: CHECKED_QUERIES // 2]])
        np.save(p.dir / "codes.npy", codes)
        np.save(p.dir / "queries.npy", np.concatenate([checked, queries]))
        script = p.dir / "lookups.lua"
        script.write_text(WRK_SCRIPT)
        hexes = [q.tobytes().hex() for q in queries]
        for route in routes:
            (p.dir / f"{route}.paths").write_text("".join(ROUTES[route].format(h) + "\n" for h in hexes))
        work = Workload(codes, checked, script, {r: p.dir / f"{r}.paths" for r in routes}, seconds, connections,
                        tail_share, rates or [])
        apis = [ApiUnderTest(p, f"api-{k}p", k) for k in processes]
        apis += [ApiUnderTest(p, variant_name(env), max(processes), env=env) for env in variants or []]
        apis += [ApiUnderTest(p, f"api-from-{source.name}", 1, source) for source in sources or []]
        changes = BankChanges()
        measured = {}
        seed = None  # the first API reads the topic; the next ones of this checkout start from its snapshot
        for api in apis:
            measured[api.name] = measure(p, api, work, rng, changes, seed if api.source is None else None)
            if api.source is None and api.snapshot.is_file():
                seed = api.snapshot

        log("index: the same codes and queries, batches of 1,000, one core (its own process) ...")
        index = run_peer("hma-streams", p.dir, len(checked) + len(queries), [31])
    truth = [[(cid + 1, d) for cid, d in hits] for hits in index["hits"]["31"][:len(checked)]]
    for m in measured.values():
        bank = m.pop("bank")
        mine = [sorted((int(h["bank_content_id"]), int(h["distance"])) for h in a["matches"]) for a in m.pop("answers")]
        m["answers_identical_to_index"] = sum(a == bank.expected(t, q) for a, t, q in zip(mine, truth, checked))
        m["http_vs_index"] = round(max(r["requests_per_s"] for r in m["runs"]) / index["lookups_per_s"], 2)
        m[f"best_with_p99_within_{P99_TARGET_MS:g}_ms"] = best_within(m["runs"])
        m[f"highest_rate_with_p99_within_{P99_TARGET_MS:g}_ms"] = rates_within(m["at_rate"])
    return {
        "banked_signals": n, "machine": machine(), "seconds_per_run": seconds,
        "index_lookups_per_s": round(index["lookups_per_s"]), "answers_checked": len(checked),
        "checked_with_hits": sum(1 for t in truth if t), "apis": measured,
    }


def markdown(report: dict[str, Any]) -> str:
    cols = ["api", "route", "connections", "requests_per_s", "p50_ms", "p99_ms", "max_ms", "errors", "non_2xx",
            "api_cores", "api_cpu_us_per_request", "wrk_cores"]
    lines = [f"N = {report['banked_signals']:,}; machine: {report['machine']}", "",
             "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for m in report["apis"].values():
        lines += ["| " + " | ".join(str(run[c]) for c in cols) + " |" for run in m["runs"]]
    at_rate = [run for m in report["apis"].values() for run in m["at_rate"]]
    if at_rate:
        cols = ["api", "route", "offered_per_s", "answered_per_s", "p50_ms", "p90_ms", "p99_ms", "max_ms", "errors",
                "non_2xx", "not_sent_at_end", "api_cores", "api_cpu_us_per_request", "load_cores"]
        lines += ["", "At a fixed rate (latency from when each request was due):", "",
                  "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        lines += ["| " + " | ".join(str(run[c]) for c in cols) + " |" for run in at_rate]
    rest = {k: v for k, v in report.items() if k not in ("apis", "machine")}
    rest["apis"] = {name: {k: v for k, v in m.items() if k not in ("runs", "at_rate")} for name, m in report["apis"].items()}
    lines += ["", "```json", json.dumps(rest, indent=2), "```"]
    return "\n".join(lines)
