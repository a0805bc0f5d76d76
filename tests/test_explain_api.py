"""`/m/explain` end to end: a worker and an API process on the real broker, banks written through
the API, floods counted by the worker; the API explains each verdict with its reason."""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
import requests
from PIL import Image

from pipeline import topics as T
from pipeline.client import Client
from pipeline.sampling import content_coin
from pipeline.uploads import new_upload
from tests.pipeline_env import (
    PipelineStack, collect_until, flip, hmas, pipeline_env, wait_until,
)

pytestmark = pytest.mark.kafka
TOKEN = "explain-token"


class Stack(PipelineStack):
    def __init__(self, env, tmp):
        super().__init__(env, tmp, TOKEN)

    def bank(self, name, signals=(), **config):
        self.call("POST", "/c/banks", 201, json={"name": name, **config})
        return [self.call("POST", f"/c/bank/{name}/signal", json={"pdq": pdq})["id"] for pdq in signals]

    def explain(self, **params):
        return self.call("GET", "/m/explain", params=params)


@pytest.fixture(scope="module")
def stack(kafka_broker, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("explain")
    env = pipeline_env(kafka_broker.bootstrap, tmp / "state", HMAS_API_TOKEN=TOKEN, HMAS_FLOOD_BUCKET_MS="10000")
    hmas(env, "topics", "create")
    s = Stack(env, tmp)
    yield s
    s.stop()


def random_pdq(seed: int) -> str:
    return np.random.default_rng(seed).integers(0, 256, 32, dtype=np.uint8).tobytes().hex()


def only_entry(result: dict, bank: str) -> dict:
    [entry] = result["banks"][bank]["nearest"]
    return entry


def test_a_hash_just_past_the_threshold_is_too_far(stack):
    base = random_pdq(1)
    stack.bank("NARROW", [base], distances={"pdq": 10})
    entry = only_entry(stack.explain(signal_type="pdq", signal=flip(base, 11)), "NARROW")
    assert (entry["verdict"], entry["distance"], entry["threshold"]) == ("too_far", 11, 10)
    assert entry["reason"] == "too far: distance 11 > threshold 10"
    assert only_entry(stack.explain(signal_type="pdq", signal=flip(base, 10)), "NARROW")["verdict"] == "match"


def test_a_suppressed_hit_names_the_negative_bank_entry(stack):
    pdq = random_pdq(2)
    [benign_id] = stack.bank("BENIGN", [pdq], action="none")
    stack.bank("FEED", [pdq], suppressed_by=["BENIGN"])
    result = stack.explain(signal_type="pdq", signal=pdq)
    entry = only_entry(result, "FEED")
    assert entry["verdict"] == "suppressed"
    assert entry["suppressed_by"]["bank"] == "BENIGN" and entry["suppressed_by"]["bank_content_id"] == benign_id
    assert f"content {benign_id}" in entry["reason"] and "BENIGN" in entry["reason"]
    assert "FEED" not in result["matched"] and "BENIGN" in result["matched"]


def test_a_disabled_signal_says_until_when(stack):
    pdq = random_pdq(3)
    [content_id] = stack.bank("PAUSED", [pdq])
    until = int(time.time()) + 86_400
    stack.call("PUT", f"/c/bank/PAUSED/content/{content_id}", json={"disable_until_ts": until})
    entry = only_entry(stack.explain(signal_type="pdq", signal=pdq), "PAUSED")
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(until))
    assert entry["verdict"] == "disabled" and entry["disabled_until"] == stamp and f"until {stamp}" in entry["reason"]


def test_a_disabled_bank_is_the_reason(stack):
    pdq = random_pdq(4)
    stack.bank("SWITCHED_OFF", [pdq])
    stack.call("PUT", "/c/bank/SWITCHED_OFF", json={"enabled": False})
    result = stack.explain(signal_type="pdq", signal=pdq)
    entry = only_entry(result, "SWITCHED_OFF")
    assert entry["verdict"] == "disabled" and entry["reason"] == "bank SWITCHED_OFF is disabled"
    assert result["banks"]["SWITCHED_OFF"]["enabled"] is False


