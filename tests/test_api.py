"""The API process on the real broker: upstream routes and shapes, read-your-writes, bad requests."""

from __future__ import annotations

import functools
import http.server
import threading

import pytest
import requests

from ops.kafka.broker import free_port
from tests.pipeline_env import BRIDGE, ApiProcess, checked, hmas, pipeline_env
from tests.upstream_api_client import UpstreamClient, check_every_upstream_route

pytestmark = pytest.mark.kafka
TOKEN = "test-token-123"
PHOTO = BRIDGE / "aaa-orig.jpg"
EDIT = BRIDGE / "blur-a-lot.jpg"


MEDIA_HOST = "127.0.0.2"  # allow-listed for the media server; 127.0.0.1 stays refused


class MediaServer(http.server.ThreadingHTTPServer):
    daemon_threads = True


@pytest.fixture(scope="module")
def media_url():
    """The test photos over HTTP, for the routes that fetch a URL."""
    handler = functools.partial(QuietFiles, directory=str(PHOTO.parent))
    server = MediaServer((MEDIA_HOST, 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://{MEDIA_HOST}:{server.server_address[1]}"
    server.shutdown()


class QuietFiles(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def api(kafka_broker, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("api")
    env = pipeline_env(kafka_broker.bootstrap, tmp / "state", HMAS_API_TOKEN=TOKEN, HMAS_FETCH_MAX_BYTES="2000000",
                       HMAS_FETCH_ALLOW_HOSTS=MEDIA_HOST)
    hmas(env, "topics", "create")
    process = ApiProcess(env, tmp / "api.log", free_port()).start()
    yield process
    process.stop()


def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}"}


def test_every_upstream_route_answers_in_upstreams_shapes(api, media_url):
    check_every_upstream_route(UpstreamClient(api.base, TOKEN), PHOTO, EDIT, media_url)


def test_reads_follow_writes_immediately(api):
    for i in range(3):
        bank = f"RYW_{i}"
        checked(requests.post(f"{api.base}/c/banks", json={"name": bank}, headers=auth()), 201)
        added = checked(requests.post(f"{api.base}/c/bank/{bank}/signal", json={"pdq": f"{i:02x}" * 32}, headers=auth()))
        found = requests.get(f"{api.base}/m/lookup", params={"signal_type": "pdq", "signal": f"{i:02x}" * 32}).json()
        assert found[bank] == [{"bank_content_id": added["id"], "distance": "0"}]


@pytest.mark.parametrize("method, path, kwargs, status, message", [
    ("GET", "/c/bank/NO_SUCH_BANK", {}, 404, "not found"),
    ("POST", "/c/bank/NO_SUCH_BANK/signal", {"json": {"pdq": "0" * 64}}, 404, "not found"),
    ("POST", "/c/banks", {"json": {"name": "lower case"}}, 400, "upper case"),
    ("POST", "/c/banks", {"json": {"name": "9STARTS_WITH_DIGIT"}}, 400, "upper case"),
    ("GET", "/m/lookup?signal_type=pdq&signal=nothex", {}, 400, "64 hex"),
    ("GET", "/m/raw_lookup?signal_type=pdq&signal=" + "a" * 63, {}, 400, "64 hex"),
    ("GET", "/m/lookup?signal_type=sha1&signal=00", {}, 400, "No such SignalType"),
    ("POST", "/m/compare", {"json": {"pdq": ["0" * 64]}}, 400, "exactly 2"),
    ("POST", "/c/banks", {"data": "not json"}, 400, "JSON"),
    ("POST", "/h/hash", {"files": {"file": ("x.jpg", b"not an image")}}, 400, "not an image"),
    ("GET", "/h/hash?url=http://127.0.0.1:1/x.jpg", {}, 400, "loopback"),
])
def test_bad_requests_get_4xx_with_a_message(api, method, path, kwargs, status, message):
    response = requests.request(method, api.base + path, headers=auth(), **kwargs)
    assert response.status_code == status, response.text
    assert message in response.json()["message"]


def test_bad_distances_are_refused(api):
    checked(requests.post(f"{api.base}/c/banks", json={"name": "DISTANCES"}, headers=auth()), 201)
    for path in ("/c/bank/DISTANCES", "/c/bank/DISTANCES/controls"):
        for bad in (-1, 257, "ten", 3.5):
            r = requests.put(api.base + path, json={"distances": {"pdq": bad}}, headers=auth())
            assert r.status_code == 400 and "distance" in r.json()["message"]
        r = requests.put(api.base + path, json={"distances": {"nope": 3}}, headers=auth())
        assert r.status_code == 400 and "No such SignalType" in r.json()["message"]
    assert requests.put(f"{api.base}/c/bank/DISTANCES", json={"distances": {"pdq": 63}}, headers=auth()).json() == {
        "name": "DISTANCES", "matching_enabled_ratio": 1.0}
    assert requests.get(f"{api.base}/c/bank/DISTANCES/controls").json()["distances"] == {"pdq": 63}


def test_bank_controls_have_routes_of_their_own(api):
    created = requests.post(f"{api.base}/c/banks", json={"name": "CONTROLLED", "action": "remove",
                                                          "distances": {"pdq": 20}}, headers=auth())
    assert created.status_code == 201 and created.json() == {"name": "CONTROLLED", "matching_enabled_ratio": 1.0}
    assert requests.get(f"{api.base}/c/bank/CONTROLLED/controls").json() == {
        "action": "remove", "distances": {"pdq": 20}, "suppressed_by": [], "flood": None, "confirmed_bank": None,
        "deconfirm_disable_s": 0, "share_to": []}
    flood = {"max_matches": 50, "window_ms": 60_000, "baseline_multiple": None}
    changed = requests.put(f"{api.base}/c/bank/CONTROLLED/controls", json={"flood": flood, "suppressed_by": ["DISTANCES"]},
                           headers=auth())
    assert changed.status_code == 200 and changed.json() == {
        "action": "remove", "distances": {"pdq": 20}, "suppressed_by": ["DISTANCES"], "flood": flood,
        "confirmed_bank": None, "deconfirm_disable_s": 0, "share_to": []}
    assert requests.get(f"{api.base}/c/bank/CONTROLLED").json() == {"name": "CONTROLLED", "matching_enabled_ratio": 1.0}
    refused = requests.put(f"{api.base}/c/bank/CONTROLLED/controls", json={"enabled_ratio": 0.5}, headers=auth())
    assert refused.status_code == 400 and "not a bank control: enabled_ratio" in refused.json()["message"]
    assert requests.put(f"{api.base}/c/bank/CONTROLLED/controls", json={"action": "x"}).status_code == 401
    assert requests.get(f"{api.base}/c/bank/NO_SUCH_BANK/controls").status_code == 404


def test_mutations_need_the_token(api):
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        r = requests.post(f"{api.base}/c/banks", json={"name": "NO_AUTH"}, headers=headers)
        assert r.status_code == 401 and "Bearer" in r.json()["message"]
    assert requests.get(f"{api.base}/c/banks").status_code == 200  # reads stay open


def test_oversize_upload_is_413(api):
    r = requests.post(f"{api.base}/h/hash", files={"file": ("big.jpg", b"\xff" * 2_100_000)})
    assert r.status_code == 413 and r.json()["message"]


def test_openapi_lists_every_route_and_metrics_count_requests(api):
    doc = requests.get(f"{api.base}/openapi.json").json()
    assert requests.get(f"{api.base}/openapi/openapi.json").json() == doc  # upstream's path
    assert doc["info"]["title"] == "Open Media Match API"
    assert {"/m/lookup", "/c/bank/{bank}/content/{content_id}", "/c/bank/{bank}/controls", "/c/quarantine",
            "/c/feedback"} <= set(doc["paths"])
    assert "post" in doc["paths"]["/m/lookup"] and doc["paths"]["/c/banks"]["post"]["security"]
    metrics = requests.get(f"{api.base}/metrics").text
    assert 'hmas_api_requests_total{route="/c/banks"' in metrics


def test_dev_routes_are_absent_without_development_mode(api):
    for path in ("/dev/factory_reset", "/dev/seed_banks", "/dev/setup_sample_example"):
        assert requests.post(api.base + path, headers=auth()).status_code == 404
