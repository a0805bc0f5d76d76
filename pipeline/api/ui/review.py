"""The review pages: the quarantine queue (release, disable, confirm, deconfirm a flooding
signal), thumbnails of the uploads it names, and a past upload re-run (then against now)."""

from __future__ import annotations

import asyncio
import io
from collections import OrderedDict
from typing import Any
from urllib.parse import quote

from aiohttp import web

from connectors.fetch import FetchError, fetch_url
from pipeline import topics as T
from pipeline.api.controls import record_feedback, review_quarantine
from pipeline.api.explain import MATCHED_WITHIN_MS, located_upload, rerun
from pipeline.api.http import ApiError, int_param
from pipeline.api.ui.frame import PAGE, Frame, age, pager, verdict_badge
from pipeline.api.ui.render import Html, join, link, render, table, tag
from pipeline.clock import format_duration_ms, iso_utc
from pipeline.explain import TOO_FAR
from pipeline.rerun import what_changed
from pipeline.state.log_reader import read_key_near

SAMPLES_SHOWN = 3
THUMB_PX = 96
THUMBS_KEPT = 256
UPLOAD_SEARCH_MS = 60_000  # an upload is on hma.uploads around its submitted_at
STATES = ("quarantined", "released", "disabled", "all")
DECISIONS = {  # button -> what it does (a quarantine state or a feedback verdict), and what the note says
    "release": ("state", "released", "released: it matches again"),
    "disable": ("state", "disabled", "disabled for good"),
    "confirm": ("feedback", "harmful", "confirmed harmful"),
    "deconfirm": ("feedback", "benign", "deconfirmed (benign)"),
}


def quarantine_queue(quarantine: dict[str, dict[str, Any]], wanted: str) -> list[dict[str, Any]]:
    """Quarantine records in one state (or all), the newest change first."""
    return sorted((q for q in quarantine.values() if wanted == "all" or q["state"] == wanted),
                  key=lambda q: -q["changed_at"])


