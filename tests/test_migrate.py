"""`hmas migrate from-hma`: an upstream HMA database (our DDL of upstream's schema, on a real
PostgreSQL server this module starts) migrated onto the test broker's topics; idempotence,
resuming, the dry run, bad sources, a larger bank checked signal by signal through the index, and
the same deployment read back through the HTTP API (`--from-api`)."""

from __future__ import annotations

import json
import os
import uuid

import pytest

from connectors.hma.migration import Migration
from connectors.hma.source import PostgresSource
from ops.bench.migrate_bench import check_every_signal_matches, create_upstream_schema, fill_random_content
from pipeline import topics as T
from pipeline.banks import bank_signal_key
from pipeline.cli import CommandError
from pipeline.cli.migrate import from_hma
from pipeline.config_keys import signal_type_ratio_key
from pipeline.services.content_ids import claim_content_ids
from pipeline.signal_types import signal_id
from pipeline.state.log_reader import read_latest
from tests.pipeline_env import ApiProcess, hmas, pipeline_env, settings_from

pytestmark = pytest.mark.kafka

# How many signals the larger migration holds (the bench runs 1M: `hmas bench migrate`).
LARGE_SIGNALS = int(os.environ.get("HMAS_MIGRATE_TEST_SIGNALS", "20000"))

P1, P2, P3, P4 = ("%064x" % (0x1111 * (i + 1)) for i in range(4))
M1 = "0123456789abcdef0123456789abcdef"
CHECKPOINT = {"update_time": 1700000000, "last_fetch_time": 1700000100}
CREATED = "2024-03-13 17:54:36+00"
CREATED_MS = 1710352476000


@pytest.fixture(scope="module")
def postgres():
    from ops.postgres import LocalPostgres

    with LocalPostgres() as server:
        yield server


@pytest.fixture
def upstream(postgres) -> str:
    """A database of upstream's schema holding every kind of row the migration carries over."""
    import psycopg

    dsn = postgres.create_database(f"hma_{uuid.uuid4().hex[:8]}")
    create_upstream_schema(dsn)
    config = {"name": "TX_GROUP", "api": "fb_threatexchange", "enabled": False, "privacy_group": 12345}
    with psycopg.connect(dsn) as conn:
        conn.execute("INSERT INTO exchange (id, name, api_cls, fetching_enabled, typed_config) "
                     "VALUES (1, 'TX_GROUP', 'fb_threatexchange', false, %s)", (json.dumps(config),))
        conn.execute("INSERT INTO exchange_fetch_status VALUES (1, NULL, true, 1700000200, true, 1700000000, %s)",
                     (json.dumps(CHECKPOINT),))
        conn.execute("INSERT INTO exchange_data (id, collab_id, fetch_id) VALUES (1, 1, '987654321')")
        conn.execute("INSERT INTO bank (id, name, enabled_ratio, import_from_exchange_id) VALUES "
                     "(1, 'ALPHA', 1.0, NULL), (2, 'BETA', 0.25, NULL), (3, 'TX_GROUP', 1.0, 1), (4, 'OFF', 0.0, NULL)")
        conn.execute(
            "INSERT INTO bank_content (id, bank_id, imported_from_id, disable_until_ts, original_content_uri, "
            "bank_content_metadata, note) VALUES "
            "(3, 1, NULL, 1, 'https://origin.example/a.jpg', %s, 'first'), (5, 1, NULL, 0, NULL, NULL, NULL), "
            "(6, 2, NULL, 2000000000, NULL, NULL, 'later'), (9, 3, 1, 1, NULL, NULL, NULL), "
            "(10, 2, NULL, 1, NULL, NULL, NULL), (11, 1, NULL, 1, NULL, NULL, NULL)",
            (json.dumps({"content_id": "abc", "content_uri": "https://client.example/a.jpg", "json": {"k": [1, 2]}}),))
        conn.execute(
            "INSERT INTO content_signal (content_id, signal_type, signal_val, create_time) VALUES "
            "(3, 'pdq', %s, %s), (3, 'video_md5', %s, %s), (5, 'pdq', %s, %s), (6, 'pdq', %s, %s), "
            "(9, 'pdq', %s, %s), (10, 'custom_hash', 'xyz', %s), (11, 'pdq', %s, %s)",
            (P1, CREATED, M1, CREATED, P2, CREATED, P3, CREATED, P4, CREATED, CREATED, P2, CREATED))
        conn.execute("INSERT INTO signal_type_override (name, enabled_ratio) VALUES ('video_md5', 0.5), ('custom_hash', 1.0)")
    return dsn


