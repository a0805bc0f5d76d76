"""What the pipeline benches share: their own broker on free ports, topics under a fresh prefix,
worker processes they start and stop, and waits on the output topics."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from ops.kafka.broker import LocalBroker, free_ports
from ops.kafka.cluster import LocalCluster, replication_for
from pipeline import topics as T
from pipeline.admin import ensure_topics
from pipeline.client import Client
from pipeline.config import Settings, load_settings
from pipeline.uploads import new_upload


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


class BenchPipeline:
    """A broker (or a local cluster of `brokers`, topics replicated on every node), topics and
    settings in a temporary folder; `with BenchPipeline() as p: ...`."""

    def __init__(self, brokers: int = 1, bootstrap: str | None = None, **env: str) -> None:
        """With `bootstrap`, on that running broker (a test session's) instead of one of its own."""
        self._tmp = tempfile.TemporaryDirectory(prefix="hmas-bench-")
        self.dir = Path(self._tmp.name)
        self.broker: LocalBroker | LocalCluster | None
        if bootstrap:
            self.broker = None
        elif brokers == 1:
            self.broker = LocalBroker(self.dir / "kafka", *free_ports(2))
        else:
            ports = free_ports(2 * brokers)
            self.broker = LocalCluster(self.dir / "kafka", list(zip(ports[::2], ports[1::2])))
            replication, min_isr = replication_for(brokers)
            env = {"HMAS_TOPIC_REPLICATION": str(replication), "HMAS_TOPIC_MIN_ISR": str(min_isr), **env}
        self.bootstrap = bootstrap or self.broker.bootstrap
        self.extra_env = env
        self.workers: list[subprocess.Popen] = []
        self.log_names: dict[int, str] = {}

    def __enter__(self) -> "BenchPipeline":
        # a bench stopped with SIGTERM still stops its broker and workers (__exit__ runs)
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
        if self.broker is not None:
            self.broker.start()
        self.env = {"KAFKA_BOOTSTRAP_SERVERS": self.bootstrap, "HMAS_TOPIC_PREFIX": f"b{uuid.uuid4().hex[:6]}.",
                    "HMAS_DATA_DIR": str(self.dir), "HMAS_RECENT_ENABLED": "0", **self.extra_env}
        self.settings: Settings = load_settings(env=self.env, config_file=os.devnull)
        ensure_topics(self.bootstrap, self.settings)
        self.client = Client(self.settings)
        return self

    def __exit__(self, *exc: Any) -> None:
        for worker in list(self.workers):  # stop_worker removes it from the list
            self.stop_worker(worker)
        if self.broker is not None:
            self.broker.stop()
        self._tmp.cleanup()

    def start_worker(self, *args: str, log_name: str = "worker", data_dir: Path | None = None,
                     env: dict[str, str] | None = None) -> subprocess.Popen:
        """A worker process; replicas on this one host need a data dir each (their RocksDB tables
        and view snapshots are their own)."""
        return self.start_command("worker", *args, log_name=log_name, data_dir=data_dir, env=env)

    def start_command(self, *args: str, log_name: str, data_dir: Path | None = None,
                      env: dict[str, str] | None = None, source: Path | None = None) -> subprocess.Popen:
        """An `hmas` command in its own process (a worker, the API), logging to <log_name>.log;
        stopped with `stop_worker` or when the bench ends. `source`: run the `pipeline` package of
        another checkout (a before/after comparison on one machine)."""
        out = open(self.dir / f"{log_name}.log", "ab")
        env = {**os.environ, **self.env, **({"HMAS_DATA_DIR": str(data_dir)} if data_dir else {}), **(env or {})}
        process = subprocess.Popen([sys.executable, "-m", "pipeline", "--log-level", "info", *args],
                                   env=env, stdout=out, stderr=subprocess.STDOUT, cwd=source)
        self.workers.append(process)
        self.log_names[process.pid] = log_name
        return process

    def stop_worker(self, worker: subprocess.Popen, timeout_s: float = 120, crash: bool = False) -> None:
        """SIGTERM, as a deployment stops a worker; with `crash`, SIGKILL: no shutdown at all."""
        if worker.poll() is None:
            if crash:
                worker.kill()
            else:
                worker.terminate()
            try:
                worker.wait(timeout_s)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
        if worker in self.workers:
            self.workers.remove(worker)

    def worker_log(self, log_name: str = "worker") -> str:
        return (self.dir / f"{log_name}.log").read_text(errors="replace")

    def log_excerpt(self, worker: subprocess.Popen, tail: int = 30) -> str:
        """A process's first error lines (what stopped it; a crash's last lines are often only the
        cancellations it caused) and the end of its log."""
        lines = self.worker_log(self.log_names[worker.pid]).splitlines()
        errors = [line for line in lines if ("level=error" in line or "level=critical" in line)
                  and "keepalive is not responding" not in line][:5]  # a busy machine, not a cause
        return "\n".join(["first errors:", *errors, "log ends:", *lines[-tail:]])

    def wait_until_matching(self, code_hex: str, timeout_s: float = 1800) -> float:
        """Seconds until an upload of a banked code comes out matched: a probe upload each round,
        and each round reads hma.matches to its end looking for any probe sent so far (in
        exactly-once mode a match becomes readable only when the worker's transaction commits,
        often after the next probe was sent)."""
        started = time.perf_counter()
        deadline = started + timeout_s
        probes: set[str] = set()
        while time.perf_counter() < deadline:
            cid = f"probe-{uuid.uuid4().hex[:8]}"
            probes.add(cid)
            self.client.produce(T.UPLOADS, cid, new_upload(cid, "photo", signals={"pdq": code_hex}))
            self.client.flush()
            for key, value in Client(self.settings).read(T.MATCHES, idle_timeout_s=2, timeout_s=60, raw=True):
                if key in probes and T.MATCHES.codec.decode(value)["matches"]:
                    return time.perf_counter() - started
            for worker in self.workers:
                if worker.poll() is not None:
                    raise RuntimeError(f"worker exited with {worker.returncode}; {self.log_excerpt(worker)}")
        raise TimeoutError(f"nothing matched {code_hex[:16]}... within {timeout_s}s")
