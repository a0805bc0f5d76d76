"""Who may change things from the UI: with API tokens configured, a session cookie from the login
form, given for a token of role curate or admin (pipeline/api/auth.py; the token never leaves the
server again), signed with a key derived from the tokens and good for SESSION_TTL_S (changing the
tokens signs everybody out); on every change, a CSRF token from a cookie that the form must repeat
(double submit). Cookies are HttpOnly and SameSite=Strict, and Secure over HTTPS."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

from aiohttp import web

from pipeline.api.auth import CURATE, ApiTokens, allows

SESSION_COOKIE, CSRF_COOKIE, CSRF_FIELD = "hmas_session", "hmas_csrf", "csrf"
SESSION_TTL_S = 12 * 3600


class UiAuth:
    def __init__(self, tokens: ApiTokens) -> None:
        self.tokens = tokens
        self._key = tokens.session_key()

    @property
    def required(self) -> bool:
        return self.tokens.configured

    def _sign(self, payload: str) -> str:
        return hmac.new(self._key, f"ui-session:{payload}".encode(), hashlib.sha256).hexdigest()

    def token_matches(self, given: str) -> bool:
        """Whether a token may sign in to make changes: one of role curate or admin."""
        role = self.tokens.role_of(given) if self.required and given else None
        return role is not None and allows(role, CURATE)

    def session_cookie(self, now_s: float | None = None) -> str:
        payload = f"{secrets.token_hex(16)}.{int(time.time() if now_s is None else now_s)}"
        return f"{payload}.{self._sign(payload)}"

    def session_valid(self, cookie: str, now_s: float | None = None) -> bool:
        """A cookie this server signed with the current token, less than SESSION_TTL_S old."""
        payload, _, signature = cookie.rpartition(".")
        _, _, issued = payload.partition(".")
        if not issued.isdigit() or not hmac.compare_digest(signature.encode(), self._sign(payload).encode()):
            return False
        age_s = (time.time() if now_s is None else now_s) - int(issued)
        return 0 <= age_s < SESSION_TTL_S

    def signed_in(self, request: web.Request) -> bool:
        return not self.required or self.session_valid(request.cookies.get(SESSION_COOKIE, ""))

    @staticmethod
    def csrf_token(request: web.Request) -> str:
        """The CSRF token of this browser (a fresh one is set by `remember_csrf`)."""
        return request.cookies.get(CSRF_COOKIE) or request.get(CSRF_COOKIE) or ""

    @staticmethod
    def ensure_csrf(request: web.Request) -> None:
        if not request.cookies.get(CSRF_COOKIE):
            request[CSRF_COOKIE] = secrets.token_urlsafe(24)

    @staticmethod
    def remember_csrf(request: web.Request, response: web.StreamResponse) -> None:
        fresh = request.get(CSRF_COOKIE)
        if fresh and not request.cookies.get(CSRF_COOKIE):
            response.set_cookie(CSRF_COOKIE, fresh, httponly=True, samesite="Strict", path="/ui", secure=request.secure)

    @staticmethod
    def csrf_ok(request: web.Request, form_value: str) -> bool:
        cookie = request.cookies.get(CSRF_COOKIE, "")
        return bool(cookie) and hmac.compare_digest(cookie.encode(), form_value.encode())

    def sign_in(self, request: web.Request, response: web.StreamResponse) -> None:
        response.set_cookie(SESSION_COOKIE, self.session_cookie(), httponly=True, samesite="Strict", path="/ui",
                            max_age=SESSION_TTL_S, secure=request.secure)

    @staticmethod
    def sign_out(response: web.StreamResponse) -> None:
        response.del_cookie(SESSION_COOKIE, path="/ui")
