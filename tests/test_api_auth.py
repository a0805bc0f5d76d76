"""API tokens with roles, per-client rate limits, and tokens kept out of the logs."""

from __future__ import annotations

import logging

import pytest

from pipeline.admin import ensure_topics
from pipeline.api.auth import ADMIN, CURATE, READ, ApiTokens, allows, parse_token_entries
from pipeline.api.limits import RateLimiter
from pipeline.api.ui.auth import UiAuth
from tests.pipeline_env import InProcessApi

READER, CURATOR, ADMINISTRATOR = "reader-7f3a9c", "curator-1b2d8e", "admin-c4e5f6"
TOKENS = f"{READER}:read,{CURATOR}:curate"


def test_token_entries_inline_and_from_a_file(tmp_path):
    assert parse_token_entries("a:read, b:c:admin") == [("a", "read"), ("b:c", "admin")]
    listed = tmp_path / "tokens"
    listed.write_text("# who may call the API\nalpha:read\n\nbeta:curate  # the curators\n")
    assert parse_token_entries(str(listed)) == [("alpha", "read"), ("beta", "curate")]
    with pytest.raises(ValueError, match="entry 1: role 'owner'"):
        ApiTokens(parse_token_entries("x:owner"))
    with pytest.raises(ValueError, match="entry 2: expected token:role"):
        parse_token_entries("x:read,nocolon")


def test_role_of_a_presented_token():
    tokens = ApiTokens([(READER, READ), (CURATOR, CURATE), (ADMINISTRATOR, ADMIN)])
    assert [tokens.role_of(t) for t in (READER, CURATOR, ADMINISTRATOR)] == [READ, CURATE, ADMIN]
    assert tokens.role_of("") is None and tokens.role_of(READER + "x") is None and tokens.role_of(READER[:-1]) is None
    assert allows(ADMIN, READ) and allows(CURATE, CURATE) and not allows(READ, CURATE) and not allows(CURATE, ADMIN)
    assert READER not in ApiTokens.client_id(READER)


def test_the_ui_signs_in_curators_and_admins_only():
    ui = UiAuth(ApiTokens([(READER, READ), (CURATOR, CURATE), (ADMINISTRATOR, ADMIN)]))
    assert ui.required and ui.token_matches(CURATOR) and ui.token_matches(ADMINISTRATOR)
    assert not ui.token_matches(READER) and not ui.token_matches("") and not ui.token_matches("guess")
    assert not UiAuth(ApiTokens([])).required


def test_a_token_bucket_per_client():
    now = [0.0]
    limiter = RateLimiter(2.0, clock=lambda: now[0])  # bursts of 4
    assert [limiter.take("a") for _ in range(4)] == [0.0] * 4
    assert limiter.take("a") == pytest.approx(0.5)
    assert limiter.take("b") == 0.0  # another client has its own bucket
    now[0] += 0.5
    assert limiter.take("a") == 0.0 and limiter.take("a") > 0
    small = RateLimiter(1.0, max_clients=2, clock=lambda: now[0])
    for client in "xyz":
        small.take(client)
    assert len(small._buckets) == 2
    assert RateLimiter(0).take("anyone") == 0.0


@pytest.fixture
def api(settings, caplog):
    """The API with a read, a curate and an admin token, reads closed, hashing limited to one
    request per client (the bucket refills once in 100 s: no test runs that long)."""
    secured = settings.with_overrides(api_token=ADMINISTRATOR, api_tokens=TOKENS, api_open_reads=0,
                                      api_hash_rate=0.01)
    ensure_topics(secured.bootstrap_servers, secured)
    caplog.set_level(logging.DEBUG)
    with InProcessApi(secured) as api:
        yield api
    logged = "\n".join(str(record.__dict__) for record in caplog.records)
    for token in (READER, CURATOR, ADMINISTRATOR):
        assert token not in logged, "an API token was logged"


@pytest.mark.kafka
def test_roles_decide_who_calls_what(api):
    assert api.request("GET", "/status").status == 200  # public: health checks need no token
    refused = api.request("GET", "/c/banks")
    assert refused.status == 401 and "role read" in refused.json()["message"]
    assert refused.headers["WWW-Authenticate"] == "Bearer"
    assert api.request("GET", "/c/banks", token="wrong").status == 401
    assert api.request("GET", "/c/banks", token=READER).status == 200

    weak = api.request("POST", "/c/banks", token=READER, json={"name": "BY_READER"})
    assert weak.status == 403 and "role curate" in weak.json()["message"] and "role is read" in weak.json()["message"]
    assert api.request("POST", "/c/banks", token=CURATOR, json={"name": "BY_CURATOR"}).status == 201

    for method, path, body in (("PUT", "/c/signal_type/pdq", {"enabled_ratio": 1.0}),
                               ("POST", "/c/exchanges", {"bank": "EX", "api": "sample", "api_json": {}})):
        assert api.request(method, path, token=CURATOR, json=body).status == 403, path
    assert api.request("PUT", "/c/signal_type/pdq", token=ADMINISTRATOR, json={"enabled_ratio": 1.0}).status == 204
    document = api.request("GET", "/openapi.json").json()
    assert document["paths"]["/c/exchanges"]["post"]["x-hmas-role"] == ADMIN


@pytest.mark.kafka
def test_hashing_is_rate_limited_per_client(api):
    first = api.request("POST", "/h/hash", token=READER, data={"file": b"not an image"})
    assert first.status == 400  # counted, and answered
    over = api.request("POST", "/h/hash", token=READER, data={"file": b"not an image"})
    assert over.status == 429 and int(over.headers["Retry-After"]) >= 1 and "rate limit" in over.json()["message"]
    # a lookup that fetches a URL counts as hashing; a lookup of a signal does not
    assert api.request("GET", "/m/lookup", token=READER, params={"url": "http://127.0.0.1/x"}).status == 429
    assert api.request("GET", "/m/lookup", token=READER, params={"signal_type": "pdq", "signal": "0" * 64}).status == 200
    # another client (another token) has its own bucket
    assert api.request("POST", "/h/hash", token=CURATOR, data={"file": b"not an image"}).status == 400