def test_a_quarantined_signal_and_a_past_upload_by_content_id(stack):
    pdq = random_pdq(5)
    stack.bank("FLOODED", [pdq], flood={"max_matches": 2, "window_ms": 600_000})
    client = Client(stack.settings)
    ids = [f"flood-{i}" for i in range(4)]
    for cid in ids:
        client.produce(T.UPLOADS, cid, new_upload(cid, "photo", signals={"pdq": pdq}))
    client.flush()
    client.close()
    collect_until(stack.settings, T.MATCHES, set(ids))
    [quarantine] = wait_until(lambda: stack.call("GET", "/c/quarantine"), 60, "the quarantine record on the API")

    def past_upload():  # the API's ring follows hma.hashes on its own: 404 until it has read the upload
        r = requests.get(stack.api.base + "/m/explain", params={"content_id": ids[-1]}, timeout=30)
        assert r.status_code in (200, 404), r.text
        return r.json() if r.status_code == 200 else None

    past = wait_until(past_upload, 60, "the upload in the API's ring")
    assert past["content_id"] == ids[-1] and past["signals"]["pdq"]["value"] == pdq
    entry = only_entry(past, "FLOODED")
    assert entry["verdict"] == "quarantined" and entry["quarantine"]["count"] == quarantine["count"]
    assert "quarantined since" in entry["reason"] and f"{quarantine['count']} matches" in entry["reason"]

    def rerun_of(content_id: str):
        r = requests.get(stack.api.base + "/m/explain/rerun", params={"content_id": content_id}, timeout=30)
        assert r.status_code in (200, 404), r.text
        return r.json() if r.status_code == 200 else None

    reruns = [wait_until(lambda cid=cid: rerun_of(cid), 60, f"{cid} in the API's ring") for cid in ids]
    assert all(r["then"] is not None and r["then"]["content_id"] == r["upload"]["content_id"] for r in reruns)
    matched_then = [r for r in reruns if [h["status"] for h in r["then"]["matches"]] == ["match"]]
    assert matched_then, "the uploads before the flood limit matched"
    for r in matched_then:
        assert [c["kind"] for c in r["changes"]] == ["status"]
        assert "FLOODED" in r["changes"][0]["text"] and "match then, quarantined now" in r["changes"][0]["text"]


def test_a_file_is_hashed_with_its_quality_and_bad_input_is_a_400(stack):
    pixels = np.random.default_rng(6).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    png = io.BytesIO()
    Image.fromarray(pixels).save(png, format="PNG")
    result = stack.call("POST", "/m/explain", files={"file": ("noise.png", png.getvalue())})
    assert result["signals"]["pdq"]["quality"] is not None and set(result["banks"]) >= {"NARROW", "FEED"}
    assert "invalid signal" in stack.call("GET", "/m/explain", 400, params={"signal_type": "pdq", "signal": "xyz"})["message"]
    stack.call("GET", "/m/explain", 404, params={"content_id": "never-uploaded"})
    stack.call("GET", "/m/explain", 400, params={"signal": random_pdq(7), "radius": "500"})


def test_a_bank_fraction_samples_uploads_by_content_id_in_the_worker_the_api_and_explain(stack):
    pdq = random_pdq(8)
    stack.bank("HALF", [pdq], enabled_ratio=0.5)
    ids = {f"ratio-{i}" for i in range(200)}
    client = Client(stack.settings)

    def upload_all():
        for cid in sorted(ids):
            client.produce(T.UPLOADS, cid, new_upload(cid, "photo", signals={"pdq": pdq}))
        client.flush()

    def half_status(record: dict) -> str:
        [hit] = [h for h in record["matches"] if h["bank"] == "HALF"]
        return hit["status"]

    upload_all()
    first = collect_until(stack.settings, T.MATCHES, ids)
    upload_all()
    both = collect_until(stack.settings, T.MATCHES, ids, at_least=2)
    client.close()
    status = {cid: half_status(first[cid][0]) for cid in ids}
    assert {cid: [half_status(r) for r in both[cid][:2]] for cid in ids} == {cid: [s, s] for cid, s in status.items()}
    assert set(status.values()) == {"match", "disabled"}
    assert 70 <= sum(s == "match" for s in status.values()) <= 130  # 200 at 0.5: the binomial spread is 7
    kept = next(cid for cid in sorted(ids) if status[cid] == "match")
    out = next(cid for cid in sorted(ids) if status[cid] == "disabled")
    for cid in (kept, out):  # the API's lookup with upstream's seed decides as the worker did
        found = stack.call("GET", "/m/lookup", params={"signal_type": "pdq", "signal": pdq, "seed": cid})
        assert ("HALF" in found) == (status[cid] == "match")
    entry = only_entry(stack.explain(signal_type="pdq", signal=pdq, content_id=out), "HALF")
    assert entry["verdict"] == "disabled" and "sampled out by the bank's enabled_ratio" in entry["reason"]
    assert f"its coin {content_coin(out):.3f} >= enabled_ratio 0.5" in entry["reason"]
    assert only_entry(stack.explain(signal_type="pdq", signal=pdq, content_id=kept), "HALF")["verdict"] == "match"


def test_upstreams_bypass_coinflip_keeps_a_fractional_bank_for_an_uploaded_file(stack):
    pixels = np.random.default_rng(9).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    png = io.BytesIO()
    Image.fromarray(pixels).save(png, format="PNG")
    photo = {"file": ("rare.png", png.getvalue())}
    pdq = stack.call("POST", "/h/hash", files=photo)["pdq"]
    stack.bank("RARE", [pdq], enabled_ratio=0.01)
    out = next(f"rare-{i}" for i in range(100) if content_coin(f"rare-{i}") >= 0.01)
    assert "RARE" not in stack.call("POST", "/m/lookup", params={"seed": out}, files=photo)["pdq"]
    kept = stack.call("POST", "/m/lookup", params={"seed": out, "bypass_coinflip": "true"}, files=photo)["pdq"]
    assert [m["distance"] for m in kept["RARE"]] == ["0"]
