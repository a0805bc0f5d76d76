"""Shard mode: S index shards, each looking up every upload, merged per upload before the guard.

The pure-logic tests split one bank view in two and check that lookup + merge + guard gives the
records that one view gives. The integration test runs it for real: a main worker and two shard
workers on one topic prefix, one replica-mode worker on another, the same banks and uploads into
both, and the match records must be the same.
"""

from __future__ import annotations

import numpy as np
import pytest

from pipeline import topics as T
from pipeline.app import worker_searches
from pipeline.banks import bank_record, bank_signal_record
from pipeline.client import Client
from pipeline.config import Settings
from pipeline.matching import candidate_record, hits_from_candidates, judge_batch, lookup_batch, match_batch
from pipeline.sharding import ShardSpec, shard_of
from pipeline.signal_types import signal_id
from pipeline.state.bank_view import BankView
from pipeline.uploads import new_upload
from tests.pipeline_env import HmasProcess, WorkerProcess, collect_until, create_topics, pipeline_env, settings_from

SHARDS = 2


def random_pdq(rng: np.random.Generator) -> str:
    return rng.integers(0, 256, 32, dtype=np.uint8).tobytes().hex()


def flip(hex_code: str, bits: list[int]) -> str:
    code = bytearray(bytes.fromhex(hex_code))
    for b in bits:
        code[b // 8] ^= 1 << (b % 8)
    return code.hex()


def near(rng: np.random.Generator, code: str, distance: int) -> str:
    return flip(code, rng.choice(256, distance, replace=False).tolist())


def shard_of_code(code: str) -> int:
    return shard_of(signal_id("pdq", code), SHARDS)


def near_in_shard(rng: np.random.Generator, code: str, distance: int, shard: int) -> str:
    while True:
        other = near(rng, code, distance)
        if shard_of_code(other) == shard:
            return other


class Scenario:
    """Banks, bank signals and pre-hashed uploads whose hits fall in both shards.

    - FEED: 300 random codes (one disabled), action "review", suppressed by BENIGN.
    - BENIGN: negative bank (action none); its codes sit in the other shard than the FEED code
      they suppress, so suppression is only right if the guard sees both shards' hits.
    - NARROW: distance 8; DISABLED_BANK: enabled false.
    - uploads: near-duplicates at distances 0-31, uploads hitting codes in both shards at once,
      suppressed ones, random non-matches, and a video MD5.
    """

    def __init__(self, seed: int = 11) -> None:
        rng = np.random.default_rng(seed)
        self.banks = [
            bank_record("FEED", action="review", suppressed_by=["BENIGN"]),
            bank_record("BENIGN", action="none"),
            bank_record("NARROW", action="escalate", distances={"pdq": 8}),
            bank_record("DISABLED_BANK", enabled=False),
        ]
        feed = [random_pdq(rng) for _ in range(300)]
        self.signals: list[tuple[str, dict]] = [bank_signal_record("FEED", i + 1, "pdq", c) for i, c in enumerate(feed)]
        self.signals[5][1]["disable_until_ts"] = 0
        self.uploads: list[dict] = []

        def upload(cid: str, **signals: str) -> None:
            self.uploads.append(new_upload(cid, "photo" if "pdq" in signals else "video", signals=signals))

        for i, code in enumerate(feed[:64]):
            upload(f"near-{i}", pdq=near(rng, code, i % 32))
        for i in range(20):  # a second FEED code in the other shard, a few bits from the first
            code = feed[100 + i]
            twin = near_in_shard(rng, code, 3, 1 - shard_of_code(code))
            self.signals.append(bank_signal_record("FEED", 1000 + i, "pdq", twin))
            upload(f"both-shards-{i}", pdq=near(rng, code, 2))
        for i in range(20):  # negative bank entry in the other shard
            code = feed[150 + i]
            benign = near_in_shard(rng, code, 4, 1 - shard_of_code(code))
            self.signals.append(bank_signal_record("BENIGN", 2000 + i, "pdq", benign))
            upload(f"suppressed-{i}", pdq=near(rng, code, 1))
        for i in range(10):
            code = feed[200 + i]
            self.signals.append(bank_signal_record("NARROW", 3000 + i, "pdq", near(rng, code, 2)))
            self.signals.append(bank_signal_record("DISABLED_BANK", 4000 + i, "pdq", code))
            upload(f"narrow-{i}", pdq=near(rng, code, 6 + i))
        upload("disabled-entry", pdq=feed[5])
        for i in range(40):
            upload(f"unrelated-{i}", pdq=random_pdq(rng))
        md5 = "d41d8cd98f00b204e9800998ecf8427e"
        self.signals.append(bank_signal_record("FEED", 5000, "video_md5", md5))
        upload("video", video_md5=md5)

    def view(self, shard: ShardSpec | None = None, searchable: bool = True) -> BankView:
        from pipeline.topics import BANKS, BANK_SIGNALS

        view = BankView(shard=shard, searchable=searchable)
        for bank in self.banks:
            view.apply_bank(bank["name"], BANKS.codec.conform(bank))
        view.apply_signals((key, BANK_SIGNALS.codec.conform(record)) for key, record in self.signals)
        return view

    def hashed(self) -> list[dict]:
        return [{
            "content_id": u["content_id"], "content_type": u["content_type"],
            "signals": {k: {"value": v, "quality": None} for k, v in u["signals"].items()},
            "source": "signals", "metadata": {}, "submitted_at": None, "hashed_at": 0,
        } for u in self.uploads]


def comparable(record: dict) -> dict:
    return {"content_id": record["content_id"], "matches": record["matches"], "skipped": record["skipped"]}


# -- pure logic ------------------------------------------------------------------------------------

def test_shards_split_signals_by_signal_id():
    ids = [signal_id("pdq", random_pdq(np.random.default_rng(i))) for i in range(2000)]
    counts = np.bincount([shard_of(sid, 3) for sid in ids], minlength=3)
    assert counts.min() > 2000 / 3 * 0.85
    spec = ShardSpec(1, 3)
    assert all(spec.holds_key(f"B/pdq/{sid}") == (shard_of(sid, 3) == 1) for sid in ids)
    assert all(spec.holds_key(f"B/pdq/{sid}".encode()) == (shard_of(sid, 3) == 1) for sid in ids)  # as read
    with pytest.raises(ValueError):
        ShardSpec(2, 2)
    with pytest.raises(ValueError):
        Settings(index_shards=2, index_shard=2)


def test_shard_views_hold_disjoint_parts_of_the_bank():
    scenario = Scenario()
    whole = scenario.view()
    parts = [scenario.view(ShardSpec(k, SHARDS)) for k in range(SHARDS)]
    assert sum(p.signal_count() for p in parts) == whole.signal_count()
    assert all(0 < p.signal_count() < whole.signal_count() for p in parts)
    keys = [{e.key for e in p.entries()} for p in parts]
    assert not keys[0] & keys[1]
    # a tombstone reaches only the shard holding the key
    key = next(iter(keys[0]))
    for p in parts:
        p.apply_signals([(key, None)])
    assert parts[0].signal_count() == len(keys[0]) - 1 and parts[1].signal_count() == len(keys[1])


def test_merged_shard_lookups_equal_one_view():
    scenario = Scenario()
    settings = Settings()
    hashed = scenario.hashed()
    expected = match_batch(hashed, scenario.view(), settings)
    merger_view = scenario.view(searchable=False)  # a main worker in shard mode keeps no index
    partials = [lookup_batch(hashed, scenario.view(ShardSpec(k, SHARDS)), settings) for k in range(SHARDS)]
    merged = []
    for i, upload in enumerate(hashed):
        records = [records[i] for records, _ in partials]
        candidates = [candidate_record(hit) for _, hits in partials for hit in hits[i]]
        record = records[0]
        judge_batch([record], [hits_from_candidates(candidates, merger_view)], merger_view)
        merged.append(record)
    assert [comparable(r) for r in merged] == [comparable(r) for r in expected]
    by_id = {r["content_id"]: r for r in expected}
    assert {h["status"] for h in by_id["suppressed-0"]["matches"] if h["bank"] == "FEED"} == {"suppressed"}
    assert len([h for h in by_id["both-shards-0"]["matches"] if h["bank"] == "FEED"]) == 2


def test_only_main_workers_in_shard_mode_without_the_recent_task_keep_no_index():
    shard_mode = Settings(index_shards=2, recent_enabled=0)
    assert not worker_searches(shard_mode)
    assert worker_searches(shard_mode.with_overrides(recent_enabled=1))  # retroactive matching searches
    assert worker_searches(shard_mode.with_overrides(index_shard=0))  # a shard worker
    assert worker_searches(Settings(recent_enabled=0))  # replica mode


# -- through Kafka ---------------------------------------------------------------------------------

def publish(settings, scenario: Scenario) -> None:
    client = Client(settings)
    for bank in scenario.banks:
        client.produce(T.BANKS, bank["name"], bank)
    for key, record in scenario.signals:
        client.produce(T.BANK_SIGNALS, key, record)
    client.flush()


def submit(settings, uploads: list[dict]) -> None:
    client = Client(settings)
    for upload in uploads:
        client.produce(T.UPLOADS, upload["content_id"], upload)
    client.flush()


@pytest.mark.kafka
def test_two_shard_workers_write_the_match_records_of_one_worker(kafka_broker, tmp_path):
    scenario = Scenario()
    env_one = pipeline_env(kafka_broker.bootstrap, tmp_path / "one", HMAS_RECENT_ENABLED="0")
    env_sharded = pipeline_env(kafka_broker.bootstrap, tmp_path / "sharded", HMAS_RECENT_ENABLED="0",
                               HMAS_INDEX_SHARDS=str(SHARDS))
    for env in (env_one, env_sharded):
        create_topics(env)
        publish(settings_from(env), scenario)
    procs = [
        WorkerProcess(env_one, tmp_path / "one.log").start(),
        WorkerProcess(env_sharded, tmp_path / "main.log").start(),
        *(HmasProcess(env_sharded, tmp_path / f"shard-{k}.log", "worker", "--shard", str(k)).start()
          for k in range(SHARDS)),
    ]
    try:
        one, sharded = settings_from(env_one), settings_from(env_sharded)
        # bad input on the sharded side: an undecodable hashes record is dead-lettered once (by
        # shard 0), a partial from a deployment with another shard count is dead-lettered too
        client = Client(sharded)
        client.produce_raw(T.HASHES, b"broken", b"\x00not json")
        client.produce(T.SHARD_HITS, "stray", {
            "shard": 0, "shards": 3, "hashes_partition": 0, "hashes_offset": 0,
            "upload": scenario.hashed()[0], "candidates": [], "looked_up_at": 0,
        })
        client.flush()
        for settings in (one, sharded):
            submit(settings, scenario.uploads)
        ids = {u["content_id"] for u in scenario.uploads}
        got_one = collect_until(one, T.MATCHES, ids, timeout_s=180)
        got_sharded = collect_until(sharded, T.MATCHES, ids, timeout_s=180)
        logs = "\n".join(p.log_tail() for p in procs)
        assert got_one.keys() == ids, logs
        assert got_sharded.keys() == ids, logs
        for cid in sorted(ids):
            assert len(got_sharded[cid]) == 1, f"{cid}: {len(got_sharded[cid])} match records"
            assert comparable(got_sharded[cid][0]) == comparable(got_one[cid][0]), cid
        # the scenario does reach across shards
        statuses = {cid: {h["status"] for h in got_sharded[cid][0]["matches"]} for cid in ids}
        assert all("suppressed" in statuses[f"suppressed-{i}"] for i in range(20))
        assert all(len(got_sharded[f"both-shards-{i}"][0]["matches"]) >= 2 for i in range(20))
        dead = collect_until(sharded, T.DEAD_LETTERS, {"broken", "stray"}, timeout_s=60)
        assert len(dead["broken"]) == 1 and "neither a JSON object" in dead["broken"][0]["reason"]
        assert "joins 2 shards" in dead["stray"][0]["reason"]
    finally:
        for proc in procs:
            proc.stop()
