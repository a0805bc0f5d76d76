"""`hmas replay`: retroactive matches for content older than the ring."""

from __future__ import annotations

import argparse

from pipeline.cli import CommandError
from pipeline.config import Settings


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("replay", help="re-read hma.hashes from a time and write retroactive matches (resumable)")
    p.add_argument("--from", dest="start", required=True, help="ISO 8601, unix seconds, or -2h / -30m / -7d")
    p.add_argument("--to", dest="end", help="the same forms; default: up to now")
    p.add_argument("--bank", action="append", default=[], help="only these banks (repeatable)")
    p.add_argument("--stop-after", type=int, help="stop after this many records (resume later)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.replay import parse_time, replay

    try:
        start = parse_time(args.start)
        end = parse_time(args.end) if args.end else None
        replay(settings, start, end, args.bank, args.stop_after)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    return 0
