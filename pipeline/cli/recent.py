"""`hmas recent similar|clusters`: the API's recent-content routes, printed as JSON lines."""

from __future__ import annotations

import argparse
import json
import urllib.error
import urllib.parse
import urllib.request

from pipeline.cli import CommandError
from pipeline.config import Settings
from pipeline.signal_types import default_signal_type


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("recent", help="recent uploads near a hash, or clusters of recent near-duplicates (via the API)")
    rsub = p.add_subparsers(dest="recent_command", required=True, metavar="WHAT")
    s = rsub.add_parser("similar", help="recent uploads near a hash (a photo's, or a video's frames)")
    s.add_argument("signal", help="the hash, e.g. PDQ: 64 hex")
    s.add_argument("--signal-type", help="its signal type (default: the photo hash, PDQ)")
    s.add_argument("--distance", type=int, default=31)
    s.set_defaults(handler=similar)
    c = rsub.add_parser("clusters", help="clusters of recent near-duplicates, largest first")
    c.add_argument("--window", default="1h")
    c.add_argument("--distance", type=int, default=16)
    c.add_argument("--min-size", type=int, default=2)
    c.set_defaults(handler=clusters)


def _get(settings: Settings, path: str, params: dict) -> list:
    url = f"http://{settings.api_host}:{settings.api_port}{path}?{urllib.parse.urlencode(params)}"
    # HMAS_API_TOKEN, when set, also lets this reach an API whose reads are closed (HMAS_API_OPEN_READS=0)
    headers = {"Authorization": f"Bearer {settings.api_token}"} if settings.api_token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=60) as response:
            return json.load(response)
    except urllib.error.HTTPError as exc:
        raise CommandError(json.load(exc).get("message", str(exc))) from None
    except urllib.error.URLError as exc:
        raise CommandError(f"no API at {url.split('?')[0]} ({exc.reason}); start it with `hmas api` or `hmas up`") from None


def similar(args: argparse.Namespace, settings: Settings) -> int:
    kind = args.signal_type or default_signal_type()
    for row in _get(settings, "/recent/similar", {"signal_type": kind, "signal": args.signal, "distance": args.distance}):
        print(json.dumps(row))
    return 0


def clusters(args: argparse.Namespace, settings: Settings) -> int:
    for row in _get(settings, "/recent/clusters", {"window": args.window, "distance": args.distance, "min_size": args.min_size}):
        print(json.dumps(row))
    return 0
