"""Upstream HMA's exchange routes over HTTP on the real broker, and an exchange fetched by `hmas
fetcher` into a bank that the worker matches uploads against."""

from __future__ import annotations

import json

import pytest
import requests

from ops.kafka.broker import free_port
from pipeline import topics as T
from pipeline.client import Client
from pipeline.uploads import new_upload
from tests.pipeline_env import (
    ApiProcess, HmasProcess, WorkerProcess, collect_until, create_topics, hmas, pipeline_env, settings_from, stop_all,
)

pytestmark = pytest.mark.kafka
TOKEN = "exchange-token"
SECRET = "12345789|000000000000"


@pytest.fixture(scope="module")
def api(kafka_broker, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("api-exchanges")
    env = pipeline_env(kafka_broker.bootstrap, tmp / "state", HMAS_API_TOKEN=TOKEN)
    create_topics(env)
    process = ApiProcess(env, tmp / "api.log", free_port()).start()
    yield process
    process.stop()


def call(api, method: str, path: str, **kwargs) -> requests.Response:
    return requests.request(method, api.base + path, headers={"Authorization": f"Bearer {TOKEN}"}, **kwargs)


def test_upstreams_exchange_api_tests(api):
    """Upstream's test_api.py exchange tests, over HTTP."""
    assert {"sample", "fb_threatexchange"} <= set(call(api, "GET", "/c/exchanges/apis").json())
    assert call(api, "GET", "/c/exchanges/api/sample").json() == {
        "supports_authentification": False, "has_set_authentification": False}
    assert call(api, "GET", "/c/exchanges/api/fb_threatexchange").json() == {
        "supports_authentification": True, "has_set_authentification": False}
    assert call(api, "GET", "/c/exchanges/api/nope").status_code == 400

    schema = call(api, "GET", "/c/exchanges/api/sample/schema").json()
    assert schema["config_schema"] == {"fields": []} and schema["credentials_schema"] is None
    schema = call(api, "GET", "/c/exchanges/api/fb_threatexchange/schema").json()
    fields = {f["name"]: f for f in schema["config_schema"]["fields"]}
    assert fields["privacy_group"]["type"] == "number" and fields["privacy_group"]["required"] is True
    assert {f["name"]: f["type"] for f in schema["credentials_schema"]["fields"]}["api_token"] == "string"
    assert call(api, "GET", "/c/exchanges/api/nope/schema").status_code == 404

    assert call(api, "DELETE", "/c/exchange/TEST_EXCHANGE").status_code == 200
    assert call(api, "POST", "/c/exchanges", json={"api": "sample", "bank": "FOO_EXCHANGE", "api_json": {}}).status_code == 201
    deleted = call(api, "DELETE", "/c/exchange/FOO_EXCHANGE")
    assert deleted.status_code == 200 and deleted.json()["message"] == "Exchange deleted"
    assert "FOO_EXCHANGE" not in call(api, "GET", "/c/exchanges").json()
    assert call(api, "GET", "/c/bank/FOO_EXCHANGE").status_code == 404

    assert call(api, "GET", "/c/exchange/NONEXISTENT_EXCHANGE/status").status_code == 404
    assert call(api, "POST", "/c/exchanges", json={"api": "sample", "bank": "BAR_EXCHANGE", "api_json": {}}).status_code == 201
    status = call(api, "GET", "/c/exchange/BAR_EXCHANGE/status").json()
    for name in ("checkpoint_ts", "running_fetch_start_ts", "last_fetch_complete_ts", "last_fetch_succeeded",
                 "up_to_date", "fetched_items"):
        assert name in status


def test_exchange_configuration_and_its_bank(api, tmp_path):
    created = call(api, "POST", "/c/exchanges",
                   json={"api": "local_file", "bank": "FILE_EXCHANGE", "api_json": {"filename": str(tmp_path / "h.txt")}})
    assert created.status_code == 201 and created.json() == {"message": "Created successfully"}
    shown = call(api, "GET", "/c/exchange/FILE_EXCHANGE").json()
    assert shown == {"name": "FILE_EXCHANGE", "api": "local_file", "enabled": True,
                     "filename": str(tmp_path / "h.txt"), "signal_type": None}
    assert "FILE_EXCHANGE" in call(api, "GET", "/c/exchanges").json()
    assert call(api, "PUT", "/c/exchange/FILE_EXCHANGE", json={"enabled": False}).json()["enabled"] is False
    assert call(api, "GET", "/c/exchange/FILE_EXCHANGE").json()["enabled"] is False

    # the exchange's bank is a normal bank: its controls apply
    controls = call(api, "PUT", "/c/bank/FILE_EXCHANGE/controls", json={"distances": {"pdq": 20}, "action": "remove"}).json()
    assert controls["distances"] == {"pdq": 20} and controls["action"] == "remove"
    for body, message in [
        ({"api": "sample", "bank": "lower"}, "upper case"),
        ({"api": "nope", "bank": "NOPE_X"}, "No such exchange type"),
        ({"bank": "NO_API"}, "required"),
        ({"api": "local_file", "bank": "NO_FILE", "api_json": {}}, "Failed to parse `api_json`"),
        ({"api": "sample", "bank": "LIST_JSON", "api_json": []}, "must be object"),
    ]:
        r = call(api, "POST", "/c/exchanges", json=body)
        assert r.status_code == 400 and message in r.json()["message"], r.text
    assert call(api, "POST", "/c/exchanges", json={"api": "sample", "bank": "FILE_EXCHANGE"}).status_code == 409
    assert requests.post(api.base + "/c/exchanges", json={"api": "sample", "bank": "X"}).status_code == 401


def test_credentials_without_a_key_are_refused_and_never_answered(api):
    r = call(api, "POST", "/c/exchanges/api/fb_threatexchange", json={"credential_json": {"api_token": SECRET}})
    assert r.status_code == 400
    assert "HMAS_SECRET_KEY" in r.json()["message"] and "TX_ACCESS_TOKEN" in r.json()["message"]
    assert SECRET not in r.text
    assert call(api, "GET", "/c/exchanges/api/fb_threatexchange").json()["has_set_authentification"] is False
    unset = call(api, "POST", "/c/exchanges/api/fb_threatexchange", json={"credential_json": {}})
    assert unset.json() == {"supports_authentification": True, "has_set_authentification": False}
    assert SECRET not in api.log_path.read_text()


def test_a_fetched_exchange_matches_uploads(kafka_broker, tmp_path):
    env = pipeline_env(kafka_broker.bootstrap, tmp_path / "state", HMAS_API_TOKEN=TOKEN)
    settings = settings_from(env)
    hmas(env, "topics", "create")
    hashes = tmp_path / "hashes.txt"
    banked = "f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22"
    hashes.write_text(f"pdq {banked}\n")
    fetchers = [HmasProcess(env, tmp_path / f"fetcher{i}.log", "fetcher").start() for i in range(2)]
    worker = WorkerProcess(env, tmp_path / "worker.log").start()
    api = ApiProcess(env, tmp_path / "api.log", free_port()).start()
    try:
        hmas(env, "exchange", "add", "FILE_E", "local_file", "--api-json", json.dumps({"filename": str(hashes)}))
        done = json.loads(hmas(env, "exchange", "fetch", "FILE_E", "--wait", "120").stdout)
        assert done["last_fetch_succeeded"] and done["fetched_items"] == 1
        status = call(api, "GET", "/c/exchange/FILE_E/status").json()
        assert status["fetched_items"] == 1 and status["last_fetch_succeeded"] is True
        found = call(api, "GET", "/m/lookup", params={"signal_type": "pdq", "signal": banked}).json()
        source = {"exchange": "FILE_E", "record_id": json.dumps(["pdq", banked]), "category": "investigation_seed",
                  "tags": []}
        assert [(hit["distance"], hit["exchange"]) for hit in found["FILE_E"]] == [("0", source)]  # upstream answers the distance as a string

        client = Client(settings)
        client.produce(T.UPLOADS, "from-exchange", new_upload("from-exchange", "photo", signals={"pdq": banked}))
        client.flush()
        [match] = collect_until(settings, T.MATCHES, {"from-exchange"})["from-exchange"]
        assert [(hit["bank"], hit["exchange"]) for hit in match["matches"]] == [("FILE_E", source)]

        listed = [json.loads(line) for line in hmas(env, "exchange", "list").stdout.splitlines()]
        assert [r["name"] for r in listed] == ["FILE_E"]
        assert json.loads(hmas(env, "exchange", "disable", "FILE_E").stdout)["enabled"] is False
        assert json.loads(hmas(env, "exchange", "status", "FILE_E").stdout)["fetched_items"] == 1
        removed = json.loads(hmas(env, "exchange", "remove", "FILE_E").stdout)
        assert removed == {"exchange": "FILE_E", "removed_signals": 1}
        assert hmas(env, "exchange", "status", "FILE_E", check=False).returncode == 2
    finally:
        stop_all(api, worker, *fetchers)
    elected = [f for f in fetchers if "exchange fetcher elected" in f.log_path.read_text()]
    assert len(elected) >= 1
