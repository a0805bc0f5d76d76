"""Retroactive matching through the worker: content uploaded before its signal was banked."""

from __future__ import annotations

import time

import pytest

from pipeline import topics as T
from pipeline.banks import bank_record, bank_signal_record
from pipeline.client import Client
from pipeline.hashing import hash_content
from pipeline.uploads import new_upload
from tests.pipeline_env import TESTDATA, WorkerProcess, collect_until, hmas, pipeline_env, settings_from

pytestmark = pytest.mark.kafka
BRIDGE = TESTDATA / "pdq/data/bridge-mods"


@pytest.fixture(scope="module")
def env(kafka_broker, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("retro")
    e = pipeline_env(kafka_broker.bootstrap, tmp / "state", HMAS_RECENT_BUCKET_MS="60000")
    hmas(e, "topics", "create")
    return e, tmp


def bank_photo(settings, bank: str, path) -> None:
    client = Client(settings)
    client.produce(T.BANKS, bank, bank_record(bank, action="review"))
    pdq = hash_content("photo", path.read_bytes())["pdq"].value
    key, record = bank_signal_record(bank, client.claim_content_id(bank), "pdq", pdq)
    client.produce(T.BANK_SIGNALS, key, record)
    client.flush()


def test_banking_a_signal_matches_content_uploaded_before(env):
    e, tmp = env
    settings = settings_from(e)
    worker = WorkerProcess(e, tmp / "worker.log").start()
    try:
        client = Client(settings)
        client.produce(T.UPLOADS, "early-upload", new_upload("early-upload", "photo", content=(BRIDGE / "blur-a-lot.jpg").read_bytes()))
        client.flush()
        [record] = collect_until(settings, T.MATCHES, {"early-upload"})["early-upload"]
        assert record["matches"] == []
        time.sleep(1)  # the ring has read the hash

        banked_at = time.monotonic()
        bank_photo(settings, "LATE_BANK", BRIDGE / "aaa-orig.jpg")
        retro = collect_until(settings, T.RETRO_MATCHES, {"early-upload"}, timeout_s=30)["early-upload"]
        actions = collect_until(settings, T.ACTIONS, {"early-upload"}, timeout_s=30)["early-upload"]
        elapsed = time.monotonic() - banked_at
        assert elapsed < 5, f"retroactive match and action took {elapsed:.1f}s"
        [hit] = retro[0]["matches"]
        assert retro[0]["retroactive"] is True
        assert record["submitted_at"] <= retro[0]["uploaded_at"] <= retro[0]["matched_at"]
        assert (hit["bank"], hit["status"]) == ("LATE_BANK", "match") and hit["distance"] <= 31
        assert [a["retroactive"] for a in actions] == [True]
    finally:
        worker.stop()

    # A restarted worker refills its ring from hma.hashes: a bank added now still finds the upload.
    worker = WorkerProcess(e, tmp / "worker2.log").start()
    try:
        time.sleep(8)  # start-up
        bank_photo(settings, "AFTER_RESTART", BRIDGE / "aaa-orig.jpg")
        deadline = time.monotonic() + 60
        banks = set()
        while time.monotonic() < deadline and "AFTER_RESTART" not in banks:
            for _, r in Client(settings).read(T.RETRO_MATCHES, timeout_s=3):
                banks |= {h["bank"] for h in r["matches"]}
        assert "AFTER_RESTART" in banks
    finally:
        worker.stop()
