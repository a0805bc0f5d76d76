"""`hmas exchange add|list|status|fetch|enable|disable|remove|redeliver` (changes produced to the exchange topics)
and `hmas fetcher` (the process that fetches; run one or more, exactly one fetches)."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal

from connectors.exchanges.config import InvalidExchange, changed, exchange_record, removal_writes
from connectors.exchanges.control import configure, dead_writes, produce, request_fetch, wait_for_fetch
from connectors.exchanges.fetcher import ExchangeFetcher, initial_status
from connectors.exchanges.writer import ExchangeWriter, initial_write_status
from pipeline import topics as T
from pipeline.cli import CommandError
from pipeline.client import json_line
from pipeline.config import Settings
from pipeline.state.log_reader import read_latest


def add_commands(sub: argparse._SubParsersAction) -> None:
    ex = sub.add_parser("exchange", help="configure signal exchanges that fill banks (NCMEC, StopNCII, files...)")
    esub = ex.add_subparsers(dest="exchange_command", required=True, metavar="ACTION")

    p = esub.add_parser("add", help="configure an exchange and create its bank (named like the exchange)")
    p.add_argument("name", help="exchange and bank name, e.g. NCMEC")
    p.add_argument("api", help="exchange API: sample, local_file, ncmec, stop_ncii, fb_threatexchange, tat")
    p.add_argument("--api-json", default="{}", help="the API's config as JSON, e.g. '{\"filename\": \"/x.txt\"}'")
    p.add_argument("--disabled", action="store_true", help="configure it without fetching on schedule")
    p.add_argument("--report-feedback", action="store_true",
                   help="report confirm / deconfirm decisions on its signals back to the exchange")
    p.add_argument("--endpoint", help="base URL replacing the API's own (a mirror, a proxy, a test server)")
    p.set_defaults(handler=add)

    p = esub.add_parser("list", help="list exchanges")
    p.set_defaults(handler=list_exchanges)

    p = esub.add_parser("status", help="fetch checkpoint and progress, and write-back status, of one exchange or all")
    p.add_argument("name", nargs="?")
    p.set_defaults(handler=status)

    p = esub.add_parser("fetch", help="ask the fetcher to fetch an exchange now")
    p.add_argument("name")
    p.add_argument("--wait", type=float, metavar="SECONDS", help="wait for that fetch to finish and print its status")
    p.set_defaults(handler=fetch)

    for action in ("enable", "disable"):
        p = esub.add_parser(action, help=f"{action} scheduled fetching of an exchange")
        p.add_argument("name")
        p.set_defaults(handler=set_enabled, enabled=action == "enable")

    p = esub.add_parser("remove", help="remove an exchange, its bank and the bank's content")
    p.add_argument("name")
    p.set_defaults(handler=remove)

    p = esub.add_parser("redeliver", help="put the writes to exchanges that were dead-lettered back on the outbox "
                        "(after fixing what failed them: credentials, the exchange's availability)")
    p.add_argument("name", nargs="?", help="only this exchange's writes")
    p.set_defaults(handler=redeliver)

    p = sub.add_parser("fetcher", help="run the exchange fetcher and writer (of many running, exactly one fetches "
                       "and one writes back)")
    p.set_defaults(handler=run_fetcher)


def _existing(settings: Settings, name: str) -> dict:
    record = read_latest(settings, T.EXCHANGES).get(name)
    if record is None:
        raise CommandError(f"no exchange {name}; add it with `hmas exchange add {name} API`")
    return record


def add(args: argparse.Namespace, settings: Settings) -> int:
    try:
        api_json = json.loads(args.api_json)
        record = exchange_record(args.name, args.api, api_json, not args.disabled,
                                 report_feedback=args.report_feedback, endpoint=args.endpoint)
    except (InvalidExchange, json.JSONDecodeError) as exc:
        raise CommandError(str(exc)) from None
    if args.name in read_latest(settings, T.EXCHANGES):
        raise CommandError(f"exchange {args.name} already exists")
    configure(settings, record)
    print(json_line(record))
    return 0


def list_exchanges(args: argparse.Namespace, settings: Settings) -> int:
    for _, record in sorted(read_latest(settings, T.EXCHANGES).items()):
        print(json_line(record))
    return 0


def status(args: argparse.Namespace, settings: Settings) -> int:
    configs = read_latest(settings, T.EXCHANGES)
    names = [args.name] if args.name else sorted(configs)
    fetches = read_latest(settings, T.EXCHANGE_FETCH)
    writes = read_latest(settings, T.EXCHANGE_WRITE_STATUS)
    for name in names:
        record = configs.get(name) or _existing(settings, name)
        print(json_line({**(fetches.get(name) or initial_status(name, record["api"])),
                         "write": writes.get(name) or initial_write_status(name)}))
    return 0


def fetch(args: argparse.Namespace, settings: Settings) -> int:
    requested = request_fetch(settings, _existing(settings, args.name))
    if args.wait is None:
        print(json_line({"exchange": args.name, "fetch_requested_at": requested}))
        return 0
    done = wait_for_fetch(settings, args.name, requested, args.wait)
    if done is not None:
        print(json_line(done))
        return 0 if done["last_fetch_succeeded"] else 1
    raise CommandError(f"no fetch of {args.name} finished within {args.wait:.0f}s; is `hmas fetcher` running?")


def set_enabled(args: argparse.Namespace, settings: Settings) -> int:
    record = changed(_existing(settings, args.name), enabled=args.enabled)
    produce(settings, [(T.EXCHANGES, args.name, record)])
    print(json_line(record))
    return 0


def remove(args: argparse.Namespace, settings: Settings) -> int:
    _existing(settings, args.name)
    keys = [key for key, r in read_latest(settings, T.BANK_SIGNALS).items() if r["bank"] == args.name]
    produce(settings, removal_writes(args.name, keys, args.name in read_latest(settings, T.BANKS)))
    print(json_line({"exchange": args.name, "removed_signals": len(keys)}))
    return 0


def redeliver(args: argparse.Namespace, settings: Settings) -> int:
    writes = dead_writes(settings, args.name)
    produce(settings, [(T.EXCHANGE_OUTBOX, w["idempotency_key"], w) for w in writes])
    print(json_line({"exchange": args.name, "redelivered": len(writes)}))
    return 0


def run_fetcher(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.admin import ensure_topics
    from pipeline.metrics import set_process_role
    from pipeline.services.status_server import StatusServer

    ensure_topics(settings.bootstrap_servers, settings)
    set_process_role("fetcher")
    StatusServer(settings.metrics_host, settings.metrics_port).start()

    async def run() -> None:
        fetcher, writer = ExchangeFetcher(settings), ExchangeWriter(settings)
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stopping.set)
        await fetcher.start()
        await writer.start()
        try:
            await asyncio.gather(fetcher.run_until(stopping), writer.run_until(stopping))
        finally:
            await writer.stop()
            await fetcher.stop()

    asyncio.run(run())
    return 0
