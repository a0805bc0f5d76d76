"""`hmas bank create|add|list|remove`: bank changes produced to hma.banks and hma.bank-signals."""

from __future__ import annotations

import argparse
import json
from collections import defaultdict

from pipeline import topics as T
from pipeline.banks import InvalidBank, bank_record, bank_signal_record, check_bank_name, checked_bank, enabled_fields
from pipeline.cli import CommandError
from pipeline.client import Client, json_line
from pipeline.config import Settings
from pipeline.services.content_ids import claim_content_ids
from pipeline.signal_types import InvalidSignal
from pipeline.state.log_reader import read_latest


def add_commands(sub: argparse._SubParsersAction) -> None:
    bank = sub.add_parser("bank", help="create banks and add or remove their content")
    bsub = bank.add_subparsers(dest="bank_command", required=True, metavar="ACTION")

    p = bsub.add_parser(
        "create", help="create a bank (or update its configuration); checked as the API checks it: the banks it "
                       "names must exist, distances must be within their signal type's range")
    p.add_argument("name")
    p.add_argument("--action", default="review", help="action name written on hma.actions (default review)")
    p.add_argument("--distance", action="append", default=[], metavar="TYPE:N",
                   help="match distance for a signal type, e.g. pdq:16 (repeatable)")
    p.add_argument("--suppressed-by", action="append", default=[], metavar="BANK",
                   help="a negative bank: hits are suppressed when the upload also matches it (repeatable)")
    p.add_argument("--flood-max", type=int, metavar="N", help="quarantine a signal past N matches in the window")
    p.add_argument("--flood-window", type=float, default=3600, metavar="SECONDS", help="flood window (default 3600)")
    p.add_argument("--flood-baseline-multiple", type=float, metavar="X",
                   help="also require more than X times the signal's trailing baseline")
    p.add_argument("--confirmed-bank", metavar="BANK", help="where feedback-confirmed signals are copied")
    p.add_argument("--deconfirm-disable", type=int, default=0, metavar="SECONDS",
                   help="how long deconfirmed signals stay disabled (default 0: for good)")
    p.add_argument("--disabled", action="store_true", help="create the bank disabled")
    p.set_defaults(handler=create)

    p = bsub.add_parser("add", help="add content to a bank: a file to hash, or a signal")
    p.add_argument("name")
    p.add_argument("file", nargs="?")
    p.add_argument("--signal", metavar="TYPE:VALUE", help="a signal instead of a file, e.g. pdq:<64 hex>")
    p.add_argument("--metadata", default="{}", help="JSON object of strings stored with the content")
    p.set_defaults(handler=add)

    p = bsub.add_parser("list", help="list banks, or the content of one bank")
    p.add_argument("name", nargs="?")
    p.set_defaults(handler=list_banks)

    p = bsub.add_parser("remove", help="remove one content item from a bank")
    p.add_argument("name")
    p.add_argument("content_id", type=int)
    p.set_defaults(handler=remove)


def _parse_distances(items: list[str]) -> dict[str, int]:
    out = {}
    for item in items:
        kind, _, number = item.partition(":")
        if not number.isdigit():
            raise CommandError(f"--distance {item!r}: expected TYPE:N, e.g. pdq:16")
        out[kind] = int(number)
    return out


def create(args: argparse.Namespace, settings: Settings) -> int:
    flood = None
    if args.flood_max is not None:
        flood = {"max_matches": args.flood_max, "window_ms": int(args.flood_window * 1000),
                 "baseline_multiple": args.flood_baseline_multiple}
    try:
        record = bank_record(
            args.name, action=args.action, distances=_parse_distances(args.distance),
            **enabled_fields(0.0 if args.disabled else 1.0),
            suppressed_by=args.suppressed_by, flood=flood, confirmed_bank=args.confirmed_bank,
            deconfirm_disable_s=args.deconfirm_disable,
        )
        record = checked_bank(record, read_latest(settings, T.BANKS))
    except InvalidBank as exc:
        raise CommandError(str(exc)) from None
    client = Client(settings)
    client.produce(T.BANKS, args.name, record)
    client.flush()
    print(json_line(record))
    return 0


def add(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.hashing import HashingError, detect_content_type, hash_content

    try:
        check_bank_name(args.name)
        metadata = json.loads(args.metadata)
        if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
            raise CommandError("--metadata must be a JSON object of strings")
    except (InvalidBank, json.JSONDecodeError) as exc:
        raise CommandError(str(exc)) from None
    if (args.file is None) == (args.signal is None):
        raise CommandError("give a FILE or --signal TYPE:VALUE (one of them)")
    if args.name not in read_latest(settings, T.BANKS):
        raise CommandError(f"no bank {args.name}; create it with `hmas bank create {args.name}`")
    if args.signal:
        kind, _, value = args.signal.partition(":")
        signals = {kind: value}
    else:
        try:
            with open(args.file, "rb") as fh:
                data = fh.read()
            hashed = hash_content(detect_content_type(data, args.file), data)
            signals = {kind: sv.value for kind, sv in hashed.items()}
        except (HashingError, OSError) as exc:
            raise CommandError(f"{args.file}: {exc}") from None
    client = Client(settings)
    [content_id] = claim_content_ids(settings, args.name)
    try:
        records = [bank_signal_record(args.name, content_id, kind, value, metadata) for kind, value in signals.items()]
    except InvalidSignal as exc:
        raise CommandError(str(exc)) from None
    for key, record in records:
        client.produce(T.BANK_SIGNALS, key, record)
    client.flush()
    print(json_line({"bank": args.name, "bank_content_id": content_id, "signals": signals}))
    return 0


def list_banks(args: argparse.Namespace, settings: Settings) -> int:
    banks = read_latest(settings, T.BANKS)
    signals = read_latest(settings, T.BANK_SIGNALS)
    if args.name is None:
        counts: dict[str, int] = defaultdict(int)
        for record in signals.values():
            counts[record["bank"]] += 1
        for name, bank in sorted(banks.items()):
            print(json_line({**bank, "signals": counts[name]}))
        return 0
    if args.name not in banks:
        raise CommandError(f"no bank {args.name}")
    for record in sorted(signals.values(), key=lambda r: (r["bank_content_id"], r["signal_type"])):
        if record["bank"] == args.name:
            print(json_line(record))
    return 0


def remove(args: argparse.Namespace, settings: Settings) -> int:
    keys = [key for key, r in read_latest(settings, T.BANK_SIGNALS).items()
            if r["bank"] == args.name and r["bank_content_id"] == args.content_id]
    if not keys:
        raise CommandError(f"bank {args.name} has no content {args.content_id}")
    client = Client(settings)
    for key in keys:
        client.produce(T.BANK_SIGNALS, key, None)
    client.flush()
    print(json_line({"bank": args.name, "bank_content_id": args.content_id, "removed_signals": len(keys)}))
    return 0