class ReviewPages(Frame):
    def __init__(self, state: Any) -> None:
        super().__init__(state)
        self._thumbs: OrderedDict[str, bytes | None] = OrderedDict()

    def routes(self) -> list[tuple[str, str, Any]]:
        return [("GET", "/ui/quarantine", self.quarantine), ("POST", "/ui/quarantine/{signal_id}/{decision}", self.decide),
                ("GET", "/ui/thumb/{content_id}", self.thumbnail), ("GET", "/ui/rerun", self.rerun)]

    # -- quarantine -------------------------------------------------------------------------------
    async def quarantine(self, request: web.Request) -> web.StreamResponse:
        wanted = request.query.get("state", "quarantined")
        if wanted not in STATES:
            raise ApiError(400, f"state must be one of {', '.join(STATES)}")
        offset = int_param(request, "offset", 0, 0, 10**9)
        queue = quarantine_queue(self.view.quarantine, wanted)
        rows = [self._queue_row(request, q, wanted) for q in queue[offset:offset + PAGE]]
        tabs = join(tag("a", s, href=f"/ui/quarantine?state={s}", class_="here" if s == wanted else None) for s in STATES)
        body = join([
            tag("p", "Signals whose matches passed their bank's flood limit: they match nothing until a "
                     "reviewer releases them. Confirm or deconfirm records feedback on the signal, as "
                     "POST /c/feedback does; thumbnails are fetched by this server from the upload's URL."),
            tag("nav", tabs, class_="tabs"), pager("/ui/quarantine", offset, len(queue), state=wanted),
            table(["signal", "banked as", "state", "matches in window", "sample uploads", "review"], rows,
                  empty=f"no signal is {wanted}" if wanted != "all" else "nothing was ever quarantined", id="queue"),
            pager("/ui/quarantine", offset, len(queue), state=wanted),
        ])
        return self.page(request, "Quarantine review", body)

    def _queue_row(self, request: web.Request, q: dict[str, Any], wanted: str) -> list[Any]:
        sid = q["signal_id"]
        entries = self.view.entries_with_signal(sid)
        banked = join(tag("div", join([link(f"/ui/bank/{quote(e.bank)}", e.bank), f" content {e.bank_content_id} ",
                                       link("/ui/match", "explain", signal_type=e.signal_type, signal=e.value)]))
                      for e in entries) or "no longer banked"
        samples = join(tag("figure", join([
            tag("img", src=f"/ui/thumb/{quote(cid)}", alt="", loading="lazy", class_="thumb",
                width=THUMB_PX, height=THUMB_PX, onerror="this.remove()"),  # no picture: an upload without a URL
            tag("figcaption", link("/ui/rerun", cid, content_id=cid))]), class_="sample")
            for cid in q["sample_content_ids"][:SAMPLES_SHOWN])
        back = f"/ui/quarantine?state={wanted}"
        buttons = join(self.button(request, f"/ui/quarantine/{quote(sid)}/{d}", d, back=back) for d in DECISIONS)
        return [tag("code", sid), banked, f"{q['state']} {age(q['changed_at'])}",
                f"{q['count']:,} within {format_duration_ms(q['window_ms'])}", samples, buttons]

    async def decide(self, request: web.Request) -> web.StreamResponse:
        form = await self.changing_form(request)
        sid, decision = request.match_info["signal_id"], request.match_info["decision"]
        if decision not in DECISIONS:
            raise ApiError(404, f"no such decision '{decision}'")
        current = self.view.quarantine.get(sid)
        if current is None:
            raise ApiError(404, f"signal '{sid}' is not in quarantine review")
        what, value, done = DECISIONS[decision]
        if what == "state":
            await review_quarantine(self.state, sid, value)
        else:
            samples = current["sample_content_ids"]
            await record_feedback(self.state, samples[0] if samples else f"quarantine-review/{sid}", value, [sid],
                                  "quarantine review")
        back = str(form.get("back") or "/ui/quarantine")
        raise self.done(back if back.startswith("/ui/") else "/ui/quarantine", f"Signal {sid} {done}.")

    # -- thumbnails -------------------------------------------------------------------------------
    async def thumbnail(self, request: web.Request) -> web.StreamResponse:
        """A small PNG of a recent upload that came by URL (fetched by this server, so the reviewer's
        browser never contacts the host); 404 when it had none or is no longer known."""
        content_id = request.match_info["content_id"]
        if content_id not in self._thumbs:
            self._thumbs[content_id] = await self._fetch_thumbnail(content_id)
            while len(self._thumbs) > THUMBS_KEPT:
                self._thumbs.popitem(last=False)
        png = self._thumbs[content_id]
        if png is None:
            raise web.HTTPNotFound(reason="no picture of this upload")
        return web.Response(body=png, content_type="image/png", headers={"Cache-Control": "private, max-age=3600"})

    async def _fetch_thumbnail(self, content_id: str) -> bytes | None:
        try:
            _, hashed = await located_upload(self.state, content_id)
        except ApiError:
            return None
        since = (hashed["submitted_at"] or hashed["hashed_at"]) - UPLOAD_SEARCH_MS
        uploads = await asyncio.to_thread(read_key_near, self.state.settings, T.UPLOADS, content_id, since,
                                          hashed["hashed_at"])
        url = next((u["url"] for u in reversed(uploads) if u.get("url")), None)
        if url is None:
            return None
        try:
            data = await asyncio.to_thread(fetch_url, url, self.state.settings)
            return await asyncio.to_thread(_thumbnail_png, data)
        except (FetchError, OSError, ValueError):
            return None

    # -- re-run -----------------------------------------------------------------------------------
    async def rerun(self, request: web.Request) -> web.StreamResponse:
        content_id = request.query.get("content_id", "").strip()
        form = render("rerun.html", content_id=content_id, horizon=format_duration_ms(self.state.ring.horizon_ms))
        if not content_id:
            return self.page(request, "Re-run a past upload", form)
        try:
            result = await rerun(self.state, request, content_id)
        except ApiError as exc:
            return self.page(request, "Re-run a past upload", form, message=exc.message, status=exc.status)
        return self.page(request, "Re-run a past upload",
                         join([form, self._then_and_now(result["upload"], result["then"], result["now"])]))

    @staticmethod
    def _then_and_now(hashed: dict[str, Any], then: dict[str, Any] | None, now: dict[str, Any]) -> Html:
        signals = ", ".join(f"{k} {s['value']}" for k, s in hashed["signals"].items())
        head = tag("p", f"Upload {hashed['content_id']}, hashed {iso_utc(hashed['hashed_at'])}: {signals}", class_="mono")
        if then is None:
            then_part = tag("p", "No live record of this upload on hma.matches within "
                                 f"{format_duration_ms(MATCHED_WITHIN_MS)} of its hashing.", class_="empty")
            changes_part = tag("p", "Nothing to compare with.", class_="empty")
        else:
            then_rows = [[verdict_badge(h["status"]), h["bank"], h["bank_content_id"], f"{h['distance']} / {h['threshold']}",
                          h["reason"] or f"distance {h['distance']} <= threshold {h['threshold']}"] for h in then["matches"]]
            then_part = join([tag("p", f"matched at {iso_utc(then['matched_at'])}"), table(
                ["verdict", "bank", "content", "distance / threshold", "reason"], then_rows, empty="no hit")])
            changes = what_changed(then, now)
            changes_part = (tag("ul", join(tag("li", c.text, class_=f"change-{c.kind}") for c in changes), id="changes")
                            if changes else tag("p", "Nothing changed: the same decision now.", id="changes", class_="empty"))
        hit_then = {(h["bank"], h["bank_content_id"]) for h in (then or {}).get("matches", [])}
        now_rows = [[verdict_badge(v["verdict"]), name, v["bank_content_id"], f"{v['distance']} / {v['threshold']}",
                     v["reason"]] for name, bank in now["banks"].items() for v in bank["nearest"]
                    if v["verdict"] != TOO_FAR or (name, v["bank_content_id"]) in hit_then]
        now_part = table(["verdict", "bank", "content", "distance / threshold", "reason"], now_rows,
                         empty="no bank entry within its threshold")
        return join([head, tag("div", join([tag("section", join([tag("h2", "Then (hma.matches)"), then_part]),
                                                 class_="card", id="then"),
                                             tag("section", join([tag("h2", "Now (the guard's verdicts)"), now_part]),
                                                 class_="card", id="now")]), class_="side-by-side"),
                     tag("h2", "What changed in between"), changes_part])


def _thumbnail_png(data: bytes) -> bytes:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        image.thumbnail((THUMB_PX, THUMB_PX))
        out = io.BytesIO()
        image.convert("RGB").save(out, format="PNG")
        return out.getvalue()
