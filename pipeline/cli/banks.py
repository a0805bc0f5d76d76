"""`hmas bank create|add|list|remove`: bank changes produced to hma.banks and hma.bank-signals."""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from typing import Any, Callable

from pipeline import topics as T
from pipeline.bank_rename import Write, bank_swap, moved_signals, retired_signals, unfinished_rename
from pipeline.banks import InvalidBank, bank_controls, bank_record, bank_signal_record, check_bank_name, checked_bank, enabled_fields
from pipeline.cli import CommandError
from pipeline.client import Client, json_line
from pipeline.clock import now_ms
from pipeline.config import Settings
from pipeline.progress import ProgressBar
from pipeline.services.content_ids import claim_content_ids
from pipeline.signal_types import InvalidSignal
from pipeline.state.bank_view import BankView
from pipeline.state.log_reader import read_latest, read_to_end


def add_commands(sub: argparse._SubParsersAction) -> None:
    bank = sub.add_parser("bank", help="create banks and add or remove their content")
    bsub = bank.add_subparsers(dest="bank_command", required=True, metavar="ACTION")

    p = bsub.add_parser(
        "create", help="create a bank (or update its configuration); checked as the API checks it: the banks it "
                       "names must exist, distances must be within their signal type's range")
    p.add_argument("name")
    _control_options(p, CREATE_DEFAULTS)
    p.add_argument("--disabled", action="store_true", help="create the bank disabled")
    p.set_defaults(handler=create)

    p = bsub.add_parser("controls", help="show a bank's controls, or change the ones given")
    p.add_argument("name")
    _control_options(p, {})
    p.set_defaults(handler=controls)

    p = bsub.add_parser("rename", help="rename a bank: its content and ids move to the new name")
    p.add_argument("name")
    p.add_argument("new_name")
    p.set_defaults(handler=rename)

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


CREATE_DEFAULTS = {"action": "review", "distance": [], "suppressed_by": [], "flood_window": 3600, "deconfirm_disable": 0,
                   "share_to": []}


def _control_options(p: argparse.ArgumentParser, defaults: dict[str, Any]) -> None:
    """The bank control options; without defaults (`controls`), an option not given is unchanged."""
    p.add_argument("--action", default=defaults.get("action"), help="action name written on hma.actions (default review)")
    p.add_argument("--distance", action="append", default=defaults.get("distance"), metavar="TYPE:N",
                   help="match distance for a signal type, e.g. pdq:16 (repeatable)")
    p.add_argument("--suppressed-by", action="append", default=defaults.get("suppressed_by"), metavar="BANK",
                   help="a negative bank: hits are suppressed when the upload also matches it (repeatable)")
    p.add_argument("--flood-max", type=int, metavar="N", help="quarantine a signal past N matches in the window")
    p.add_argument("--flood-window", type=float, default=defaults.get("flood_window", 3600), metavar="SECONDS",
                   help="flood window (default 3600)")
    p.add_argument("--flood-baseline-multiple", type=float, metavar="X",
                   help="also require more than X times the signal's trailing baseline")
    p.add_argument("--confirmed-bank", metavar="BANK", help="where feedback-confirmed signals are copied")
    p.add_argument("--deconfirm-disable", type=int, default=defaults.get("deconfirm_disable"), metavar="SECONDS",
                   help="how long deconfirmed signals stay disabled (default 0: for good)")
    p.add_argument("--share-to", action="append", default=defaults.get("share_to"), metavar="EXCHANGE",
                   help="publish the bank's signals to this exchange (repeatable; --share-to '' stops sharing)")


def _control_changes(args: argparse.Namespace) -> dict[str, Any]:
    """The controls the options give (all of them for `create`, those given for `controls`)."""
    changes: dict[str, Any] = {
        "action": args.action, "suppressed_by": args.suppressed_by, "confirmed_bank": args.confirmed_bank,
        "deconfirm_disable_s": args.deconfirm_disable,
        "share_to": None if args.share_to is None else [x for x in args.share_to if x],
        "distances": None if args.distance is None else _parse_distances(args.distance),
        "flood": None if args.flood_max is None else {
            "max_matches": args.flood_max, "window_ms": int(args.flood_window * 1000),
            "baseline_multiple": args.flood_baseline_multiple},
    }
    try:
        for other in (changes["suppressed_by"] or []) + ([args.confirmed_bank] if args.confirmed_bank else []):
            check_bank_name(other)
    except InvalidBank as exc:
        raise CommandError(str(exc)) from None
    return {k: v for k, v in changes.items() if v is not None}


