"""Who may see and change what from the UI: the session cookie (signed with a key from the API
tokens, good for a limited time, naming its token's role), and, with HMAS_API_OPEN_READS=0, every
page behind a sign-in of role read or above, changes behind curate (exchanges admin), and the
pages that look up or hash under the API's rate limits (one budget per token with the JSON routes)."""

from __future__ import annotations

import re

import pytest

from pipeline.api.auth import ADMIN, CURATE, READ, ApiTokens
from pipeline.api.ui.auth import SESSION_TTL_S, Session, UiAuth
from tests.pipeline_env import InProcessApi

READER, CURATOR, ADMINISTRATOR = "ui-reader-5e1f", "ui-curator-9a2c", "ui-admin-3d7b"
SESSION = Session(ADMIN, ApiTokens.client_id("the-token"))


def ui_auth(token: str) -> UiAuth:
    return UiAuth(ApiTokens([(token, ADMIN)]))


def test_a_session_is_good_until_it_expires_or_the_token_changes():
    auth = ui_auth("the-token")
    cookie = auth.session_cookie(SESSION, now_s=1_000_000)
    assert auth.session_of_cookie(cookie, now_s=1_000_000 + SESSION_TTL_S - 1) == SESSION
    assert auth.session_of_cookie(cookie, now_s=1_000_000 + SESSION_TTL_S) is None
    assert ui_auth("another-token").session_of_cookie(cookie, now_s=1_000_000) is None
    demoted = UiAuth(ApiTokens([("the-token", READ)]))  # the same token, another role: signed out
    assert demoted.session_of_cookie(cookie, now_s=1_000_000) is None


def test_a_forged_or_altered_session_is_refused():
    auth = ui_auth("the-token")
    nonce, issued, role, client, signature = auth.session_cookie(SESSION, now_s=1_000_000).split(".")
    assert auth.session_of_cookie(f"{nonce}.{int(issued) + 3600}.{role}.{client}.{signature}", now_s=1_000_000) is None
    assert auth.session_of_cookie(f"{nonce}.{issued}.{role}.{client}.{'0' * 64}", now_s=1_000_000) is None
    read = auth.session_cookie(Session(READ, client), now_s=1_000_000)
    raised = read.replace(f".{READ}.", f".{ADMIN}.")  # a read session cannot make itself admin
    assert raised != read and auth.session_of_cookie(raised, now_s=1_000_000) is None
    for junk in ("", "abc", "a.b.c", f"{nonce}.{issued}", f"{nonce}.{issued}.{role}.{client}"):
        assert auth.session_of_cookie(junk, now_s=1_000_000) is None


def test_every_role_signs_in_with_its_role_and_no_token_is_no_session():
    auth = UiAuth(ApiTokens([(READER, READ), (CURATOR, CURATE), (ADMINISTRATOR, ADMIN)]))
    assert [auth.session_for(t).role for t in (READER, CURATOR, ADMINISTRATOR)] == [READ, CURATE, ADMIN]
    assert auth.session_for(READER).client == ApiTokens.client_id(READER)
    assert auth.session_for("") is None and auth.session_for("guess") is None
    assert UiAuth(ApiTokens([])).session_for(READER) is None and not UiAuth(ApiTokens([])).required


@pytest.fixture
def closed(settings):
    """The API with reads closed, a token of each role, and hashing limited to one request per
    client (the bucket refills once in 100 s: no test runs that long)."""
    secured = settings.with_overrides(api_token=ADMINISTRATOR, api_tokens=f"{READER}:read,{CURATOR}:curate",
                                      api_open_reads=0, api_hash_rate=0.01)
    with InProcessApi(secured) as api:
        yield api


def ui_pages(api) -> list[str]:
    """Every GET page under /ui (a bank page of the bank BANK), from the application's router."""
    paths = {route.resource.canonical for route in api.client.server.app.router.routes()
             if route.method == "GET" and route.resource.canonical.startswith("/ui")}
    return sorted(p.replace("{bank}", "BANK").replace("{content_id}", "1") for p in paths - {"/ui/login", "/ui/"})


def csrf_of(api) -> str:
    page = api.request("GET", "/ui/login")
    return re.search(r'name="csrf" value="([^"]+)"', page.body.decode()).group(1)


