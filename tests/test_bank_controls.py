"""Bank controls end to end: the worker and the API processes on the real broker.

Distance per bank, negative banks, flood quarantine and its review, confirm / deconfirm, and the
state of all of them surviving a restart of both processes.
"""

from __future__ import annotations

import numpy as np
import pytest

from pipeline import topics as T
from pipeline.client import Client
from pipeline.uploads import new_upload
from tests.pipeline_env import BRIDGE, PipelineStack, collect_until, running_stack, wait_until

pytestmark = pytest.mark.kafka
TOKEN = "controls-token"
FLOOD_LIMIT = 100
BURST = 5000


class Stack(PipelineStack):
    def __init__(self, env, tmp):
        super().__init__(env, tmp, TOKEN)

    def bank(self, name, **config):
        self.call("POST", "/c/banks", 201, json={"name": name, **config})

    def bank_file(self, bank, path):
        return self.call("POST", f"/c/bank/{bank}/content", files={"file": (path.name, path.read_bytes())})

    def submit(self, uploads):
        client = Client(self.settings)
        for upload in uploads:
            client.produce(T.UPLOADS, upload["content_id"], upload)
        client.flush()


@pytest.fixture(scope="module")
def stack(kafka_broker, tmp_path_factory):
    yield from running_stack(Stack, kafka_broker.bootstrap, tmp_path_factory.mktemp("controls"), HMAS_API_TOKEN=TOKEN,
                             HMAS_FLOOD_BUCKET_MS="10000")


def photo_upload(cid, path):
    return new_upload(cid, "photo", content=path.read_bytes())


def signal_upload(cid, pdq):
    return new_upload(cid, "photo", signals={"pdq": pdq})


def only(records: dict, cid: str) -> dict:
    [record] = records[cid]
    return record


def test_each_bank_matches_at_its_own_distance(stack):
    # sharpen-a-lot.jpg is at PDQ distance 12 from aaa-orig.jpg
    stack.bank("WITHIN_16", distances={"pdq": 16})
    stack.bank("WITHIN_8", distances={"pdq": 8})
    for bank in ("WITHIN_16", "WITHIN_8"):
        stack.bank_file(bank, BRIDGE / "aaa-orig.jpg")
    stack.submit([photo_upload("dist-12", BRIDGE / "sharpen-a-lot.jpg")])
    record = only(collect_until(stack.settings, T.MATCHES, {"dist-12"}), "dist-12")
    assert [(h["bank"], h["distance"], h["status"]) for h in record["matches"] if h["bank"].startswith("WITHIN")] == [
        ("WITHIN_16", 12, "match")]
    looked_up = stack.call("POST", "/m/lookup", files={"file": ("s.jpg", (BRIDGE / "sharpen-a-lot.jpg").read_bytes())})
    assert "WITHIN_16" in looked_up["pdq"] and "WITHIN_8" not in looked_up["pdq"]
    # a change of distance applies to the next lookup, without a restart
    stack.call("PUT", "/c/bank/WITHIN_8", json={"distances": {"pdq": 12}})
    stack.submit([photo_upload("dist-12-again", BRIDGE / "sharpen-a-lot.jpg")])
    again = only(collect_until(stack.settings, T.MATCHES, {"dist-12-again"}), "dist-12-again")
    assert {h["bank"] for h in again["matches"] if h["status"] == "match"} >= {"WITHIN_16", "WITHIN_8"}


def test_negative_bank_suppresses_the_match_and_the_action(stack):
    pdq = np.random.default_rng(1).integers(0, 256, 32, dtype=np.uint8).tobytes().hex()
    stack.bank("BENIGN_MEMES", action="none")
    stack.bank("EXCHANGE_FEED", suppressed_by=["BENIGN_MEMES"])
    for bank in ("BENIGN_MEMES", "EXCHANGE_FEED"):
        stack.call("POST", f"/c/bank/{bank}/signal", json={"pdq": pdq})
    stack.submit([signal_upload("meme-1", pdq), photo_upload("marker-after-meme", BRIDGE / "blur-a-lot.jpg")])
    record = only(collect_until(stack.settings, T.MATCHES, {"meme-1"}), "meme-1")
    statuses = {h["bank"]: (h["status"], h["reason"]) for h in record["matches"]}
    assert statuses["EXCHANGE_FEED"][0] == "suppressed" and "BENIGN_MEMES" in statuses["EXCHANGE_FEED"][1]
    actions = collect_until(stack.settings, T.ACTIONS, {"marker-after-meme"})
    assert "meme-1" not in actions