def _parse_distances(items: list[str]) -> dict[str, int]:
    out = {}
    for item in items:
        kind, _, number = item.partition(":")
        if not number.isdigit():
            raise CommandError(f"--distance {item!r}: expected TYPE:N, e.g. pdq:16")
        out[kind] = int(number)
    return out


def create(args: argparse.Namespace, settings: Settings) -> int:
    try:
        record = bank_record(args.name, **enabled_fields(0.0 if args.disabled else 1.0), **_control_changes(args))
        record = checked_bank(record, read_latest(settings, T.BANKS))
    except InvalidBank as exc:
        raise CommandError(str(exc)) from None
    client = Client(settings)
    client.produce(T.BANKS, args.name, record)
    client.flush()
    print(json_line(record))
    return 0


def controls(args: argparse.Namespace, settings: Settings) -> int:
    """A bank's controls (as GET /c/bank/<bank>/controls answers them); changed where options say."""
    banks = read_latest(settings, T.BANKS)
    bank = banks.get(args.name)
    if bank is None:
        raise CommandError(f"no bank {args.name}")
    changes = _control_changes(args)
    if changes:
        try:
            bank = checked_bank({**bank, **changes, "renamed_from": None, "updated_at": now_ms()}, banks)
        except InvalidBank as exc:
            raise CommandError(f"invalid bank controls: {exc}") from None
        client = Client(settings)
        client.produce(T.BANKS, args.name, bank)
        client.flush()
    print(json_line({"name": args.name, **bank_controls(bank)}))
    return 0


def rename(args: argparse.Namespace, settings: Settings) -> int:
    """pipeline/bank_rename.py's three steps, each produced and acknowledged before the next."""
    old, new = args.name, args.new_name
    view = BankView()
    view.apply(T.BANKS, read_to_end(settings, T.BANKS))
    if old not in view.banks and new not in view.banks:
        raise CommandError(f"no bank {old}")
    view.apply(T.BANK_SIGNALS, read_to_end(settings, T.BANK_SIGNALS))
    if unfinished_rename(view, old, new):
        return _finish_rename(settings, view, old, new)
    if old not in view.banks:
        raise CommandError(f"no bank {old}")
    try:
        check_bank_name(new)
    except InvalidBank as exc:
        raise CommandError(str(exc)) from None
    if new in view.banks:
        raise CommandError(f"bank {new} already exists")
    moved, moved_from = moved_signals(view, old, new)
    progress = ProgressBar(f"renaming {old} to {new}", 2 * len(moved), unit="records")
    produce = _producer_of(settings, progress)
    produce(moved)  # the local view stays as read: the steps below read only what it held before
    produce(bank_swap(view, view.banks[old], new))
    produce(retired_signals(view, old, new, moved_from))
    progress.finish()
    print(json_line({"name": new, "renamed_from": old, "signals": len(moved)}))
    return 0


def _finish_rename(settings: Settings, view: BankView, old: str, new: str) -> int:
    """A rename interrupted after its bank record: the old name's signals still there are moved
    and removed (step 3 again)."""
    left = retired_signals(view, old, new, {})
    progress = ProgressBar(f"finishing the rename of {old} to {new}", len(left), unit="records")
    _producer_of(settings, progress)(left)
    progress.finish()
    print(json_line({"name": new, "renamed_from": old, "signals_left": sum(1 for _, _, r in left if r is None)}))
    return 0


def _producer_of(settings: Settings, progress: ProgressBar) -> Callable[[list[Write]], None]:
    client = Client(settings)

    def produce(writes: list[Write]) -> None:
        """Produced in chunks, each acknowledged before the next (flush), the progress shown."""
        for start in range(0, len(writes), 10_000):
            chunk = writes[start:start + 10_000]
            for spec, key, record in chunk:
                client.produce(spec, key, record)
            client.flush()
            progress.update(progress.done + sum(1 for spec, _, _ in chunk if spec is T.BANK_SIGNALS))
    return produce


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
