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
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

from ops.bench.e2e_bench import load_bank
from ops.bench.harness import BenchPipeline, log
from ops.bench.index_bench import machine, rss_mb, run_peer
from ops.kafka.broker import free_port
from pipeline import topics as T
from pipeline.banks import bank_signal_record

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


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_ready(url: str, timeout_s: float = 1800) -> float:
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


def planted(codes: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """Near-duplicates of banked codes, 0 to 31 bits flipped."""
    out = codes[rng.integers(0, len(codes), count)].copy()
    bits = np.unpackbits(out, axis=1)
    for i in range(count):
        bits[i, rng.choice(256, i % 32, replace=False)] ^= 1
    return np.packbits(bits, axis=1)


class ApiUnderTest:
    """`hmas api` processes of the bench, one port; `pids` are the processes serving it."""

    def __init__(self, p: BenchPipeline, port: int, processes: int) -> None:
        self.p, self.port, self.processes = p, port, processes
        self.url = f"http://127.0.0.1:{port}"
        self.runs = 0
        self.procs: list[subprocess.Popen] = []

    def start(self) -> float:
        """Start and wait for /status 200; seconds it took."""
        self.runs += 1
        started = time.perf_counter()
        env = {"HMAS_API_PROCESSES": str(self.processes)}
        self.procs = [self.p.start_command("api", "--port", str(self.port), log_name=f"api-{self.runs}", env=env)]
        wait_ready(self.url)
        return time.perf_counter() - started

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

    def rss_mb(self) -> dict[str, float]:
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
        return self.p.worker_log(f"api-{self.runs}")


def run_api_bench(n: int, seconds: float, connections: list[int], routes: list[str], processes: int = 1,
                  tail_share: float = 0.01) -> dict[str, Any]:
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

        api = ApiUnderTest(p, free_port(), processes)
        cold_s = api.start()
        log(f"api: ready after {cold_s:,.1f}s (cold, {n:,} signals read from the topic)")
        drive(api.url, p.dir / f"{routes[0]}.paths", script, max(connections), 3, api.pids)  # warm-up
        runs = []
        for route in routes:
            for c in connections:
                run = {"route": route, **drive(api.url, p.dir / f"{route}.paths", script, c, seconds, api.pids)}
                runs.append(run)
                log(f"api: {route} c={c}: {run['requests_per_s']:,}/s, p50 {run['p50_ms']} ms, p99 {run['p99_ms']} ms, "
                    f"api {run['api_cores']} cores, wrk {run['wrk_cores']}")
        memory = api.rss_mb()
        answers = [get_json(f"{api.url}/m/raw_lookup?signal_type=pdq&include_distance=true&signal={q.tobytes().hex()}")
                   for q in checked]

        api.stop()
        tail = int(n * tail_share)
        fresh = rng.integers(0, 256, (max(tail // 2, 1), 32), dtype=np.uint8)
        for i, code in enumerate(fresh):
            p.client.produce(T.BANK_SIGNALS, *bank_signal_record("BENCH", n + i + 1, "pdq", code.tobytes().hex()))
        removed = rng.choice(n, max(tail - len(fresh), 1), replace=False)
        for i in removed:
            key, _ = bank_signal_record("BENCH", int(i) + 1, "pdq", codes[i].tobytes().hex())
            p.client.produce(T.BANK_SIGNALS, key, None)
        p.client.flush(600)
        restart_s = api.start()
        log(f"api: ready again after {restart_s:,.1f}s ({len(fresh) + len(removed):,} bank changes while it was down)")
        loaded = [ln for ln in api.log().splitlines() if "loaded from snapshot" in ln]
        after = {
            "new_signal_found": get_json(f"{api.url}/m/raw_lookup?signal_type=pdq&signal={fresh[-1].tobytes().hex()}")
            ["matches"] == [n + len(fresh)],
            "removed_signal_gone": int(removed[0]) + 1 not in get_json(
                f"{api.url}/m/raw_lookup?signal_type=pdq&signal={codes[removed[0]].tobytes().hex()}")["matches"],
        }
        api.stop()

        log("index: the same codes and queries, batches of 1,000, one core (its own process) ...")
        index = run_peer("hma-streams", p.dir, len(checked) + len(queries), [31])
        truth = [sorted((cid + 1, d) for cid, d in hits) for hits in index["hits"]["31"][:len(checked)]]
        mine = [sorted((int(m["bank_content_id"]), int(m["distance"])) for m in a["matches"]) for a in answers]
        exact = sum(a == b for a, b in zip(mine, truth))
    best = max(r["requests_per_s"] for r in runs)
    return {
        "banked_signals": n, "machine": machine(), "api_processes": processes, "seconds_per_run": seconds,
        "runs": runs, **memory,
        "ready_cold_s": round(cold_s, 1), "ready_after_restart_s": round(restart_s, 1),
        "changes_while_down": len(fresh) + len(removed), "snapshot_log": loaded[-1] if loaded else None, **after,
        "index_lookups_per_s": round(index["lookups_per_s"]),
        "http_vs_index": round(best / index["lookups_per_s"], 2),
        "answers_checked": len(checked), "answers_identical_to_index": exact,
        "checked_with_hits": sum(1 for t in truth if t),
    }


def markdown(report: dict[str, Any]) -> str:
    cols = ["route", "connections", "requests_per_s", "p50_ms", "p99_ms", "max_ms", "errors", "non_2xx",
            "api_cores", "api_cpu_us_per_request", "wrk_cores"]
    lines = [f"N = {report['banked_signals']:,}; API processes: {report['api_processes']}; machine: {report['machine']}", "",
             "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(run[c]) for c in cols) + " |" for run in report["runs"]]
    rest = {k: v for k, v in report.items() if k not in ("runs", "machine")}
    lines += ["", "```json", json.dumps(rest, indent=2), "```"]
    return "\n".join(lines)
