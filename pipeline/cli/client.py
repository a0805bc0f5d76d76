"""Client commands: `hmas submit`, `hmas tail`, `hmas hash`."""

from __future__ import annotations

import argparse
import re
import sys
import uuid

from pipeline.cli import CommandError
from pipeline.client import Client, json_line
from pipeline.config import Settings
from pipeline.topics import UPLOADS, spec_for
from pipeline.signal_types import content_type_of, content_types
from pipeline.uploads import InvalidUpload, new_upload

URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("submit", help="produce an upload to hma.uploads: a file, a URL or a signal")
    p.add_argument("source", nargs="?", help="a file (sent inline) or an http(s) URL")
    p.add_argument("--signal", action="append", default=[], metavar="TYPE:VALUE",
                   help="a precomputed signal instead of content, e.g. pdq:<64 hex> (repeatable)")
    p.add_argument("--content-id", help="default: a new random id")
    p.add_argument("--content-type", choices=content_types(),
                   help="default: detected from the file, or photo (url: the URL is the content, not fetched)")
    p.add_argument("--metadata", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--avro", action="store_true", help="encode with Avro single-object encoding instead of JSON")
    p.set_defaults(handler=submit)

    p = sub.add_parser("tail", help="print the decoded records of a topic as JSON lines")
    p.add_argument("topic", help="e.g. matches, actions, dead-letters (or the full name)")
    p.add_argument("--new", action="store_true", help="only records produced from now on")
    p.add_argument("--max", type=int, help="stop after this many records")
    p.add_argument("--idle", type=float, help="stop after this many seconds without a record")
    p.add_argument("--keys", action="store_true", help="print {\"key\": ..., \"value\": ...}")
    p.set_defaults(handler=tail)

    p = sub.add_parser("hash", help="hash files; one JSON line per file")
    p.add_argument("files", nargs="+")
    p.set_defaults(handler=hash_command)


def build_upload(args: argparse.Namespace) -> dict:
    from pipeline.hashing import detect_content_type

    content_id = args.content_id or f"upload-{uuid.uuid4().hex[:12]}"
    metadata = dict(item.partition("=")[::2] for item in args.metadata)
    if (args.source is None) == (not args.signal):
        raise CommandError("give a FILE or URL, or --signal TYPE:VALUE")
    try:
        if args.signal:
            signals = dict(item.partition(":")[::2] for item in args.signal)
            kind = args.content_type or content_type_of(signals)
            return new_upload(content_id, kind, signals=signals, metadata=metadata)
        if URL.match(args.source):
            return new_upload(content_id, args.content_type or "photo", url=args.source, metadata=metadata)
        with open(args.source, "rb") as fh:
            data = fh.read()
        kind = args.content_type or detect_content_type(data, args.source)
        return new_upload(content_id, kind, content=data, metadata=metadata)
    except (InvalidUpload, OSError, ValueError) as exc:
        raise CommandError(str(exc)) from None


def submit(args: argparse.Namespace, settings: Settings) -> int:
    upload = build_upload(args)
    client = Client(settings, encoding="avro" if args.avro else "json")
    client.produce(UPLOADS, upload["content_id"], upload)
    client.flush()
    print(json_line({"content_id": upload["content_id"], "content_type": upload["content_type"]}))
    return 0


def tail(args: argparse.Namespace, settings: Settings) -> int:
    try:
        spec = spec_for(args.topic, settings)
    except KeyError as exc:
        raise CommandError(exc.args[0]) from None
    client = Client(settings)
    for key, value in client.read(spec, from_beginning=not args.new, idle_timeout_s=args.idle, max_records=args.max):
        print(json_line({"key": key, "value": value} if args.keys else value), flush=True)
    return 0


def hash_command(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.hashing import hash_files

    failed = 0
    for line in hash_files(args.files):
        failed += "error" in line
        print(json_line(line), flush=True)
    if failed:
        print(f"{failed} of {len(args.files)} files could not be hashed", file=sys.stderr)
    return 1 if failed else 0
