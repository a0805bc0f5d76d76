"""Property tests of every API route of the real app on the test broker: whatever the path
parameters, query and body, the answer is never a 500, and every error is a 4xx with a message."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings as hypothesis_settings, strategies as st

from pipeline.admin import ensure_topics
from pipeline.api.app import ROUTES_KEY, create_api
from pipeline.config import Settings
from tests.pipeline_env import InProcessApi, pipeline_env, settings_from

pytestmark = pytest.mark.kafka

ROUTES = sorted((route.method, route.path, route.params) for route in create_api(Settings())[ROUTES_KEY].values())
SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30)
ANY_JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
    st.sampled_from(["name", "pdq", "md5", "signal", "signal_type", "url", "enabled", "enabled_ratio", "distances",
                     "action", "flood", "suppressed_by", "content_id", "verdict", "signals", "metadata", "note",
                     "api", "bank", "api_json", "credential_json", "pairs", "banks"]) | st.text(max_size=10),
    inner, max_size=5), max_leaves=12)
# URLs that must be refused without leaving the machine: loopback, private, metadata, odd schemes, malformed.
BAD_URLS = st.sampled_from([
    "http://127.0.0.1:9/x", "http://10.0.0.1/", "http://169.254.169.254/latest/meta-data", "http://[::1]/",
    "file:///etc/passwd", "gopher://x/", "http://", "http://[::1/", "not a url", "", "http://0.0.0.0:1/",
    "https://127.0.0.1:1/" + "a" * 1500,
])
QUERY_VALUES = BAD_URLS | st.text(max_size=40) | st.sampled_from(
    ["pdq", "md5", "video_md5", "photo", "video", "0" * 64, "f" * 63, "-1", "1e999", "nan", "true", "99999999999999999999"])
BODIES = st.one_of(
    st.just({}),
    st.builds(lambda v: {"json": v}, ANY_JSON),
    st.builds(lambda b: {"data": b, "headers": {"Content-Type": "application/json"}}, st.binary(max_size=300)),
    st.builds(lambda b, fields: {"data": {"file": b, **fields}}, st.binary(max_size=300),
              st.dictionaries(st.sampled_from(["content_type", "banks", "seed", "x"]), st.text(max_size=10), max_size=2)),
    st.builds(lambda b: {"data": b, "headers": {"Content-Type": "multipart/form-data; boundary=zz"}}, st.binary(max_size=200)),
)


@pytest.fixture(scope="module")
def api(kafka_broker, tmp_path_factory):
    """The API with every route open and no rate limits: what is under test is the handlers."""
    env = pipeline_env(kafka_broker.bootstrap, tmp_path_factory.mktemp("fuzz-api") / "state",
                       HMAS_API_LOOKUP_RATE="0", HMAS_API_HASH_RATE="0", HMAS_FETCH_TIMEOUT_S="1")
    settings = settings_from(env)
    ensure_topics(settings.bootstrap_servers, settings)
    with InProcessApi(settings) as api:
        yield api


@pytest.mark.parametrize("method, path, params", ROUTES, ids=[f"{m} {p}" for m, p, _ in ROUTES])
@hypothesis_settings(max_examples=15, deadline=None,
                     suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_no_route_answers_500(api, method, path, params, data):
    filled = path
    for name in [part[1:-1] for part in path.split("/") if part.startswith("{")]:
        filled = filled.replace("{" + name + "}", quote(data.draw(st.text(min_size=1, max_size=30), label=name), safe=""))
    query = data.draw(st.dictionaries(st.sampled_from(list(params) + ["x"]) if params else st.just("x"),
                                      QUERY_VALUES, max_size=4), label="query")
    body = data.draw(BODIES, label="body") if method in ("POST", "PUT") else {}
    answer = api.request(method, filled, params=query, **body)
    assert answer.status < 500, (answer.status, answer.body[:300])
    if answer.status >= 400:
        message = json.loads(answer.body)["message"] if answer.body.startswith(b"{") else ""
        assert message, f"{answer.status} without a message: {answer.body[:200]!r}"
