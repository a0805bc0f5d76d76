"""The UI's session cookie: signed with a key from the API tokens, good for a limited time."""

from pipeline.api.auth import ADMIN, ApiTokens
from pipeline.api.ui.auth import SESSION_TTL_S, UiAuth


def ui_auth(token: str) -> UiAuth:
    return UiAuth(ApiTokens([(token, ADMIN)]))


def test_a_session_is_good_until_it_expires_or_the_token_changes():
    auth = ui_auth("the-token")
    cookie = auth.session_cookie(now_s=1_000_000)
    assert auth.session_valid(cookie, now_s=1_000_000 + SESSION_TTL_S - 1)
    assert not auth.session_valid(cookie, now_s=1_000_000 + SESSION_TTL_S)
    assert not ui_auth("another-token").session_valid(cookie, now_s=1_000_000)


def test_a_forged_or_altered_session_is_refused():
    auth = ui_auth("the-token")
    nonce, issued, signature = auth.session_cookie(now_s=1_000_000).split(".")
    assert not auth.session_valid(f"{nonce}.{int(issued) + 3600}.{signature}", now_s=1_000_000)  # prolonged
    assert not auth.session_valid(f"{nonce}.{issued}.{'0' * 64}", now_s=1_000_000)
    for junk in ("", "abc", "a.b.c", f"{nonce}.{issued}"):
        assert not auth.session_valid(junk, now_s=1_000_000)