def migrate(settings, dsn: str, **kwargs):
    source = PostgresSource(dsn)
    try:
        stop = kwargs.pop("stop_after_batches", None)
        return Migration(settings, source, **kwargs).run(stop_after_batches=stop)
    finally:
        source.close()


def signal(bank: str, kind: str, value: str) -> str:
    return bank_signal_key(bank, kind, signal_id(kind, value))


def test_every_kind_of_row_is_migrated(settings, upstream):
    report = migrate(settings, upstream)

    banks = read_latest(settings, T.BANKS)
    assert {n: (b["enabled_ratio"], b["enabled"]) for n, b in banks.items()} == {
        "ALPHA": (1.0, True), "BETA": (0.25, True), "TX_GROUP": (1.0, True), "OFF": (0.0, False)}
    signals = read_latest(settings, T.BANK_SIGNALS)
    assert set(signals) == {signal("ALPHA", "pdq", P1), signal("ALPHA", "video_md5", M1), signal("ALPHA", "pdq", P2),
                            signal("BETA", "pdq", P3), signal("TX_GROUP", "pdq", P4)}
    first = signals[signal("ALPHA", "pdq", P1)]
    assert (first["bank_content_id"], first["disable_until_ts"], first["added_at"]) == (3, 1, CREATED_MS)
    assert first["metadata"] == {"content_id": "abc", "content_uri": "https://client.example/a.jpg",
                                 "json": '{"k": [1, 2]}', "note": "first", "original_media_uri": "https://origin.example/a.jpg"}
    assert signals[signal("ALPHA", "video_md5", M1)]["bank_content_id"] == 3
    assert (signals[signal("ALPHA", "pdq", P2)]["bank_content_id"], signals[signal("ALPHA", "pdq", P2)]["disable_until_ts"]) == (5, 0)
    later = signals[signal("BETA", "pdq", P3)]
    assert (later["bank_content_id"], later["disable_until_ts"], later["metadata"]) == (6, 2000000000, {"note": "later"})
    fetched = signals[signal("TX_GROUP", "pdq", P4)]
    assert (fetched["bank_content_id"], fetched["metadata"]) == (9, {"exchange": "TX_GROUP", "exchange_record": "987654321"})

    exchange = read_latest(settings, T.EXCHANGES)["TX_GROUP"]
    assert (exchange["api"], exchange["enabled"], json.loads(exchange["api_json"])) == (
        "fb_threatexchange", False, {"privacy_group": 12345})
    fetch = read_latest(settings, T.EXCHANGE_FETCH)["TX_GROUP"]
    assert json.loads(fetch["checkpoint"]) == CHECKPOINT
    assert (fetch["checkpoint_ts"], fetch["last_fetch_complete_ts"], fetch["last_fetch_succeeded"], fetch["up_to_date"],
            fetch["fetched_items"], fetch["running_fetch_start_ts"]) == (1700000000, 1700000200, True, True, 1, None)

    config = read_latest(settings, T.CONFIG)
    assert config[signal_type_ratio_key("video_md5")]["number"] == 0.5
    assert signal_type_ratio_key("custom_hash") not in config
    assert claim_content_ids(settings, "ALPHA") == [12]  # new content continues above upstream's ids

    assert report.content_items == 6 and report.signals == 6
    assert report.skipped == {"signals of a type this deployment does not bank (custom_hash)": 1,
                              "signals that another content item of the same bank holds already": 1,
                              "settings of a signal type this deployment does not have (custom_hash)": 1}
    assert dict(report.written) == {"banks": 4, "config": 2, "bank-signals": 5, "exchange-fetch": 1, "exchanges": 1}
    assert not report.conflicts


