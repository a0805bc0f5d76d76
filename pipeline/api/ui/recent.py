"""The recent content page: uploads near a hash, and clusters of recent near-duplicates with a way
to bank a cluster's hash (the same searches as /recent/similar and /recent/clusters)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from aiohttp import web

from pipeline.api.content import checked_signal
from pipeline.api.curation import Curation, content_metadata
from pipeline.api.http import ApiError, int_param
from pipeline.api.recent import CLUSTER_DISTANCE, recent_clusters, similar_hits, uploads_of
from pipeline.api.ui.frame import PAGE, Frame, age, pager
from pipeline.api.ui.render import Html, join, link, render, table, tag
from pipeline.clock import format_duration_ms, iso_utc
from pipeline.signal_types import SIGNAL_TYPES, default_signal_type

SIMILAR_DISTANCE = 31


class RecentPages(Frame):
    def __init__(self, state: Any) -> None:
        super().__init__(state)
        self.curation = Curation(state)

    def routes(self) -> list[tuple[str, str, Any]]:
        return [("GET", "/ui/recent", self.recent), ("POST", "/ui/recent/bank", self.bank_cluster)]

    async def recent(self, request: web.Request) -> web.StreamResponse:
        q = request.query
        message, near = "", Html("")
        if q.get("signal", "").strip():
            try:
                kind = default_signal_type()
                value = checked_signal(kind, q["signal"].strip())
                distance = int_param(request, "distance", SIMILAR_DISTANCE, 0, 256)
                hits = await similar_hits(self.state, SIGNAL_TYPES[kind].recent_codes(value), distance)
                near_offset = int_param(request, "near_offset", 0, 0, 10**9)
                found = await uploads_of(self.state, hits[near_offset:near_offset + PAGE])
                rows = [[u["content_id"], u["distance"], f"{iso_utc(u['uploaded_at'])} ({age(u['uploaded_at'])})",
                         u["content_type"] or "", ", ".join(f"{k}={v}" for k, v in sorted(u["metadata"].items())),
                         link("/ui/rerun", "re-run", content_id=u["content_id"])] for u in found]
                near = join([
                    pager("/ui/recent", near_offset, len(hits), offset_param="near_offset", signal=value,
                          distance=distance, window=q.get("window", "1h")),
                    table(["content id", "distance", "uploaded", "content type", "metadata", ""], rows,
                          empty=f"no recent upload within {distance} of this hash", id="similar")])
            except ApiError as exc:
                message = exc.message
        try:
            clusters_html = await self._clusters(request)
        except ApiError as exc:
            message, clusters_html = message or exc.message, Html("")
        body = render("recent.html", signal=q.get("signal", ""), distance=q.get("distance", SIMILAR_DISTANCE),
                      window=q.get("window", "1h"), cluster_distance=q.get("cluster_distance", CLUSTER_DISTANCE),
                      horizon=format_duration_ms(self.state.ring.horizon_ms), kept=f"{self.state.ring.size:,}",
                      near=near, clusters=clusters_html)
        return self.page(request, "Recent content", body, message=message, status=400 if message else 200)

    async def _clusters(self, request: web.Request) -> Html:
        window = request.query.get("window", "1h")
        distance = int_param(request, "cluster_distance", CLUSTER_DISTANCE, 0, 31)
        offset = int_param(request, "offset", 0, 0, 10**9)
        found = await recent_clusters(self.state, window, distance, 2)
        banks = sorted(self.view.banks)
        rows = []
        for c in found[offset:offset + PAGE]:
            samples = join(tag("div", link("/ui/rerun", cid, content_id=cid)) for cid in c["content_ids"])
            rows.append([c["size"], f"{iso_utc(c['first_upload_at'])} ({age(c['first_upload_at'])})",
                         f"{iso_utc(c['last_upload_at'])} ({age(c['last_upload_at'])})", samples,
                         join([tag("code", c["pdq"]), " ", link("/ui/match", "explain", signal_type=default_signal_type(), signal=c["pdq"])]),
                         self._bank_form(request, c["pdq"], c["size"], banks)])
        return join([pager("/ui/recent", offset, len(found), window=window, cluster_distance=distance),
                     table(["uploads", "first seen", "last seen", "samples", "hash (first upload)", "bank it"], rows,
                           empty=f"no cluster of two or more uploads within {distance} in the last {window}",
                           id="clusters")])

    def _bank_form(self, request: web.Request, pdq: str, size: int, banks: list[str]) -> Html:
        if not banks:
            return link("/ui/banks", "create a bank first")
        options = join(tag("option", b, value=b) for b in banks)
        return tag("form", join([self.csrf_input(request), Html(f'<input type="hidden" name="signal" value="{pdq}">'),
                                 Html(f'<input type="hidden" name="size" value="{size}">'),
                                 Html(f'<select name="bank">{options}</select>'), tag("button", "Bank this hash", type="submit")]),
                   method="post", action="/ui/recent/bank", class_="inline")

    async def bank_cluster(self, request: web.Request) -> web.StreamResponse:
        form = await self.changing_form(request)
        bank = str(form.get("bank", ""))
        self.curation.existing_bank(bank)
        kind = default_signal_type()  # a cluster is of the ring's photo hashes
        value = checked_signal(kind, str(form.get("signal", "")).strip())
        note = f"recent cluster of {form.get('size', '?')} uploads"
        added = await self.curation.add_signals(bank, {kind: value}, content_metadata(None, note))
        raise self.done(f"/ui/bank/{quote(bank)}", f"Added content {added['id']}.")
