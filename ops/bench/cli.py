"""`hmas bench ...`: benchmarks, whose results go into BENCHMARKS.md."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pipeline.config import Settings


def add_commands(sub: argparse._SubParsersAction) -> None:
    bench = sub.add_parser("bench", help="benchmarks (results for BENCHMARKS.md)")
    bsub = bench.add_subparsers(dest="bench_command", required=True, metavar="BENCH")
    p = bsub.add_parser("index", help="the PDQ index beside python-threatexchange's PDQIndex and faiss")
    p.add_argument("--n", type=int, default=1_000_000, help="banked codes (default 1,000,000)")
    p.add_argument("--queries", type=int, default=10_000)
    p.add_argument("--slow-queries", type=int, default=200,
                   help="queries timed for the slow peers (PDQIndex, faiss flat), default 200")
    p.add_argument("--peers", default=",".join(("hma-streams", "faiss-flat", "faiss-multihash", "faiss-multihash-16", "threatexchange")))
    p.add_argument("--distribution", default="uniform,clustered",
                   help="banked codes: uniform, clustered (near-duplicate clusters, correlated bits) or both")
    p.add_argument("--json", action="store_true", help="print JSON instead of a Markdown table")
    p.set_defaults(handler=index)

    p = bsub.add_parser("hash", help="photos hashed per core (PDQ exact and fast) beside python-threatexchange")
    p.add_argument("--rounds", type=int, default=3, help="times each photo is hashed per hasher")
    p.add_argument("--json", action="store_true", help="print JSON instead of Markdown")
    p.set_defaults(handler=hash_speed)

    p = bsub.add_parser("ring", help="the ring of recent hashes: memory when full, searches of new signals")
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--signals", type=int, default=1000)
    p.set_defaults(handler=ring)

    p = _bench_with_bank(bsub, "load", load, "publish N random PDQ signals to hma.bank-signals of the configured cluster")
    p.add_argument("--bank", default="BENCH")

    p = _bench_with_bank(bsub, "e2e", e2e, "uploads/s and upload-to-match latency with N banked signals (own broker)")
    p.add_argument("--uploads", type=int, default=50_000, help="pre-hashed uploads in the throughput burst")
    p.add_argument("--rate", type=int, default=1000, help="uploads/s for the latency run")
    p.add_argument("--seconds", type=int, default=30, help="length of the latency run")
    p.add_argument("--workers", type=int, default=1, help="worker processes (replicas)")
    p.add_argument("--shards", type=int, default=1,
                   help="index shards: 2 or more runs shard mode, one shard worker each beside the main workers")
    p.add_argument("--guarantees", default="at_least_once",
                   help="processing guarantees run one after the other on the same bank, comma-separated "
                        "(at_least_once,exactly_once pairs them)")

    p = _bench_with_bank(bsub, "restart", restart, "a worker's restart with N banked signals: from its snapshot vs cold")
    p.add_argument("--tail", type=float, default=0.01, help="share of the bank changed while the worker is down")
    p.add_argument("--kill", action="store_true", help="kill the first worker with SIGKILL instead of stopping it")
    p.add_argument("--guarantee", default="at_least_once", help="the workers' processing guarantee")

    p = _bench_with_bank(bsub, "soak", soak, "worker memory under uploads and bank churn; bank-change visibility")
    p.add_argument("--minutes", type=float, default=30, help="length after warm-up")
    p.add_argument("--warmup", type=float, default=3, help="warm-up minutes (not counted in the growth)")
    p.add_argument("--churn", type=float, default=0.01, help="share of the bank replaced per minute")
    p.add_argument("--rate", type=int, default=200, help="uploads/s")
    p.add_argument("--plot", default="soak-rss.svg", help="where the RSS chart (SVG) goes")

    p = bsub.add_parser("faults", help="accounting under worker kills and broker failures (own broker)")
    p.add_argument("--scenarios", default="worker-kills,broker-kill", help="comma-separated: worker-kills, broker-kill")
    p.add_argument("--guarantees", default="at_least_once,exactly_once", help="processing guarantees, comma-separated")
    p.add_argument("--prehashed", type=int, default=50_000, help="pre-hashed uploads (half of them matching)")
    p.add_argument("--photos", type=int, default=500, help="photo uploads (inline, all matching)")
    p.add_argument("--kills", type=int, default=10, help="worker SIGKILLs at random moments")
    p.add_argument("--rate", type=float, default=200, help="uploads/s sent while the faults happen")
    p.set_defaults(handler=faults)

    p = bsub.add_parser("migrate", help="hmas migrate from-hma of N signals: its own PostgreSQL server and broker")
    p.add_argument("--signals", type=int, default=1_000_000, help="upstream content items of one PDQ signal each")
    p.add_argument("--batch", type=int, default=10_000, help="content items per acknowledged batch")
    p.set_defaults(handler=migrate)

    p = _bench_with_bank(bsub, "api", api, "lookups/s through the HTTP API (wrk) beside the index's own rate")
    p.add_argument("--seconds", type=float, default=20, help="length of each wrk run")
    p.add_argument("--connections", default="4,16,24,32,48,64",
                   help="wrk connections, one run each (comma-separated)")
    p.add_argument("--rates", default="",
                   help="also offer these requests/s at a fixed rate (comma-separated; latency counted from when "
                        "each request was due, ops/bench/open_loop.py), 32 connections, one run each")
    p.add_argument("--routes", default="raw_lookup,lookup", help="routes driven (raw_lookup, lookup)")
    p.add_argument("--processes", default="1", help="API server processes (HMAS_API_PROCESSES), comma-separated: one API each")
    p.add_argument("--tail", type=float, default=0.01, help="share of the bank changed while the API is down")
    p.add_argument("--compare", action="append", default=[], metavar="CHECKOUT",
                   help="also measure the API of another checkout of this project, on the same bank (repeatable)")
    p.add_argument("--with", dest="variants", action="append", default=[], metavar="KEY=VALUE[,KEY=VALUE]",
                   help="also measure this checkout's API with these settings, e.g. "
                        "HMAS_API_EVENT_LOOP=asyncio,HMAS_API_SWITCH_INTERVAL_MS=5 (repeatable; the most processes of --processes)")
    p.add_argument("--json", action="store_true", help="print JSON instead of Markdown")

    p = _bench_with_bank(bsub, "exchange", exchange,
                         "an exchange of N random PDQ signals fetched into a bank: rate, match after commit, fetcher memory")
    p.add_argument("--no-match", action="store_true", help="no worker and no probe uploads (the fetcher alone)")
    p.add_argument("--batch-records", type=int, default=None,
                   help="records per transaction (HMAS_EXCHANGE_BATCH_RECORDS; default: the setting's)")

    p = _bench_with_bank(bsub, "faults-cluster", faults_cluster,
                         "a broker of a three-broker cluster stopped mid-stream and restarted: nothing lost, the stall",
                         n=100_000)
    p.add_argument("--uploads", type=int, default=30_000, help="pre-hashed uploads, half of them matching")
    p.add_argument("--rate", type=int, default=500, help="uploads/s")
    p.add_argument("--stop-after", type=float, default=15, help="seconds into the stream the broker is stopped")
    p.add_argument("--down", type=float, default=20, help="seconds the broker stays down")

    p = _bench_with_bank(bsub, "overload", overload,
                         "uploads at 5x what the worker sustains, slow photos by URL among them: memory, drain, accounting",
                         n=100_000)
    p.add_argument("--sustain-uploads", type=int, default=30_000, help="the burst that measures the sustained rate")
    p.add_argument("--factor", type=float, default=5, help="times the sustained rate produced")
    p.add_argument("--seconds", type=float, default=120, help="length of the overload")
    p.add_argument("--photo-every", type=int, default=500, help="one upload in this many is a photo by URL")
    p.add_argument("--photo-delay", type=float, default=0.5, help="seconds the slow server waits before each photo")

    p = bsub.add_parser("replay", help="records/s of hmas replay over hma.hashes (starts its own broker)")
    p.add_argument("--n", type=int, default=200_000)
    p.set_defaults(handler=replay_rate)


def _bench_with_bank(bsub: argparse._SubParsersAction, name: str, handler, help: str,
                     n: int = 1_000_000) -> argparse.ArgumentParser:
    """A bench over a bank of --n random PDQ signals."""
    p = bsub.add_parser(name, help=help)
    p.add_argument("--n", type=int, default=n, help=f"banked signals (default {n:,})")
    p.set_defaults(handler=handler)
    return p


def index(args: argparse.Namespace, settings: Settings) -> int:
    from ops.bench.index_bench import markdown, run_index_bench

    reports = [run_index_bench(args.n, args.queries, args.peers.split(","), args.slow_queries, distribution)
               for distribution in args.distribution.split(",")]
    print(json.dumps(reports, indent=2) if args.json else "\n\n".join(map(markdown, reports)))
    return 0


def hash_speed(args: argparse.Namespace, settings: Settings) -> int:
    from ops.bench.hash_bench import markdown, run_hash_bench

    report = run_hash_bench(args.rounds)
    print(json.dumps(report, indent=2) if args.json else markdown(report))
    return 0


def ring(args: argparse.Namespace, settings: Settings) -> int:
    from ops.bench.ring_bench import run_ring_bench

    print(json.dumps(run_ring_bench(args.n, args.signals), indent=2))
    return 0


def faults(args: argparse.Namespace, settings: Settings) -> int:
    from ops.bench.faults_bench import run_faults_bench

    report = run_faults_bench(args.scenarios.split(","), args.guarantees.split(","), args.prehashed, args.photos,
                              args.kills, args.rate)
    print(json.dumps(report, indent=2))
    return 0


def migrate(args: argparse.Namespace, settings: Settings) -> int:
    from ops.bench.migrate_bench import run_migrate_bench

    print(json.dumps(run_migrate_bench(args.signals, args.batch), indent=2))
    return 0


def replay_rate(args: argparse.Namespace, settings: Settings) -> int:
    from ops.bench.replay_bench import run_replay_bench

    print(json.dumps(run_replay_bench(args.n), indent=2))
    return 0


def load(args: argparse.Namespace, settings: Settings) -> int:
    from ops.bench.e2e_bench import load_bank
    from pipeline.admin import ensure_topics

    ensure_topics(settings.bootstrap_servers, settings)
    load_bank(settings, args.n, args.bank)
    return 0


def e2e(args: argparse.Namespace, settings: Settings) -> int:
    from ops.bench.e2e_bench import run_e2e_bench

    guarantees = tuple(args.guarantees.split(","))
    print(json.dumps(run_e2e_bench(args.n, args.uploads, args.rate, args.seconds, args.workers, args.shards, guarantees),
                     indent=2))
    return 0


def faults_cluster(args: argparse.Namespace, settings: Settings) -> int:
    from ops.bench.cluster_faults import run_cluster_faults

    report = run_cluster_faults(args.n, args.uploads, args.rate, args.stop_after, args.down)
    print(json.dumps(report, indent=2))
    return 0 if report["nothing_lost"] else 1


def overload(args: argparse.Namespace, settings: Settings) -> int:
    from ops.bench.overload import run_overload_bench

    report = run_overload_bench(args.n, args.sustain_uploads, args.factor, args.seconds, args.photo_every, args.photo_delay)
    print(json.dumps(report, indent=2))
    return 0 if report["nothing_lost"] else 1


def exchange(args: argparse.Namespace, settings: Settings) -> int:
    from ops.bench.exchange_bench import run_exchange_bench

    print(json.dumps(run_exchange_bench(args.n, not args.no_match, batch_records=args.batch_records), indent=2))
    return 0


def soak(args: argparse.Namespace, settings: Settings) -> int:
    from ops.bench.soak_bench import run_soak_bench

    report = run_soak_bench(args.n, args.minutes, args.churn, args.rate, args.warmup, args.plot)
    print(json.dumps(report, indent=2))
    return 0


def restart(args: argparse.Namespace, settings: Settings) -> int:
    from ops.bench.restart_bench import run_restart_bench

    print(json.dumps(run_restart_bench(args.n, args.tail, args.kill, args.guarantee), indent=2))
    return 0


def api(args: argparse.Namespace, settings: Settings) -> int:
    from ops.bench.api_bench import markdown, run_api_bench, settings_of

    report = run_api_bench(args.n, args.seconds, [int(c) for c in args.connections.split(",")],
                           args.routes.split(","), [int(k) for k in args.processes.split(",")], args.tail,
                           [Path(c) for c in args.compare], [settings_of(v) for v in args.variants],
                           [float(r) for r in args.rates.split(",") if r.strip()])
    print(json.dumps(report, indent=2) if args.json else markdown(report))
    return 0
