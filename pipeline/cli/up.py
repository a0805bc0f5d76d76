"""`hmas up`: everything on one machine: a local broker (unless one is configured), topics, the
workers (`--workers N`; in shard mode, `--shards S`, one shard worker per shard too), the HTTP API
(with a generated token for its mutating routes unless one is configured) and the exchange
fetcher, each with its metrics, and the Prometheus targets naming them (pipeline/topology.py).

With --demo (what `make run` does) it also seeds a sample bank, submits uploads and shows the
actions. Ctrl-C stops every process it started, and the broker if it started it.
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import subprocess
import sys
import time

from pipeline.cli import CommandError
from pipeline.config import Settings


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("up", help="run everything locally: broker, topics, worker (Ctrl-C stops it all)")
    p.add_argument("--demo", action="store_true", help="seed a sample bank, submit sample uploads, show actions")
    p.add_argument("--workers", type=int, default=1, metavar="N",
                   help="main workers (one consumer group; more split the input partitions), default 1")
    p.add_argument("--shards", type=int, default=None, metavar="S",
                   help="index shards (shard mode when 2 or more: one shard worker each); default HMAS_INDEX_SHARDS")
    p.set_defaults(handler=up)


def _spawn(role: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "pipeline", *role], env=env, start_new_session=True)


def _wait_for_any(children: dict[str, subprocess.Popen]) -> None:
    """Until one process ends: then say which, and everything stops."""
    while True:
        for name, child in children.items():
            if child.poll() is not None:
                print(f"{name} exited with status {child.returncode}; stopping everything", flush=True)
                return
        time.sleep(1)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def up(args: argparse.Namespace, settings: Settings) -> int:
    from ops.kafka.cli import local_broker
    from pipeline.admin import ensure_topics
    from pipeline.demo import run_demo
    from pipeline.topology import plan, write_prometheus_targets

    try:
        processes = plan(settings, args.workers, settings.index_shards if args.shards is None else args.shards)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    broker = None
    if settings.uses_local_broker:
        broker = local_broker(settings)
        if broker.is_running():
            print(f"using the local broker already running on {broker.bootstrap}", flush=True)
            broker = None  # not ours to stop
        else:
            broker.start()
            print(f"started the local Kafka broker on {broker.bootstrap}", flush=True)
    else:
        print(f"using the Kafka cluster at {settings.bootstrap_servers}", flush=True)
    children: dict[str, subprocess.Popen] = {}
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        ensure_topics(settings.bootstrap_servers, settings)
        env = os.environ.copy()
        token_note = "the configured token"
        if not settings.api_token:
            env["HMAS_API_TOKEN"] = secrets.token_urlsafe(24)
            token_note = f"Authorization: Bearer {env['HMAS_API_TOKEN']}"
        # The demo's own lines are what the user reads; the other processes only say what goes wrong.
        level = "warning" if args.demo else args.log_level
        for process in processes:
            dev = ["--dev"] if args.demo and process.name == "api" else []
            children[process.name] = _spawn(["--log-level", level, *process.args, *dev], {**env, **process.env})
            if process.name != "api":
                print(f"{process.name}: metrics and /status on http://{settings.metrics_host}:{process.metrics_port}",
                      flush=True)
        targets = write_prometheus_targets(settings, processes)
        print(f"Prometheus targets in {targets} (ops/monitoring/prometheus.yml reads them)", flush=True)
        print(f"HTTP API on http://{settings.api_host}:{settings.api_port} "
              f"(mutating routes need {token_note})", flush=True)
        print(f"web UI on http://{settings.api_host}:{settings.api_port}/ui "
              f"(changing banks there asks for the API token)", flush=True)
        if args.demo:
            run_demo(settings, settings.data_dir / "demo-media")
        else:
            print("running; Ctrl-C stops everything", flush=True)
            _wait_for_any(children)
    except KeyboardInterrupt:
        print("\nstopping", flush=True)
    finally:
        for child in children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in children.values():
            try:
                child.wait(30)
            except subprocess.TimeoutExpired:
                child.kill()
        if broker is not None:
            broker.stop()
            print("stopped the local Kafka broker", flush=True)
    return 0
