"""`hmas api`: the HTTP API and its own view of the banks."""

from __future__ import annotations

import argparse

from pipeline.config import Settings


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("api", help="run the HTTP API (upstream HMA's routes, bank controls)")
    p.add_argument("--host", help="default 127.0.0.1 (HMAS_API_HOST)")
    p.add_argument("--port", type=int, help="default 5000 (HMAS_API_PORT)")
    p.add_argument("--processes", type=int,
                   help="server processes sharing one bank view, one port (default 1; HMAS_API_PROCESSES)")
    p.add_argument("--dev", action="store_true",
                   help="serve upstream's /dev routes (factory reset, seeding); never in production")
    p.set_defaults(handler=api)


def api(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.admin import ensure_topics
    from pipeline.api.serve import serve

    ensure_topics(settings.bootstrap_servers, settings)
    if args.dev:
        settings = settings.with_overrides(api_dev_routes=True)
    if args.processes:
        settings = settings.with_overrides(api_processes=args.processes)
    return serve(settings, args.host or settings.api_host, args.port or settings.api_port,
                 (lambda text: print(text, flush=True)) if args.log_level in ("debug", "info") else None)
