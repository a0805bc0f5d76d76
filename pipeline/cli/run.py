"""Process roles: `hmas worker`, `hmas topics create`."""

from __future__ import annotations

import argparse

from pipeline.config import Settings


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("worker", help="run the Faust worker: hasher, matcher, actioner")
    p.set_defaults(handler=worker)

    p = sub.add_parser("topics", help="create the pipeline's topics (idempotent)")
    p.add_argument("action", choices=("create",))
    p.set_defaults(handler=topics)


def topics(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.admin import ensure_topics

    ensure_topics(settings.bootstrap_servers, settings)
    return 0


def worker(args: argparse.Namespace, settings: Settings) -> int:
    from faust.worker import Worker

    from pipeline.admin import ensure_topics
    from pipeline.app import create_app

    from pipeline.metrics import serve

    ensure_topics(settings.bootstrap_servers, settings)
    serve(settings.metrics_port)
    app, _ctx = create_app(settings)
    Worker(
        app,
        loglevel=args.log_level,
        quiet=True,
        redirect_stdouts=False,
        override_logging=False,
    ).execute_from_commandline()
    return 0
