"""Renaming a bank through upstream's route (PUT /c/bank/<bank> with a new name), with a worker and
the API on the real broker: content ids kept, lookups and the worker's matches under the new name
only, controls, references, quarantine and feedback following, and uploads matched while the
rename runs matching exactly once.
"""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest
import requests

from ops.kafka.broker import free_port
from pipeline import topics as T
from pipeline.bank_rename import bank_swap, moved_signals
from pipeline.banks import bank_signal_record
from pipeline.client import Client
from pipeline.clock import now_ms
from pipeline.signal_types import signal_id
from pipeline.state.bank_view import BankView
from pipeline.state.log_reader import read_to_end
from pipeline.uploads import new_upload
from tests.pipeline_env import (
    BRIDGE_ORIGINAL, SHIPPED_MEDIA, ApiProcess, WorkerProcess, collect_until, hmas, pipeline_env, settings_from,
    wait_until,
)

pytestmark = pytest.mark.kafka
PHOTO = SHIPPED_MEDIA.path(BRIDGE_ORIGINAL)
LARGE = 20_000  # signals in the bank, so that the rename spans many uploads
FIRST_ID = 5_000_000


@pytest.fixture(scope="module")
def stack(kafka_broker, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("rename")
    env = pipeline_env(kafka_broker.bootstrap, tmp / "state")
    hmas(env, "topics", "create")
    worker = WorkerProcess(env, tmp / "worker.log").start()
    api = ApiProcess(env, tmp / "api.log", free_port()).start()
    yield settings_from(env), api, env
    api.stop()
    worker.stop()


def call(api, method, path, expect=200, **kwargs):
    r = requests.request(method, api.base + path, timeout=120, **kwargs)
    assert r.status_code == expect, f"{method} {path}: {r.status_code} {r.text}"
    return r.json()


def signal_upload(cid, pdq):
    return new_upload(cid, "photo", signals={"pdq": pdq})


def hits_in(record, banks):
    return [(h["bank"], h["bank_content_id"], h["status"]) for h in record["matches"] if h["bank"] in banks]


def test_rename_keeps_content_and_moves_matching_to_the_new_name(stack):
    settings, api, _ = stack
    call(api, "POST", "/c/banks", 201, json={"name": "OLD", "action": "remove", "distances": {"pdq": 16}})
    call(api, "POST", "/c/banks", 201, json={"name": "FEED", "suppressed_by": ["OLD"], "action": "none"})
    photo = call(api, "POST", "/c/bank/OLD/content", files={"file": (PHOTO.name, PHOTO.read_bytes())},
                 data={"note": "the bridge", "metadata": '{"content_id": "ext-9"}'})
    quarantined = call(api, "POST", "/c/bank/OLD/signal", json={"pdq": "ab" * 32})
    before = {cid: call(api, "GET", f"/c/bank/OLD/content/{cid}", params={"include_signals": "true"})
              for cid in (photo["id"], quarantined["id"])}
    controls = call(api, "GET", "/c/bank/OLD/controls")
    # a quarantine decision and a feedback decision about the banked signals, taken before the rename
    client = Client(settings)
    client.produce(T.UPLOADS, "before", signal_upload("before", "ab" * 32))
    client.flush()
    [hit] = collect_until(settings, T.MATCHES, {"before"})["before"][0]["matches"]
    sid = hit["signal_id"]
    client.produce(T.QUARANTINE, sid, {"signal_id": sid, "state": "disabled", "count": 500, "window_ms": 60_000,
                                       "sample_content_ids": ["before"], "changed_at": now_ms()})
    client.flush()
    call(api, "POST", "/c/feedback", 201, json={"content_id": "before", "verdict": "harmful", "signals": [sid]})
    # the worker tags the signal confirmed in place (the bank names no confirmed bank)
    assert any(v is not None and v["metadata"].get("confirmed") == "true"
               for k, v in Client(settings).read(T.BANK_SIGNALS, timeout_s=60) if k == f"OLD/pdq/{sid}")

    renamed = call(api, "PUT", "/c/bank/OLD", json={"name": "NEW"})
    assert renamed == {"name": "NEW", "matching_enabled_ratio": 1.0}
    call(api, "GET", "/c/bank/OLD", 404)
    call(api, "GET", "/c/bank/OLD/controls", 404)
    for cid, shown in before.items():
        call(api, "GET", f"/c/bank/OLD/content/{cid}", 404)
        after = call(api, "GET", f"/c/bank/NEW/content/{cid}", params={"include_signals": "true"})
        assert after == {**shown, "bank": {"name": "NEW", "matching_enabled_ratio": 1.0}}
    assert call(api, "GET", "/c/bank/NEW/controls") == controls
    assert call(api, "GET", "/c/bank/FEED/controls")["suppressed_by"] == ["NEW"]
    assert [b["name"] for b in call(api, "GET", "/c/banks")] == ["FEED", "NEW"]
    pdq = before[photo["id"]]["signals"]["pdq"]
    assert call(api, "GET", "/m/lookup", params={"signal_type": "pdq", "signal": pdq}) == {
        "NEW": [{"bank_content_id": photo["id"], "distance": "0"}]}
    assert call(api, "GET", "/m/raw_lookup", params={"signal_type": "pdq", "signal": pdq, "banks": "OLD"}) == {"matches": []}
    assert call(api, "GET", f"/c/signal/{sid}/tallies") == {"signal_id": sid, "harmful": 1, "benign": 0}
    assert [q["signal_id"] for q in call(api, "GET", "/c/quarantine", params={"state": "disabled"})] == [sid]

    client.produce(T.UPLOADS, "after-photo", new_upload("after-photo", "photo", content=PHOTO.read_bytes()))
    client.produce(T.UPLOADS, "after-quarantined", signal_upload("after-quarantined", "ab" * 32))
    client.flush()
    found = collect_until(settings, T.MATCHES, {"after-photo", "after-quarantined"})
    assert hits_in(found["after-photo"][0], {"OLD", "NEW"}) == [("NEW", photo["id"], "match")]
    assert hits_in(found["after-quarantined"][0], {"OLD", "NEW"}) == [("NEW", quarantined["id"], "disabled")]
    [action] = collect_until(settings, T.ACTIONS, {"after-photo"})["after-photo"]
    assert action["action"] == "remove" and [h["bank"] for h in action["matches"]] == ["NEW"]


def test_uploads_matched_during_a_rename_match_once(stack):
    """While a large bank is renamed, every upload of one of its signals matches exactly once,
    under the old name or the new one, with its content id."""
    settings, api, _ = stack
    call(api, "POST", "/c/banks", 201, json={"name": "LARGE_OLD"})
    codes = [c.tobytes().hex() for c in np.random.default_rng(17).integers(0, 256, (LARGE, 32), dtype=np.uint8)]
    client = Client(settings)
    for i, code in enumerate(codes):
        key, record = bank_signal_record("LARGE_OLD", FIRST_ID + i, "pdq", code)
        client.produce(T.BANK_SIGNALS, key, record)
    client.flush()
    probe = {"pdq": codes[-1]}
    wait_until(lambda: call(api, "GET", "/m/raw_lookup", params={"signal_type": "pdq", "signal": probe["pdq"]})["matches"],
               120, "the API's view to read the whole bank")

    sent: dict[str, int] = {}
    done = threading.Event()

    def submit_while_renaming():
        rng = np.random.default_rng(3)
        producer = Client(settings)
        n = 0
        while not done.is_set() or n < 100:
            for _ in range(20):
                i = int(rng.integers(LARGE))
                cid = f"during-{n}"
                producer.produce(T.UPLOADS, cid, signal_upload(cid, codes[i]))
                sent[cid] = FIRST_ID + i
                n += 1
            producer.flush()
            time.sleep(0.1)  # a steady stream, not a flood

    thread = threading.Thread(target=submit_while_renaming)
    thread.start()
    try:
        assert call(api, "PUT", "/c/bank/LARGE_OLD", json={"name": "LARGE_NEW"})["name"] == "LARGE_NEW"
    finally:
        done.set()
        thread.join()
    matched = collect_until(settings, T.MATCHES, set(sent), timeout_s=180)
    names = set()
    for cid, content_id in sent.items():
        [record] = matched[cid]
        [(bank, got, status)] = hits_in(record, {"LARGE_OLD", "LARGE_NEW"})
        assert (got, status) == (content_id, "match")
        names.add(bank)
    assert "LARGE_NEW" in names  # the last uploads were matched after the rename
    assert len(list(call(api, "GET", "/m/raw_lookup", params={"signal_type": "pdq", "signal": codes[0],
                                                              "banks": "LARGE_NEW"})["matches"])) == 1
    assert call(api, "GET", "/c/bank/LARGE_NEW/content/%d" % FIRST_ID)["id"] == FIRST_ID
    assert "bank renamed" in (api.log_path.read_text())


def test_hmas_bank_controls_and_rename(stack):
    settings, api, env = stack
    hmas(env, "bank", "create", "CLI_OLD", "--distance", "pdq:20", "--action", "remove")
    added = json.loads(hmas(env, "bank", "add", "CLI_OLD", "--signal", "pdq:" + "cd" * 32).stdout)
    shown = json.loads(hmas(env, "bank", "controls", "CLI_OLD").stdout)
    assert shown == {"name": "CLI_OLD", "action": "remove", "distances": {"pdq": 20}, "suppressed_by": [],
                     "flood": None, "confirmed_bank": None, "deconfirm_disable_s": 0, "share_to": []}
    changed = json.loads(hmas(env, "bank", "controls", "CLI_OLD", "--flood-max", "9", "--flood-window", "60").stdout)
    assert changed == {**shown, "flood": {"max_matches": 9, "window_ms": 60_000, "baseline_multiple": None}}

    renamed = json.loads(hmas(env, "bank", "rename", "CLI_OLD", "CLI_NEW").stdout)
    assert renamed == {"name": "CLI_NEW", "renamed_from": "CLI_OLD", "signals": 1}
    assert hmas(env, "bank", "rename", "CLI_OLD", "CLI_OTHER", check=False).returncode == 2
    assert hmas(env, "bank", "list", "CLI_OLD", check=False).returncode == 2
    listed = [json.loads(line) for line in hmas(env, "bank", "list", "CLI_NEW").stdout.splitlines()]
    assert [(r["bank"], r["bank_content_id"], r["value"]) for r in listed] == [
        ("CLI_NEW", added["bank_content_id"], "cd" * 32)]
    # a rename interrupted after its bank record is finished by running it again
    cut = interrupted_rename(settings, env, api, "CUT_OLD", "CUT_NEW", "ce" * 32)
    refused = requests.post(f"{api.base}/c/banks", json={"name": "CUT_OLD"})
    assert refused.status_code == 403 and "finish its rename" in refused.json()["message"]
    finished = json.loads(hmas(env, "bank", "rename", "CUT_OLD", "CUT_NEW").stdout)
    assert finished == {"name": "CUT_NEW", "renamed_from": "CUT_OLD", "signals_left": 1}
    latest = dict(read_to_end(settings, T.BANK_SIGNALS))
    sid = signal_id("pdq", "ce" * 32)
    assert latest[f"CUT_OLD/pdq/{sid}"] is None and latest[f"CUT_NEW/pdq/{sid}"]["bank"] == "CUT_NEW"
    listed = [json.loads(line) for line in hmas(env, "bank", "list", "CUT_NEW").stdout.splitlines()]
    assert [r["bank_content_id"] for r in listed] == [cut["bank_content_id"]]

    # the same through the API: the client asks for the rename again
    cut = interrupted_rename(settings, env, api, "API_CUT_OLD", "API_CUT_NEW", "cf" * 32)
    assert call(api, "PUT", "/c/bank/API_CUT_OLD", json={"name": "API_CUT_NEW"}) == {
        "name": "API_CUT_NEW", "matching_enabled_ratio": 1.0}
    assert call(api, "GET", f"/c/bank/API_CUT_NEW/content/{cut['bank_content_id']}")["id"] == cut["bank_content_id"]
    latest = dict(read_to_end(settings, T.BANK_SIGNALS))
    assert [k for k, r in latest.items() if k.startswith("API_CUT_OLD/") and r is not None] == []
    call(api, "PUT", "/c/bank/API_CUT_OLD", 404, json={"name": "API_CUT_NEW"})  # nothing left to finish

    wait_until(lambda: requests.get(f"{api.base}/c/bank/CLI_NEW").status_code != 404, 60,
               "the API's view to read the rename")
    assert call(api, "GET", "/c/bank/CLI_NEW/controls") == {k: v for k, v in changed.items() if k != "name"}
    assert call(api, "GET", "/m/lookup", params={"signal_type": "pdq", "signal": "cd" * 32}) == {
        "CLI_NEW": [{"bank_content_id": added["bank_content_id"], "distance": "0"}]}


def interrupted_rename(settings, env, api, old, new, pdq):
    """A bank with one signal whose rename stopped after its bank record (steps 1 and 2 only)."""
    hmas(env, "bank", "create", old)
    added = json.loads(hmas(env, "bank", "add", old, "--signal", "pdq:" + pdq).stdout)
    view = BankView()
    view.apply(T.BANKS, read_to_end(settings, T.BANKS))
    view.apply(T.BANK_SIGNALS, read_to_end(settings, T.BANK_SIGNALS))
    client = Client(settings)
    for spec, key, record in moved_signals(view, old, new)[0] + bank_swap(view, view.banks[old], new):
        client.produce(spec, key, record)
    client.flush()
    wait_until(lambda: requests.get(f"{api.base}/c/bank/{new}").status_code != 404, 60,
               "the API's view to read the interrupted rename")
    return added
