"""Upstream HMA's remaining routes on the real API process: status while loading, site map, index
and signal type status, content ids across replicas, and the development routes.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import requests

from ops.kafka.broker import free_port
from pipeline import topics as T
from pipeline.banks import bank_record, bank_signal_record
from pipeline.client import Client
from pipeline.signal_types import SIGNAL_TYPES
from pipeline.uploads import new_upload
from tests.pipeline_env import (
    ApiProcess, WorkerProcess, checked, collect_until, create_topics, pipeline_env, settings_from, wait_until,
)
from tests.upstream_api_client import UpstreamClient, check_upstream_flows_on_an_empty_server

pytestmark = pytest.mark.kafka
LARGE_BANK = 300_000


@pytest.fixture(scope="module")
def env(kafka_broker, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("operations")
    env = pipeline_env(kafka_broker.bootstrap, tmp / "state")
    create_topics(env)
    return env, tmp


@pytest.fixture(scope="module")
def api(env):
    e, tmp = env
    process = ApiProcess(e, tmp / "api.log", free_port(), "--dev").start()
    yield process
    process.stop()


def get(api, path, **params):
    return checked(requests.get(api.base + path, params=params, timeout=30))


def test_status_site_map_and_types(api):
    assert requests.get(api.base + "/status/live").text == "I-AM-ALIVE"
    site = get(api, "/site-map")
    assert {"/c/bank/<bank>/content/<content_id>", "/m/index/status", "/dev/factory_reset"} <= set(site)
    assert site == sorted(site)
    assert get(api, "/c/content_type") == [{"name": c, "enabled": True} for c in ("photo", "video", "text", "url")]
    assert {"name": "pdq", "enabled_ratio": 1.0} in get(api, "/c/signal_type")


def test_index_status_reports_what_the_replica_holds(api):
    checked(requests.post(api.base + "/c/banks", json={"name": "INDEXED"}), 201)
    for i in range(3):
        checked(requests.post(api.base + "/c/bank/INDEXED/signal", json={"pdq": f"{i + 1:02x}" * 32}))
    status = get(api, "/m/index/status")
    assert status["pdq"]["present"] is True and status["pdq"]["size"] >= 3 and status["pdq"]["built_to"] > 1.7e9
    assert set(status) == set(SIGNAL_TYPES) and {"pdq", "vpdq", "raw_text", "url"} <= set(status)
    one = get(api, "/c/signal_type/index", signal_type="pdq")
    assert one["pdq"]["db_size"] == one["pdq"]["index_size"] >= 3 and one["pdq"]["index_out_of_date"] is False
    assert requests.get(api.base + "/m/index/status", params={"signal_type": "nope"}).status_code == 400


def test_signal_type_enabled_ratio_zero_disables_matching(api):
    checked(requests.post(api.base + "/c/banks", json={"name": "RATIO"}), 201)
    checked(requests.post(api.base + "/c/bank/RATIO/signal", json={"pdq": "ab" * 32}))
    assert "RATIO" in get(api, "/m/lookup", signal_type="pdq", signal="ab" * 32)
    assert requests.put(api.base + "/c/signal_type/pdq", json={"enabled_ratio": 0}).status_code == 204
    assert {"name": "pdq", "enabled_ratio": 0.0} in get(api, "/c/signal_type")
    assert get(api, "/m/lookup", signal_type="pdq", signal="ab" * 32) == {}  # upstream would still match at 0
    assert requests.put(api.base + "/c/signal_type/pdq", json={"enabled_ratio": 1}).status_code == 204
    assert "RATIO" in get(api, "/m/lookup", signal_type="pdq", signal="ab" * 32)
    assert requests.put(api.base + "/c/signal_type/pdq", json={"enabled_ratio": 2}).status_code == 400


def test_content_ids_are_in_order_across_replicas_and_restarts(api, env):
    e, tmp = env
    second = ApiProcess(e, tmp / "api2.log", free_port()).start()
    try:
        checked(requests.post(api.base + "/c/banks", json={"name": "IDS"}), 201)
        ids = []
        for i in range(6):
            base = (api, second)[i % 2].base
            ids.append(checked(requests.post(f"{base}/c/bank/IDS/signal", json={"pdq": f"{i + 10:02x}" * 32}))["id"])
        assert ids == list(range(ids[0], ids[0] + 6))
    finally:
        second.stop()
    restarted = ApiProcess(e, tmp / "api3.log", free_port()).start()
    try:
        assert checked(requests.post(f"{restarted.base}/c/bank/IDS/signal", json={"pdq": "77" * 32}))["id"] == ids[-1] + 1
    finally:
        restarted.stop()


def test_status_is_503_until_a_large_bank_is_loaded(env):
    e, tmp = env
    settings = settings_from(e)
    client = Client(settings)
    client.produce(T.BANKS, "LARGE", bank_record("LARGE"))
    codes = np.random.default_rng(9).integers(0, 256, (LARGE_BANK, 32), dtype=np.uint8)
    for i, code in enumerate(codes):
        key, record = bank_signal_record("LARGE", 1_000_000 + i, "pdq", code.tobytes().hex())
        client.produce(T.BANK_SIGNALS, key, record)
    client.flush()
    process = ApiProcess(e, tmp / "api-large.log", free_port())
    process.proc = None
    seen: list[tuple[int, str]] = []
    super(ApiProcess, process).start()  # start without waiting for 200

    def status_is_200() -> bool:
        try:
            r = requests.get(process.base + "/status", timeout=5)
        except (requests.ConnectionError, requests.Timeout):  # not answering yet: a loaded machine's slow start
            return False
        seen.append((r.status_code, r.text))
        return r.status_code == 200

    try:
        wait_until(status_is_200, 120, "the API to load the large bank and answer /status with 200", interval_s=0.05,
                   detail=process.log_tail)
        assert (503, "INDEX-NOT-LOADED") in seen and seen[-1] == (200, "I-AM-ALIVE")
        assert requests.get(process.base + "/m/index/status").json()["pdq"]["size"] >= LARGE_BANK
    finally:
        process.stop()


def test_factory_reset_forgets_everything_everywhere(api, env):
    e, tmp = env
    worker = WorkerProcess(e, tmp / "worker.log").start()
    try:
        checked(requests.post(api.base + "/dev/setup_sample_example"))
        assert len(requests.get(api.base + "/m/raw_lookup", params={"signal_type": "pdq", "signal": "cd" * 32}).json()["matches"]) == 0
        checked(requests.post(api.base + "/c/banks", json={"name": "BEFORE_RESET"}), 201)
        checked(requests.post(api.base + "/c/bank/BEFORE_RESET/signal", json={"pdq": "cd" * 32}))
        client = Client(settings_from(e))
        client.produce(T.UPLOADS, "pre-reset", new_upload("pre-reset", "photo", signals={"pdq": "cd" * 32}))
        client.flush()
        pre = collect_until(settings_from(e), T.MATCHES, {"pre-reset"})["pre-reset"][0]
        assert [h["bank"] for h in pre["matches"] if h["bank"] == "BEFORE_RESET"] == ["BEFORE_RESET"]
        names = {b["name"] for b in get(api, "/c/banks")}
        assert {"SEED_SAMPLE", "BEFORE_RESET"} <= names

        assert requests.post(api.base + "/dev/factory_reset").status_code == 200
        assert get(api, "/c/banks") == []
        checked(requests.post(api.base + "/c/banks", json={"name": "AFTER_RESET"}), 201)
        assert checked(requests.post(api.base + "/c/bank/AFTER_RESET/signal", json={"pdq": "ef" * 32}))["id"] == 1

        # the worker's view follows the tombstones: uploads of the banked signal soon match nothing
        probes = (f"post-reset-{i}" for i in itertools.count())

        def upload_matches_nothing() -> bool:
            cid = next(probes)
            client.produce(T.UPLOADS, cid, new_upload(cid, "photo", signals={"pdq": "cd" * 32}))
            client.flush()
            post = collect_until(settings_from(e), T.MATCHES, {cid}, timeout_s=30).get(cid, [])
            return bool(post) and post[0]["matches"] == []

        wait_until(upload_matches_nothing, 60, "the worker to forget the banks the reset removed", interval_s=0.5)
    finally:
        worker.stop()


def test_seed_banks_fills_two_banks(api):
    r = requests.post(api.base + "/dev/seed_banks", timeout=60)
    assert [h.status_code for h in r.history] == [302] and r.url.startswith(api.base + "/ui?")  # upstream's redirect
    assert r.status_code == 200 and "Seeded 2 banks with 10000 random signals" in r.text
    banks = {b["name"] for b in get(api, "/c/banks")}
    assert {"SEED_BANK_0", "SEED_BANK_1"} <= banks
    index = get(api, "/c/signal_type/index")  # random signals of every type python-threatexchange can make them of
    assert sum(t["index_size"] for t in index.values()) >= 10_000 and index["pdq"]["index_size"] >= 3000


def test_upstream_test_flows_from_an_empty_server(api):
    """Last in this module: it empties the server between flows with the factory reset."""
    client = UpstreamClient(api.base)
    check_upstream_flows_on_an_empty_server(client, lambda: client.call("POST", "/dev/factory_reset"))
