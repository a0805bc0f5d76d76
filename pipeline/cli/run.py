"""Process roles: `hmas worker`, `hmas topics create`."""

from __future__ import annotations

import argparse

from pipeline.cli import CommandError
from pipeline.config import Settings


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("worker", help="run the Faust worker: hasher, matcher, actioner")
    p.add_argument("--shard", type=int, default=None, metavar="K",
                   help="shard mode: run the matcher of index shard K of HMAS_INDEX_SHARDS (same as HMAS_INDEX_SHARD)")
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

    from pipeline.services.status_server import StatusServer

    if args.shard is not None:
        if settings.index_shards < 2:
            raise CommandError("--shard needs HMAS_INDEX_SHARDS of 2 or more (shard mode)")
        if not 0 <= args.shard < settings.index_shards:
            raise CommandError(f"--shard {args.shard}: shards are 0 to {settings.index_shards - 1}")
        settings = settings.with_overrides(index_shard=args.shard)
    ensure_topics(settings.bootstrap_servers, settings)
    app, services = create_app(settings)
    StatusServer(settings.metrics_host, settings.metrics_port, lambda: services.bank_view.is_ready).start()
    Worker(
        app,
        loglevel=args.log_level,
        quiet=True,
        redirect_stdouts=False,
        override_logging=False,
    ).execute_from_commandline()
    return 0
