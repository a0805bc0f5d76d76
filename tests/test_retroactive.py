"""Retroactive matching through the worker: content uploaded before its signal was banked."""

from __future__ import annotations


import pytest

from pipeline import topics as T
from pipeline.banks import bank_record, bank_signal_record
from pipeline.client import Client
from pipeline.hashing import hash_content
from pipeline.uploads import new_upload
from tests.pipeline_env import (
    BRIDGE, WorkerProcess, collect_until, create_topics, pipeline_env, settings_from, wait_until,
)

pytestmark = pytest.mark.kafka


@pytest.fixture(scope="module")
def env(kafka_broker, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("retro")
    e = pipeline_env(kafka_broker.bootstrap, tmp / "state", HMAS_RECENT_BUCKET_MS="60000")
    create_topics(e)
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
        # Banked at once: the worker's search for a new signal first reads hma.hashes up to its end, so the
        # upload's hash (written before its match record) is in the ring whether or not it had read it yet.
        bank_photo(settings, "LATE_BANK", BRIDGE / "aaa-orig.jpg")
        retro = collect_until(settings, T.RETRO_MATCHES, {"early-upload"}, timeout_s=30)["early-upload"]
        actions = collect_until(settings, T.ACTIONS, {"early-upload"}, timeout_s=30)["early-upload"]
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
        # Started: it has loaded its bank view and matches again (a signal banked before would be part of the
        # view it loads, not a new signal to search the ring for).
        probe = new_upload("probe-after-restart", "photo", signals={"pdq": "0f" * 32})
        client.produce(T.UPLOADS, probe["content_id"], probe)
        client.flush()
        assert probe["content_id"] in collect_until(settings, T.MATCHES, {probe["content_id"]}, timeout_s=60), worker.log_tail()
        bank_photo(settings, "AFTER_RESTART", BRIDGE / "aaa-orig.jpg")

        def retro_banks() -> set[str]:
            return {h["bank"] for _, r in Client(settings).read(T.RETRO_MATCHES, to_end=True) for h in r["matches"]}

        wait_until(lambda: "AFTER_RESTART" in retro_banks(), 60, "a retroactive match of the bank added after the restart")
    finally:
        worker.stop()
