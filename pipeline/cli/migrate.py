"""`hmas migrate from-hma`: an upstream HMA deployment's banks, content, exchanges and signal type
settings onto this deployment's topics (connectors/hma/migration.py)."""

from __future__ import annotations

import argparse

from pipeline.cli import CommandError
from pipeline.client import json_line
from pipeline.config import Settings


def add_commands(sub: argparse._SubParsersAction) -> None:
    migrate = sub.add_parser("migrate", help="bring an existing deployment's data over")
    msub = migrate.add_subparsers(dest="migrate_command", required=True, metavar="SOURCE")
    p = msub.add_parser(
        "from-hma", help="from upstream HMA: its PostgreSQL database (postgresql://...) or, with --from-api, its "
                         "HTTP API; idempotent and resumable")
    p.add_argument("dsn", nargs="?", metavar="postgresql://USER:PASSWORD@HOST:PORT/DB",
                   help="the HMA database (its tables bank, bank_content, content_signal, exchange, ...)")
    p.add_argument("--from-api", metavar="URL", help="read through HMA's HTTP API instead of its database")
    p.add_argument("--api-token", default="", help="bearer token for --from-api, if the API wants one")
    p.add_argument("--max-gap", type=int, default=1000, metavar="N",
                   help="--from-api: stop looking for content after N ids in a row that no bank holds (default 1000)")
    p.add_argument("--dry-run", action="store_true", help="report what would be written; write nothing")
    p.add_argument("--batch", type=int, default=10_000, help="content items per acknowledged batch (default 10,000)")
    p.set_defaults(handler=from_hma)


def from_hma(args: argparse.Namespace, settings: Settings) -> int:
    from connectors.hma.migration import Migration
    from connectors.hma.source import SourceError

    if (args.dsn is None) == (args.from_api is None):
        raise CommandError("give the HMA database URL (postgresql://...) or --from-api URL (one of them)")
    try:
        source = _source(args)
    except SourceError as exc:
        raise CommandError(str(exc)) from None
    try:
        report = Migration(settings, source, dry_run=args.dry_run, batch=args.batch).run()
    except SourceError as exc:
        raise CommandError(str(exc)) from None
    finally:
        source.close()
    print(json_line(report.as_json()))
    if report.conflicts:
        raise CommandError(f"{len(report.conflicts)} content item(s) not migrated: their ids are taken here "
                           f"(first: {report.conflicts[0]}); migrate into a fresh deployment or after a factory reset")
    return 0


def _source(args: argparse.Namespace):
    if args.from_api:
        from connectors.hma.api_source import ApiSource

        return ApiSource(args.from_api, args.api_token, max_gap=args.max_gap)
    from connectors.hma.source import PostgresSource

    return PostgresSource(args.dsn)