def sign_in(api, token: str) -> str:
    """Sign this client in; its CSRF token for the forms."""
    api.client.session.cookie_jar.clear()
    csrf = csrf_of(api)
    answer = api.request("POST", "/ui/login", data={"token": token, "csrf": csrf, "next": "/ui/banks"})
    assert answer.status == 303 and answer.headers["Location"] == "/ui/banks"
    return csrf


def bank_names(api) -> list[str]:
    return [bank["name"] for bank in api.request("GET", "/c/banks", token=READER).json()]


@pytest.mark.kafka
def test_with_reads_closed_every_page_sends_a_signed_out_browser_to_sign_in(closed):
    pages = ui_pages(closed)
    assert {"/ui", "/ui/match", "/ui/banks", "/ui/bank/BANK", "/ui/quarantine", "/ui/feed", "/ui/feed/events"} <= set(pages)
    for path in pages:
        answer = closed.request("GET", path, params={"offset": "0"})
        assert answer.status == 303, path
        assert answer.headers["Location"].startswith("/ui/login?next="), path
        assert "BANK" not in answer.body.decode() and "<table" not in answer.body.decode(), path
    csrf = csrf_of(closed)
    assert closed.request("POST", "/ui/banks", data={"name": "SIGNED_OUT", "csrf": csrf}).status == 303
    wrong = closed.request("POST", "/ui/login", data={"token": READER + "x", "csrf": csrf, "next": "/ui"})
    assert wrong.status == 401 and "hmas_session" not in wrong.headers.get("Set-Cookie", "")
    assert "SIGNED_OUT" not in bank_names(closed)


@pytest.mark.kafka
def test_a_read_token_sees_every_page_and_changes_nothing(closed):
    assert closed.request("POST", "/c/banks", token=CURATOR, json={"name": "BANK"}).status == 201
    csrf = sign_in(closed, READER)
    for path in ui_pages(closed):
        if path in ("/ui/feed/events", "/ui/thumb/1"):
            continue  # a stream that never ends; a picture (below)
        answer = closed.request("GET", path)
        assert answer.status == 200, path
        assert "role read" in answer.body.decode(), path
    assert closed.request("GET", "/ui/thumb/1").status == 404  # answered: no upload 1 to draw
    refused = closed.request("POST", "/ui/banks", data={"name": "BY_READER", "csrf": csrf})
    assert refused.status == 403 and "role curate" in refused.body.decode()
    removal = closed.request("POST", "/ui/bank/BANK", data={"action": "delete", "csrf": csrf})
    assert removal.status == 403
    assert closed.request("POST", "/ui/quarantine/x/release", data={"csrf": csrf}).status == 403
    assert "BY_READER" not in bank_names(closed)


@pytest.mark.kafka
def test_a_curator_changes_banks_but_not_exchanges(closed):
    csrf = sign_in(closed, CURATOR)
    assert closed.request("POST", "/ui/banks", data={"name": "BY_CURATOR", "csrf": csrf}).status == 303
    assert "BY_CURATOR" in bank_names(closed)
    refused = closed.request("POST", "/ui/exchanges", data={"api": "sample", "bank": "EX", "csrf": csrf})
    assert refused.status == 403 and "role admin" in refused.body.decode()


@pytest.mark.kafka
def test_pages_that_hash_share_the_tokens_rate_limit_with_the_api(closed):
    csrf = sign_in(closed, READER)
    assert closed.request("GET", "/ui/match").status == 200  # the empty form asks nothing: not counted
    upload = {"file": ("photo.jpg", b"not an image"), "csrf": csrf}
    first = closed.request("POST", "/ui/match", data=upload)
    assert first.status == 400  # counted, and answered on the page
    over = closed.request("POST", "/ui/match", data=upload)
    assert over.status == 429 and int(over.headers["Retry-After"]) >= 1 and "rate limit" in over.body.decode()
    # the same token's budget on the JSON routes is spent too; another token's is not
    assert closed.request("POST", "/h/hash", token=READER, data={"file": b"not an image"}).status == 429
    assert closed.request("POST", "/h/hash", token=CURATOR, data={"file": b"not an image"}).status == 400
