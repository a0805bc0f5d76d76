"""`hmas bench migrate`: an upstream HMA database of N PDQ signals (upstream_schema.sql, on a
throwaway PostgreSQL server) migrated onto a throwaway broker; rows/s, time, a second run's
changes (0 when idempotent) and whether every migrated signal matches afterwards.

The filler and the check are shared with tests/test_migrate.py.
"""

from __future__ import annotations

import io
import time
from typing import Any

import numpy as np

from connectors.hma import UPSTREAM_SCHEMA
from pipeline import topics as T
from pipeline.config import Settings
from pipeline.state.bank_view import BankView
from pipeline.state.log_reader import read_to_end

BENCH_BANKS = 4
CREATED = "2024-03-13 17:54:36+00"


def create_upstream_schema(dsn: str) -> None:
    import psycopg

    with psycopg.connect(dsn) as conn:
        conn.execute(UPSTREAM_SCHEMA.read_text())


def fill_random_content(dsn: str, signals: int, banks: int = BENCH_BANKS, seed: int = 7, chunk: int = 200_000) -> None:
    """Banks BENCH_0.. and `signals` content items of one random PDQ signal each, ids 1..signals,
    round-robin over the banks; written with COPY, as a database of that size is loaded."""
    import psycopg

    rng = np.random.default_rng(seed)
    with psycopg.connect(dsn) as conn:
        with conn.cursor() as cur:
            for b in range(banks):
                cur.execute("INSERT INTO bank (id, name, enabled_ratio) VALUES (%s, %s, 1.0)", (b + 1, f"BENCH_{b}"))
            for start in range(1, signals + 1, chunk):
                ids = np.arange(start, min(start + chunk, signals + 1))
                codes = rng.integers(0, 256, size=(len(ids), 32), dtype=np.uint8)
                content = io.StringIO("".join(f"{i}\t{i % banks + 1}\t1\n" for i in ids.tolist()))
                with cur.copy("COPY bank_content (id, bank_id, disable_until_ts) FROM STDIN") as copy:
                    copy.write(content.getvalue())
                rows = "".join(f"{i}\tpdq\t{code.tobytes().hex()}\t{CREATED}\n" for i, code in zip(ids.tolist(), codes))
                with cur.copy("COPY content_signal (content_id, signal_type, signal_val, create_time) FROM STDIN") as copy:
                    copy.write(rows)
            cur.execute("SELECT setval('bank_content_id_seq', %s)", (max(signals, 1),))


def check_every_signal_matches(settings: Settings, dsn: str, batch: int = 50_000) -> dict[str, int]:
    """Every upstream signal looked up in a bank view built from the topics (the index the matchers
    use), at distance 0: found under the same content id and bank, with the same disable time."""
    import psycopg

    view = BankView()
    for spec in (T.BANKS, T.CONFIG, T.BANK_SIGNALS):
        view.apply(spec, read_to_end(settings, spec, timeout_s=120))
    checked = matched = 0
    with psycopg.connect(dsn) as conn, conn.cursor(name="signals") as cur:
        cur.itersize = batch
        cur.execute("SELECT c.id, b.name, c.disable_until_ts, s.signal_val FROM content_signal s "
                    "JOIN bank_content c ON c.id = s.content_id JOIN bank b ON b.id = c.bank_id "
                    "WHERE s.signal_type = 'pdq' ORDER BY c.id")
        while rows := cur.fetchmany(batch):
            found = view.search("pdq", [r[3] for r in rows], 0)
            for (content_id, bank, disable, _), candidates in zip(rows, found):
                checked += 1
                matched += any(c.entry.bank_content_id == content_id and c.entry.bank == bank
                               and c.entry.disable_until_ts == disable and c.distance == 0 for c in candidates)
    return {"checked": checked, "matched": matched}


def run_migrate_bench(signals: int, batch: int = 10_000) -> dict[str, Any]:
    """The bench on its own PostgreSQL server and broker; both stopped at the end."""
    import tempfile
    from pathlib import Path

    from connectors.hma.migration import Migration
    from connectors.hma.source import PostgresSource
    from ops.kafka.broker import LocalBroker, free_ports
    from ops.postgres import LocalPostgres
    from pipeline.admin import ensure_topics
    from pipeline.config import load_settings

    with LocalPostgres() as pg, tempfile.TemporaryDirectory(prefix="hmas-bench-migrate-") as tmp:
        dsn = pg.create_database("hma")
        create_upstream_schema(dsn)
        started = time.monotonic()
        fill_random_content(dsn, signals)
        fill_s = time.monotonic() - started
        port, controller = free_ports(2)
        broker = LocalBroker(Path(tmp) / "kafka", port=port, controller_port=controller)
        broker.start()
        try:
            settings = load_settings(env={"KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap, "HMAS_TOPIC_PREFIX": "bench.",
                                          "HMAS_DATA_DIR": str(Path(tmp) / "state")}, config_file="/dev/null")
            ensure_topics(broker.bootstrap, settings)
            runs = []
            for _ in range(2):
                source = PostgresSource(dsn)
                started = time.monotonic()
                report = Migration(settings, source, batch=batch).run()
                runs.append((time.monotonic() - started, report))
                source.close()
            started = time.monotonic()
            check = check_every_signal_matches(settings, dsn)
            check_s = time.monotonic() - started
        finally:
            broker.stop()
    (first_s, first), (second_s, second) = runs
    return {
        "signals": signals, "load_upstream_s": round(fill_s, 1),
        "migrate_s": round(first_s, 1), "signals_per_s": round(first.signals / first_s),
        "records_written": first.changes, "rerun_s": round(second_s, 1), "rerun_changes": second.changes,
        "checked": check["checked"], "matched": check["matched"], "check_s": round(check_s, 1),
    }
