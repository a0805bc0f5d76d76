"""What every /ui page shares: the layout around its body, who may change things (sign in, CSRF),
errors shown as a message on the page (never a trace), and paging of long lists."""

from __future__ import annotations

import logging
from typing import Any, Awaitable, Callable
from urllib.parse import urlencode, urlparse

from aiohttp import web

from pipeline.api.http import ApiError
from pipeline.api.state import ApiState
from pipeline.api.auth import ApiTokens
from pipeline.api.ui.auth import CSRF_FIELD, UiAuth
from pipeline.api.ui.render import Html, esc, join, link, render, tag
from pipeline.clock import now_ms
from pipeline.services.output import DeliveryFailed
from pipeline.services.read_back import NotCaughtUp

log = logging.getLogger(__name__)

PAGE = 50  # rows per page of every list
UiHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def pager(path: str, offset: int, total: int, offset_param: str = "offset", **params: Any) -> Html:
    """Previous / next links over a list of `total` rows shown PAGE at a time (`offset_param`: the
    query parameter of this list's offset, for a page with two lists)."""
    if total <= PAGE and offset == 0:
        return Html("")
    before, after = {offset_param: max(0, offset - PAGE)}, {offset_param: offset + PAGE}
    parts = [link(path, "← previous", **before, **params) if offset > 0 else tag("span", "← previous")]
    parts.append(tag("span", f"{offset + 1 if total else 0:,}–{min(total, offset + PAGE):,} of {total:,}"))
    parts.append(link(path, "next →", **after, **params) if offset + PAGE < total else tag("span", "next →"))
    return tag("div", join(parts), class_="pager")


def verdict_badge(verdict: str) -> Html:
    return tag("span", verdict.replace("_", " "), class_=f"verdict v-{verdict}")


def age(ms: int) -> str:
    seconds = max(0, (now_ms() - ms) // 1000)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


class Frame:
    """The base of every group of pages."""

    def __init__(self, state: ApiState) -> None:
        self.state = state
        self.view = state.view
        self.auth = UiAuth(ApiTokens.from_settings(state.settings))

    # -- plumbing ---------------------------------------------------------------------------------
    def page(self, request: web.Request, title: str, body: Any, message: str = "", note: str = "",
             status: int = 200) -> web.Response:
        notice = tag("div", message, class_="message", role="alert") if message else Html("")
        if note or request.query.get("note"):
            notice = join([notice, tag("div", note or request.query["note"], class_="note", role="status")])
        text = render("layout.html", title=title, body=body, message=notice, who=self._who(request))
        return web.Response(text=text, status=status, content_type="text/html")

    def _who(self, request: web.Request) -> Html:
        if not self.auth.required:
            return Html("changes open (no API token set)")
        if self.auth.signed_in(request):
            return tag("form", join([self.csrf_input(request), tag("button", "Sign out", type="submit")]),
                       method="post", action="/ui/logout", class_="inline")
        return link("/ui/login", "Sign in to make changes", next=request.path_qs)

    def csrf_input(self, request: web.Request) -> Html:
        return Html(f'<input type="hidden" name="{CSRF_FIELD}" value="{esc(self.auth.csrf_token(request))}">')

    def handler(self, fn: UiHandler) -> UiHandler:
        """A page: a CSRF cookie for its forms; errors as a message on a page, never a trace."""
        async def wrapped(request: web.Request) -> web.StreamResponse:
            self.auth.ensure_csrf(request)
            try:
                response = await fn(request)
            except web.HTTPException as exc:
                if exc.status >= 400:
                    response = self.page(request, "Not available", "", message=exc.reason or "", status=exc.status)
                else:
                    raise
            except ApiError as exc:
                response = self.page(request, "Not available", "", message=exc.message, status=exc.status)
            except (NotCaughtUp, DeliveryFailed) as exc:
                response = self.page(request, "Not available", "", message=str(exc), status=503)
            except Exception:
                log.exception("unhandled UI error", extra={"path": request.path, "method": request.method})
                response = self.page(request, "Error", "", message="internal error; see the API log", status=500)
            self.auth.remember_csrf(request, response)
            return response
        return wrapped

    async def changing_form(self, request: web.Request) -> dict[str, Any]:
        """The form of a change, once the browser is signed in and the CSRF token matches."""
        form = await request.post()
        if not self.auth.signed_in(request):
            came_from = urlparse(request.headers.get("Referer", "")).path
            raise web.HTTPSeeOther(f"/ui/login?{urlencode({'next': came_from if came_from.startswith('/ui') else '/ui'})}")
        if not self.auth.csrf_ok(request, str(form.get(CSRF_FIELD, ""))):
            raise ApiError(403, "this form has expired: reload the page and submit it again")
        return dict(form)

    def button(self, request: web.Request, action: str, label: str, **fields: Any) -> Html:
        """A one-button form that changes something (with this browser's CSRF token)."""
        hidden = join(Html(f'<input type="hidden" name="{esc(k)}" value="{esc(v)}">') for k, v in fields.items())
        return tag("form", join([self.csrf_input(request), hidden, tag("button", label, type="submit")]),
                   method="post", action=action, class_="inline")

    def done(self, path: str, note: str) -> web.HTTPSeeOther:
        """Back to a page after a change, with a note of what was done."""
        return web.HTTPSeeOther(f"{path}{'&' if '?' in path else '?'}{urlencode({'note': note})}")
