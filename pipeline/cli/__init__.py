"""`hmas`: one command, several roles (worker, api, kafka, bank, submit, tail, hash, bench, ...)."""

from __future__ import annotations

import argparse
import sys

from pipeline.config import load_settings
from pipeline.logs import setup_logging


def build_parser() -> argparse.ArgumentParser:
    from ops.bench import cli as bench
    from ops.kafka import cli as kafka
    from pipeline.cli import api, banks, client, exchanges, migrate, recent, replay, run, up

    parser = argparse.ArgumentParser(prog="hmas", description="HMA Streams: hash, match and act on uploads over Kafka.")
    parser.add_argument("--log-level", default="info", help="debug, info, warning, error (default info)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (run, up, api, kafka, banks, exchanges, migrate, client, replay, recent, bench):
        module.add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.log_level)
    try:
        settings = load_settings()
    except ValueError as exc:
        print(f"hmas: configuration: {exc}", file=sys.stderr)
        return 2
    try:
        return int(args.handler(args, settings) or 0)
    except KeyboardInterrupt:
        return 130
    except CommandError as exc:
        print(f"hmas {args.command}: {exc}", file=sys.stderr)
        return 2


class CommandError(Exception):
    """A user-facing failure: printed without a traceback."""
