"""The processes of one deployment on one machine (`hmas up --workers N --shards S`): which roles,
with which settings each, and the Prometheus targets they make.

The same topology as docker-compose.yml and the Helm chart: N main workers in one consumer group
(the first runs the ring of recent hashes, the others have HMAS_RECENT_ENABLED=0), in shard mode
(S >= 2) one shard worker per index shard, one HTTP API, one exchange fetcher. Processes on one
host each need a data folder of their own (RocksDB locks it) and a metrics port of their own.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.config import Settings

DEFAULT_METRICS_PORT = 9464
TARGETS_DIR = "prometheus-targets"  # in the data folder; ops/monitoring/prometheus.yml reads it


@dataclass(frozen=True)
class LocalProcess:
    name: str  # worker-0, shard-1, api, fetcher
    job: str  # the Prometheus job: hmas-worker, hmas-api, hmas-fetcher
    args: tuple[str, ...]  # after `hmas`
    env: dict[str, str] = field(default_factory=dict)  # on top of the environment `hmas up` runs in
    metrics_port: int = 0  # where its /metrics and /status answer


def plan(settings: Settings, workers: int, shards: int) -> list[LocalProcess]:
    """The processes to start, in order: main workers, shard workers, the API, the fetcher."""
    if workers < 1:
        raise ValueError("--workers must be 1 or more")
    if shards < 1:
        raise ValueError("--shards must be 1 or more")
    base = settings.metrics_port or DEFAULT_METRICS_PORT
    shared = {"HMAS_INDEX_SHARDS": str(shards)}
    processes = []
    for i in range(workers):
        env = {**shared, "HMAS_METRICS_PORT": str(base + i)}
        if i:
            env |= {"HMAS_RECENT_ENABLED": "0", "HMAS_DATA_DIR": str(settings.data_dir / f"worker-{i}")}
        processes.append(LocalProcess(f"worker-{i}", "hmas-worker", ("worker",), env, base + i))
    if shards > 1:
        for k in range(shards):
            port = base + workers + k
            processes.append(LocalProcess(f"shard-{k}", "hmas-worker", ("worker", "--shard", str(k)),
                                          {**shared, "HMAS_METRICS_PORT": str(port)}, port))
    fetcher_port = base + workers + (shards if shards > 1 else 0)
    processes.append(LocalProcess("api", "hmas-api", ("api",), dict(shared), settings.api_port))
    processes.append(LocalProcess("fetcher", "hmas-fetcher", ("fetcher",),
                                  {**shared, "HMAS_METRICS_PORT": str(fetcher_port)}, fetcher_port))
    return processes


def write_prometheus_targets(settings: Settings, processes: list[LocalProcess]) -> Path:
    """One file_sd file per job in <data dir>/prometheus-targets/, naming the processes started."""
    folder = settings.data_dir / TARGETS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    for job in ("hmas-worker", "hmas-api", "hmas-fetcher"):
        targets = [{"targets": [f"{_reachable(settings.api_host if p.job == 'hmas-api' else settings.metrics_host)}"
                                f":{p.metrics_port}"],
                    "labels": {"process": p.name}}
                   for p in processes if p.job == job]
        (folder / f"{job.removeprefix('hmas-')}.json").write_text(json.dumps(targets, indent=1) + "\n")
    return folder


def _reachable(host: str) -> str:
    """The address to scrape a process listening on `host` at (any address: loopback)."""
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
