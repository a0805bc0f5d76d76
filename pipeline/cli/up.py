"""`hmas up`: everything on one machine: a local broker (unless one is configured), topics, the
worker and the HTTP API (with a generated token for its mutating routes unless one is configured).

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

from pipeline.config import Settings


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("up", help="run everything locally: broker, topics, worker (Ctrl-C stops it all)")
    p.add_argument("--demo", action="store_true", help="seed a sample bank, submit sample uploads, show actions")
    p.set_defaults(handler=up)


def _spawn(role: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "pipeline", *role], env=env, start_new_session=True)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def up(args: argparse.Namespace, settings: Settings) -> int:
    from ops.kafka.cli import local_broker
    from pipeline.admin import ensure_topics
    from pipeline.demo import run_demo

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
    children: list[subprocess.Popen] = []
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
        children.append(_spawn(["--log-level", level, "worker"], env))
        children.append(_spawn(["--log-level", level, "api", *(["--dev"] if args.demo else [])], env))
        children.append(_spawn(["--log-level", level, "fetcher"], env))
        print(f"HTTP API on http://{settings.api_host}:{settings.api_port} "
              f"(mutating routes need {token_note})", flush=True)
        print(f"web UI on http://{settings.api_host}:{settings.api_port}/ui "
              f"(changing banks there asks for the API token)", flush=True)
        if args.demo:
            run_demo(settings, settings.data_dir / "demo-media")
        else:
            print("running; Ctrl-C stops everything", flush=True)
            children[0].wait()
    except KeyboardInterrupt:
        print("\nstopping", flush=True)
    finally:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in children:
            try:
                child.wait(30)
            except subprocess.TimeoutExpired:
                child.kill()
        if broker is not None:
            broker.stop()
            print("stopped the local Kafka broker", flush=True)
    return 0