def test_a_flooding_signal_is_quarantined_once_and_released_by_review(stack):
    pdq = np.random.default_rng(2).integers(0, 256, 32, dtype=np.uint8).tobytes().hex()
    stack.bank("FLOODABLE", flood={"max_matches": FLOOD_LIMIT, "window_ms": 600_000})
    stack.call("POST", "/c/bank/FLOODABLE/signal", json={"pdq": pdq})
    stack.submit([signal_upload(f"burst-{i:04d}", pdq) for i in range(BURST)])
    matches = collect_until(stack.settings, T.MATCHES, {f"burst-{i:04d}" for i in range(BURST)}, timeout_s=240)
    burst = {cid: only(matches, cid) for cid in matches if cid.startswith("burst-")}
    assert len(burst) == BURST
    statuses = [h["status"] for r in burst.values() for h in r["matches"] if h["bank"] == "FLOODABLE"]
    assert statuses.count("match") == FLOOD_LIMIT and statuses.count("quarantined") == BURST - FLOOD_LIMIT

    [quarantined] = wait_until(lambda: stack.call("GET", "/c/quarantine"), 60, "the API to list the quarantined signal",
                               interval_s=0.5)
    assert quarantined["state"] == "quarantined" and quarantined["count"] > FLOOD_LIMIT
    assert quarantined["sample_content_ids"] and quarantined["window_ms"] == 600_000
    records = [r for _, r in Client(stack.settings).read(T.QUARANTINE, to_end=True)]
    assert [r["state"] for r in records if r["signal_id"] == quarantined["signal_id"]] == ["quarantined"]  # once

    stack.submit([signal_upload("after-quarantine", pdq)])
    assert only(collect_until(stack.settings, T.MATCHES, {"after-quarantine"}), "after-quarantine")["matches"][0]["status"] == "quarantined"
    stack.call("POST", f"/c/quarantine/{quarantined['signal_id']}/release")
    stack.submit([signal_upload("after-release", pdq)])
    assert "after-release" in collect_until(stack.settings, T.ACTIONS, {"after-release"})
    # every action written so far (partitions are read in any order: read them all to the end)
    actions = {key for key, _ in Client(stack.settings).read(T.ACTIONS, to_end=True, raw=True)}
    assert "after-quarantine" not in actions
    passed = {cid for cid, r in burst.items() if any(h["status"] == "match" for h in r["matches"])}
    assert {cid for cid in actions if cid.startswith("burst-")} == passed and len(passed) == FLOOD_LIMIT


def test_confirm_copies_and_deconfirm_disables(stack):
    stack.bank("CONFIRMED")
    stack.bank("THIRD_PARTY", confirmed_bank="CONFIRMED")
    stack.bank("NOISY", deconfirm_disable_s=0)
    stack.bank_file("THIRD_PARTY", BRIDGE / "high-contrast.jpg")
    stack.bank_file("NOISY", BRIDGE / "square-256x256.jpg")
    stack.submit([photo_upload("fb-harmful", BRIDGE / "high-contrast.jpg"), photo_upload("fb-benign", BRIDGE / "square-256x256.jpg")])
    found = collect_until(stack.settings, T.MATCHES, {"fb-harmful", "fb-benign"})
    harmful_sig = next(h["signal_id"] for h in only(found, "fb-harmful")["matches"] if h["bank"] == "THIRD_PARTY")
    benign_sig = next(h["signal_id"] for h in only(found, "fb-benign")["matches"] if h["bank"] == "NOISY")

    stack.call("POST", "/c/feedback", 201, json={"content_id": "fb-harmful", "verdict": "harmful", "signals": [harmful_sig]})
    stack.call("POST", "/c/feedback", 201, json={"content_id": "fb-benign", "verdict": "benign", "signals": [benign_sig], "note": "a meme"})
    stack.call("POST", "/c/feedback", 201, json={"content_id": "unmatched-but-harmful", "verdict": "harmful"})
    assert stack.call("GET", f"/c/signal/{harmful_sig}/tallies") == {"signal_id": harmful_sig, "harmful": 1, "benign": 0}
    assert stack.call("GET", "/c/feedback/unmatched-but-harmful")[0]["verdict"] == "harmful"

    harmful_pdq = only(found, "fb-harmful")["signals"]["pdq"]["value"]
    wait_until(lambda: "CONFIRMED" in stack.call("GET", "/m/lookup", params={"signal_type": "pdq", "signal": harmful_pdq}),
               30, "the confirmed signal to be copied into the CONFIRMED bank", interval_s=0.5)
    stack.submit([photo_upload("fb-benign-again", BRIDGE / "square-256x256.jpg")])
    again = only(collect_until(stack.settings, T.MATCHES, {"fb-benign-again"}), "fb-benign-again")
    assert [h["status"] for h in again["matches"] if h["bank"] == "NOISY"] == ["disabled"]


def test_state_survives_a_restart_of_worker_and_api(stack):
    before = {
        "banks": stack.call("GET", "/c/banks"),
        "quarantine": stack.call("GET", "/c/quarantine", params={"state": "all"}),
        "tallies": [stack.call("GET", f"/c/signal/{q['signal_id']}/tallies") for q in stack.call("GET", "/c/quarantine", params={"state": "all"})],
    }
    stack.stop()
    stack.start()
    after = {
        "banks": stack.call("GET", "/c/banks"),
        "quarantine": stack.call("GET", "/c/quarantine", params={"state": "all"}),
        "tallies": [stack.call("GET", f"/c/signal/{q['signal_id']}/tallies") for q in stack.call("GET", "/c/quarantine", params={"state": "all"})],
    }
    assert after == before and before["quarantine"]
    stack.submit([photo_upload("after-restart", BRIDGE / "sharpen-a-lot.jpg")])
    record = only(collect_until(stack.settings, T.MATCHES, {"after-restart"}), "after-restart")
    assert {h["bank"] for h in record["matches"] if h["status"] == "match"} >= {"WITHIN_16", "WITHIN_8"}