def test_a_second_run_changes_nothing(settings, upstream):
    first = migrate(settings, upstream)
    before = {spec.suffix: read_latest(settings, spec) for spec in (T.BANKS, T.BANK_SIGNALS, T.EXCHANGES, T.CONFIG)}
    again = migrate(settings, upstream)
    assert first.changes == 13
    assert again.changes == 0, again.as_json()
    assert again.unchanged[T.BANK_SIGNALS.suffix] == 5 and again.unchanged[T.BANKS.suffix] == 4
    after = {spec.suffix: read_latest(settings, spec) for spec in (T.BANKS, T.BANK_SIGNALS, T.EXCHANGES, T.CONFIG)}
    assert after == before


def test_an_interrupted_run_resumes_after_its_checkpoint(settings, upstream):
    stopped = migrate(settings, upstream, batch=2, stop_after_batches=1)  # content 3 and 5, then "killed"
    assert stopped.max_content_id == 5
    held = read_latest(settings, T.BANK_SIGNALS)
    assert {r["bank_content_id"] for r in held.values()} == {3, 5}
    assert T.EXCHANGES.suffix not in stopped.written  # exchanges come after all content

    resumed = migrate(settings, upstream, batch=2)
    assert resumed.resumed_after == 5
    assert resumed.content_items == 4  # 6, 9, 10, 11: the first two were not read again
    assert {r["bank_content_id"] for r in read_latest(settings, T.BANK_SIGNALS).values()} == {3, 5, 6, 9}
    assert read_latest(settings, T.EXCHANGE_FETCH)["TX_GROUP"]["fetched_items"] == 1
    assert migrate(settings, upstream).changes == 0  # finished: a new run compares everything again


def test_a_dry_run_writes_nothing_and_reports_what_it_would(settings, upstream):
    dry = migrate(settings, upstream, dry_run=True)
    for spec in (T.BANKS, T.BANK_SIGNALS, T.EXCHANGES, T.EXCHANGE_FETCH, T.CONFIG):
        assert read_latest(settings, spec) == {}, spec.suffix
    real = migrate(settings, upstream)
    assert dry.as_json()["would_write"] == real.as_json()["written"]


def test_the_command_reports_and_bad_sources_say_what_is_wrong(kafka_broker, tmp_path, postgres, upstream):
    env = pipeline_env(kafka_broker.bootstrap, tmp_path / "state")
    hmas(env, "topics", "create")
    done = hmas(env, "migrate", "from-hma", upstream, "--dry-run")
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["dry_run"] is True and report["would_write"]["bank-signals"] == 5

    from ops.kafka.broker import free_port

    unreachable = hmas(env, "migrate", "from-hma", f"postgresql://hma:secret@127.0.0.1:{free_port()}/hma", check=False)
    assert unreachable.returncode == 2
    assert "cannot connect to postgresql://hma:***@127.0.0.1" in unreachable.stderr and "secret" not in unreachable.stderr

    settings = settings_from(env)
    empty = postgres.create_database(f"empty_{uuid.uuid4().hex[:8]}")
    with pytest.raises(CommandError, match="is not an HMA database: missing bank.id"):
        from_hma(command_args(empty), settings)
    with pytest.raises(CommandError, match="postgresql://"):
        from_hma(command_args(None), settings)
    with pytest.raises(CommandError, match="cannot reach http://127.0.0.1"):
        from_hma(command_args(None, from_api=f"http://127.0.0.1:{free_port()}"), settings)


