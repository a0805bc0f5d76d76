"""Who may see and change what from the UI: with API tokens configured, a session cookie from the
sign-in form, given for a token of any role (pipeline/api/auth.py; the token never leaves the
server again). The cookie names the token's role and its rate-limit client (a digest, never the
token), is signed with a key derived from the tokens and their roles and good for SESSION_TTL_S
(changing the tokens or their roles signs everybody out). On every change, a CSRF token from a cookie that the form must repeat
(double submit). Cookies are HttpOnly and SameSite=Strict, and Secure over HTTPS."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

from aiohttp import web

from pipeline.api.auth import ROLES, ApiTokens

SESSION_COOKIE, CSRF_COOKIE, CSRF_FIELD = "hmas_session", "hmas_csrf", "csrf"
SESSION_TTL_S = 12 * 3600


@dataclass(frozen=True)
class Session:
    """A signed-in browser: the role of the token it signed in with, and that token's client name."""
    role: str
    client: str


class UiAuth:
    def __init__(self, tokens: ApiTokens) -> None:
        self.tokens = tokens
        self._key = tokens.session_key()

    @property
    def required(self) -> bool:
        return self.tokens.configured

    def _sign(self, payload: str) -> str:
        return hmac.new(self._key, f"ui-session:{payload}".encode(), hashlib.sha256).hexdigest()

    def session_for(self, given: str) -> Session | None:
        """The session a token signs in to (None: not one of ours)."""
        role = self.tokens.role_of(given) if self.required and given else None
        return Session(role, ApiTokens.client_id(given)) if role is not None else None

    def session_cookie(self, session: Session, now_s: float | None = None) -> str:
        payload = f"{secrets.token_hex(16)}.{int(time.time() if now_s is None else now_s)}.{session.role}.{session.client}"
        return f"{payload}.{self._sign(payload)}"

    def session_of_cookie(self, cookie: str, now_s: float | None = None) -> Session | None:
        """The session of a cookie this server signed with the current tokens, less than
        SESSION_TTL_S old; None for anything else."""
        payload, _, signature = cookie.rpartition(".")
        parts = payload.split(".")
        if len(parts) != 4 or not hmac.compare_digest(signature.encode(), self._sign(payload).encode()):
            return None
        _, issued, role, client = parts
        if not issued.isdigit() or role not in ROLES:
            return None
        age_s = (time.time() if now_s is None else now_s) - int(issued)
        return Session(role, client) if 0 <= age_s < SESSION_TTL_S else None

    def session(self, request: web.Request) -> Session | None:
        """This browser's session; None when it has none or no tokens are configured."""
        return self.session_of_cookie(request.cookies.get(SESSION_COOKIE, "")) if self.required else None

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

    def sign_in(self, request: web.Request, response: web.StreamResponse, session: Session) -> None:
        response.set_cookie(SESSION_COOKIE, self.session_cookie(session), httponly=True, samesite="Strict", path="/ui",
                            max_age=SESSION_TTL_S, secure=request.secure)

    @staticmethod
    def sign_out(response: web.StreamResponse) -> None:
        response.del_cookie(SESSION_COOKIE, path="/ui")