def command_args(dsn: str | None, **options):
    """`hmas migrate from-hma` arguments, as the parser gives them."""
    from pipeline.cli import build_parser

    argv = ["migrate", "from-hma"] + ([dsn] if dsn else [])
    for name, value in options.items():
        argv += [f"--{name.replace('_', '-')}", value]
    return build_parser().parse_args(argv)


def test_content_ids_held_by_another_bank_are_conflicts(settings, upstream):
    from pipeline.banks import bank_record, bank_signal_record
    from pipeline.client import Client

    client = Client(settings)
    client.produce(T.BANKS, "MINE", T.BANKS.codec.conform(bank_record("MINE")))
    key, record = bank_signal_record("MINE", 6, "pdq", "f" * 64)
    client.produce(T.BANK_SIGNALS, key, record)
    client.flush()
    report = migrate(settings, upstream)
    assert report.conflicts == ["content id 6 of bank BETA is held here by bank MINE"]
    assert read_latest(settings, T.BANK_SIGNALS)[key]["bank"] == "MINE"


def test_a_larger_migration_matches_every_signal(settings, postgres):
    dsn = postgres.create_database(f"large_{uuid.uuid4().hex[:8]}")
    create_upstream_schema(dsn)
    fill_random_content(dsn, LARGE_SIGNALS)
    first = migrate(settings, dsn)
    assert first.signals == LARGE_SIGNALS and first.written[T.BANK_SIGNALS.suffix] == LARGE_SIGNALS
    assert check_every_signal_matches(settings, dsn) == {"checked": LARGE_SIGNALS, "matched": LARGE_SIGNALS}
    assert migrate(settings, dsn).changes == 0


def test_the_api_is_a_second_source(kafka_broker, tmp_path, upstream):
    """Deployment A migrated from the database serves upstream's routes; deployment B migrated
    from A's API holds the same banks, settings and (non-exchange) content."""
    from ops.kafka.broker import free_port

    env_a = pipeline_env(kafka_broker.bootstrap, tmp_path / "a")
    hmas(env_a, "topics", "create")
    settings_a = settings_from(env_a)
    migrate(settings_a, upstream)
    api = ApiProcess(env_a, tmp_path / "api.log", free_port()).start()
    try:
        env_b = pipeline_env(kafka_broker.bootstrap, tmp_path / "b")
        hmas(env_b, "topics", "create")
        done = hmas(env_b, "migrate", "from-hma", "--from-api", api.base, "--max-gap", "20")
    finally:
        api.stop()
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["written"]["bank-signals"] == 4 and report["not_migrated"]
    settings_b = settings_from(env_b)

    def without_added_at(records):
        return {k: {**r, "added_at": 0} for k, r in records.items() if r["bank"] != "TX_GROUP"}

    assert without_added_at(read_latest(settings_b, T.BANK_SIGNALS)) == without_added_at(
        read_latest(settings_a, T.BANK_SIGNALS))
    ratios = {n: (b["enabled_ratio"], b["enabled"]) for n, b in read_latest(settings_b, T.BANKS).items()}
    assert ratios == {"ALPHA": (1.0, True), "BETA": (0.25, True), "TX_GROUP": (1.0, True), "OFF": (0.0, False)}
    assert read_latest(settings_b, T.CONFIG)[signal_type_ratio_key("video_md5")]["number"] == 0.5
    exchange = read_latest(settings_b, T.EXCHANGES)["TX_GROUP"]
    assert json.loads(exchange["api_json"]) == {"privacy_group": 12345} and not exchange["enabled"]
    assert "TX_GROUP" not in read_latest(settings_b, T.EXCHANGE_FETCH)  # no checkpoint through the API
    assert claim_content_ids(settings_b, "ALPHA") == [7]  # above the highest content id it migrated (6)
