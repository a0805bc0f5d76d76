"""The pages under /ui: home and health, the match lab, compare, banks. Server-rendered HTML over
the same state, explanations and bank changes as the JSON routes (no second copy of any rule)."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from typing import Any, Awaitable, Callable
from urllib.parse import quote, urlencode

from aiohttp import web

from pipeline import topics as T
from pipeline.api.content import checked_signal, signals_of_bytes, signals_of_url
from pipeline.api.curation import Curation, content_metadata
from pipeline.api.explain import LOOKUP_ID, explained, hashed_from_query, hashed_upload
from pipeline.api.http import ApiError, int_param
from pipeline.api.state import ApiState
from pipeline.api.ui.auth import CSRF_FIELD
from pipeline.api.ui.exchanges import ExchangePages
from pipeline.api.ui.feed import FeedPages
from pipeline.api.ui.recent import RecentPages
from pipeline.api.ui.review import ReviewPages
from pipeline.api.ui.frame import PAGE, Frame, age, pager, verdict_badge
from pipeline.api.ui.render import Html, join, link, render, table, tag
from pipeline.api.activity import HORIZON_MS, SAMPLE_EVERY_S
from pipeline.api.ui.svg import bars, bit_grid, lines
from pipeline.clock import format_duration_ms, iso_utc, now_ms, parse_duration_ms
from pipeline.explain import DEFAULT_NEAREST, DEFAULT_RADIUS, MAX_RADIUS
from pipeline.matching import bank_distance
from pipeline.signal_types import SIGNAL_TYPES, default_signal_type
from pipeline.state.log_reader import read_tail

log = logging.getLogger(__name__)

DEAD_LETTER_TAIL = 50  # newest dead letters read per partition for the home page
DISTANCE_TYPES = [k for k, st in SIGNAL_TYPES.items() if st.max_distance]  # a bank sets a distance for each


def distance_inputs(distances: dict[str, int]) -> Html:
    """The bank form's distance per signal type (empty: the type's default)."""
    return join(tag("label", join([f"{kind} distance ", Html(
        f'<input type="number" name="{kind}_distance" min="0" max="{SIGNAL_TYPES[kind].max_distance}" '
        f'value="{distances.get(kind, "")}" placeholder="default {SIGNAL_TYPES[kind].default_distance}">')]))
        for kind in DISTANCE_TYPES)


def _number(form: dict[str, str], name: str, kind: type, label: str) -> Any:
    raw = form.get(name, "").strip()
    if not raw:
        return None
    try:
        return kind(raw)
    except ValueError:
        raise ApiError(400, f"{label} must be a number, not '{raw}'") from None


def bank_changes(bank: dict[str, Any], form: dict[str, str]) -> dict[str, Any]:
    """The bank controls form as the body of a bank update (pipeline.api.curation checks it)."""
    body: dict[str, Any] = {"action": form.get("action", "").strip() or bank["action"]}
    ratio = _number(form, "enabled_ratio", float, "Enabled ratio")
    if ratio is not None:
        body["enabled_ratio"] = ratio
    distances = dict(bank["distances"])
    for kind in DISTANCE_TYPES:
        distance = _number(form, f"{kind}_distance", int, f"{kind} distance")
        if distance is None:
            distances.pop(kind, None)
        else:
            distances[kind] = distance
    body["distances"] = distances
    body["suppressed_by"] = [b.strip() for b in form.get("suppressed_by", "").split(",") if b.strip()]
    flood_max = _number(form, "flood_max", int, "Flood limit")
    if flood_max is None:
        body["flood"] = None
    else:
        try:
            window_ms = parse_duration_ms(form.get("flood_window", "").strip() or "1h")
        except ValueError as exc:
            raise ApiError(400, str(exc)) from None
        body["flood"] = {"max_matches": flood_max, "window_ms": window_ms,
                         "baseline_multiple": _number(form, "flood_baseline", float, "Baseline multiple")}
    body["confirmed_bank"] = form.get("confirmed_bank", "").strip() or None
    body["deconfirm_disable_s"] = _number(form, "deconfirm_disable_s", int, "Deconfirm disable") or 0
    return body


class UiPages(Frame):
    def __init__(self, state: ApiState) -> None:
        super().__init__(state)
        self.curation = Curation(state)

    # -- sign in ----------------------------------------------------------------------------------
    async def login(self, request: web.Request) -> web.StreamResponse:
        body = render("login.html", csrf=self.auth.csrf_token(request), next=request.query.get("next", "/ui"))
        return self.page(request, "Sign in", body)

    async def login_post(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        target = str(form.get("next") or "/ui")
        target = target if target.startswith("/ui") else "/ui"
        if not self.auth.csrf_ok(request, str(form.get(CSRF_FIELD, ""))):
            raise ApiError(403, "this form has expired: reload the page and submit it again")
        if not self.auth.token_matches(str(form.get("token", ""))):
            body = render("login.html", csrf=self.auth.csrf_token(request), next=target)
            return self.page(request, "Sign in", body, message="That is not the API token.", status=401)
        response = web.Response(status=303, headers={"Location": target})
        self.auth.sign_in(request, response)
        return response

    async def logout(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        if not self.auth.csrf_ok(request, str(form.get(CSRF_FIELD, ""))):
            raise ApiError(403, "this form has expired: reload the page and submit it again")
        response = web.Response(status=303, headers={"Location": "/ui"})
        self.auth.sign_out(response)
        return response

    # -- home -------------------------------------------------------------------------------------
    async def home(self, request: web.Request) -> web.StreamResponse:
        view, bank_view = self.view, self.state.bank_view
        readiness = "caught up" if self.state.ready and not self.state.stale else (
            "behind the topics (stale)" if self.state.ready else "still reading the banks")
        ends = await bank_view.end_offsets() if self.state.ready else {}
        topic = T.BANK_SIGNALS.name(self.state.settings)
        consumed, end = bank_view.positions.get(topic, 0), ends.get(topic, 0)
        kinds = list(SIGNAL_TYPES)
        newest = view.newest_signal_ms
        current = "yes" if consumed >= end else f"{end - consumed:,} records behind"
        rows = [[k, f"{view.signal_count(k):,}", f"{consumed:,} of {end:,}", current] for k in kinds]
        index_table = table(["signal type", "signals indexed", "hma.bank-signals read", "current"], rows)
        readiness += f"; newest bank signal applied {iso_utc(newest)} ({age(newest)})" if newest else "; no bank signal yet"
        kept, letters = await asyncio.to_thread(read_tail, self.state.settings, T.DEAD_LETTERS, DEAD_LETTER_TAIL)
        by_reason = Counter(letter["reason"] for letter in letters)
        sample = {letter["reason"]: letter for letter in letters}
        dead_rows = [[reason, n, sample[reason]["stage"],
                      f"{sample[reason]['topic']}[{sample[reason]['partition']}]@{sample[reason]['offset']}",
                      iso_utc(sample[reason]["failed_at"])] for reason, n in by_reason.most_common(20)]
        activity = self.state.activity
        throughput, lag = activity.agent_series()
        end = now_ms()
        start = end - HORIZON_MS
        body = render(
            "home.html", readiness=readiness, group=activity.group_id, every=SAMPLE_EVERY_S,
            throughput_chart=lines(throughput, start, end, "/s", "records per second per agent"),
            lag_chart=lines(lag, start, end, "", "consumer lag per agent"),
            latency_chart=lines(activity.latency_series(), start, end, " ms", "upload-to-match latency"),
            index_bars=bars([(k, view.signal_count(k)) for k in kinds]), index_table=index_table,
            bank_count=len(view.banks),
            quarantined=sum(1 for q in view.quarantine.values() if q["state"] == "quarantined"),
            dead_total=f"{kept:,}", dead_topic=T.DEAD_LETTERS.name(self.state.settings),
            dead_bars=bars([(reason[:16], n) for reason, n in by_reason.most_common(8)]),
            dead_table=table(["reason", "among the newest", "stage", "sample: input at", "failed at"], dead_rows,
                             empty="no dead letters"),
        )
        return self.page(request, "Health", body)

    # -- match lab --------------------------------------------------------------------------------
    def _match_form(self, request: web.Request, result: Any) -> Html:
        q = request.query
        kind = q.get("signal_type", default_signal_type())
        options = join(tag("option", k, value=k, selected="selected" if k == kind else None)
                       for k in SIGNAL_TYPES)
        return render("match.html", kind_options=options, signal=q.get("signal", ""), url=q.get("url", ""),
                      content_id=q.get("content_id", ""), nearest=q.get("nearest", DEFAULT_NEAREST),
                      radius=q.get("radius", DEFAULT_RADIUS), max_radius=MAX_RADIUS, result=result)

    async def match(self, request: web.Request) -> web.StreamResponse:
        if not any(request.query.get(k) for k in ("signal", "url", "content_id")):
            return self.page(request, "Match lab", self._match_form(request, ""))
        try:
            result = await explained(self.state, request, await hashed_from_query(self.state, request))
        except ApiError as exc:
            return self.page(request, "Match lab", self._match_form(request, ""), message=exc.message, status=exc.status)
        return self.page(request, "Match lab", self._match_form(request, self._explanation(result)))

    async def match_file(self, request: web.Request) -> web.StreamResponse:
        try:
            form = await request.post()
            upload = form.get("file")
            if not isinstance(upload, web.FileField) or not upload.filename:
                raise ApiError(400, "choose a file to explain")
            signals = await signals_of_bytes(upload.file.read(), upload.filename, None)
            result = await explained(self.state, request, hashed_upload(LOOKUP_ID, signals))
        except ApiError as exc:
            return self.page(request, "Match lab", self._match_form(request, ""), message=exc.message, status=exc.status)
        return self.page(request, "Match lab", self._match_form(request, self._explanation(result)))

    def _explanation(self, result: dict[str, Any]) -> Html:
        signals = table(["signal type", "value", "quality", "searched"], [
            [kind, tag("code", s["value"]), "" if s["quality"] is None else s["quality"], s["skipped"] or "yes"]
            for kind, s in result["signals"].items()])
        matched = result["matched"]
        summary = tag("p", f"Matches: {', '.join(matched)}" if matched else "No bank matches (see each bank's reasons).",
                      id="summary")
        sections = []
        for name, bank in result["banks"].items():
            state = "" if bank["enabled"] else " (disabled)"
            thresholds = ", ".join(f"{k} ≤ {t}" for k, t in bank["thresholds"].items())
            heading = tag("h3", join([link(f"/ui/bank/{quote(name)}", name), f"{state} · thresholds {thresholds}"]))
            query = next(iter(result["signals"].values()), {}).get("value", "")
            rows = [[verdict_badge(e["verdict"]), e["reason"], f"{e['distance']} / {e['threshold']}",
                     e["bank_content_id"], e["signal_type"],
                     ", ".join(f"{k}={v}" for k, v in sorted(e["metadata"].items())),
                     link("/ui/compare", "compare", left=query, right=e["value"])
                     if e["signal_type"] == default_signal_type() else ""]
                    for e in bank["nearest"]]
            sections.append(tag("section", join([heading, table(
                ["verdict", "reason", "distance / threshold", "content id", "signal type", "metadata", ""], rows,
                empty=f"no entry within {result['radius']} of the query")]), class_="card bank-verdicts",
                data_bank=name))
        return join([tag("h2", "Hashes"), signals, summary, tag("h2", "Banks"), join(sections)])

    # -- compare ----------------------------------------------------------------------------------
    async def _side(self, label: str, text: str, upload: Any) -> dict[str, str]:
        """One side of a comparison as {signal type: value}: a file, a URL, or a PDQ hash."""
        try:
            if isinstance(upload, web.FileField) and upload.filename:
                return {k: sv.value for k, sv in (await signals_of_bytes(upload.file.read(), upload.filename, None)).items()}
            if text.startswith(("http://", "https://")):
                return {k: sv.value for k, sv in (await signals_of_url(text, None, self.state.settings)).items()}
            return {default_signal_type(): checked_signal(default_signal_type(), text)}
        except ApiError as exc:
            raise ApiError(exc.status, f"{label}: {exc.message}") from None

    async def compare(self, request: web.Request) -> web.StreamResponse:
        source: Any = await request.post() if request.method == "POST" else request.query
        left, right = str(source.get("left", "")).strip(), str(source.get("right", "")).strip()
        uploads = source.get("left_file"), source.get("right_file")
        result: Any = ""
        message = ""
        if left or right or any(isinstance(u, web.FileField) and u.filename for u in uploads):
            try:
                a = await self._side("A", left, uploads[0])
                b = await self._side("B", right, uploads[1])
                result = self._comparison(a, b)
            except ApiError as exc:
                message = exc.message
        body = render("compare.html", left=left, right=right, result=result)
        return self.page(request, "Compare", body, message=message, status=400 if message else 200)

    @staticmethod
    def _comparison(a: dict[str, str], b: dict[str, str]) -> Html:
        common = [kind for kind in a if kind in b]
        if not common:
            raise ApiError(400, f"nothing to compare: A has {', '.join(a)}, B has {', '.join(b)}")
        parts = []
        for kind in common:
            st = SIGNAL_TYPES[kind]
            compared = st.compare(a[kind], b[kind])
            distance = compared.distance
            if st.hamming:
                near = "within" if distance <= st.default_distance else "past"
                parts += [tag("p", f"{kind} distance {distance} of {4 * len(a[kind])} bits "
                                   f"({near} the default threshold {st.default_distance}).", id=f"distance-{kind}"),
                          bit_grid(a[kind], b[kind]),
                          tag("p", "Each square is one bit, row by row from the first hex digit; red ones differ.")]
            else:
                parts.append(tag("p", f"{kind}: {'a match' if compared.match else 'no match'} (distance {distance})",
                                 id=f"distance-{kind}"))
        return join(parts)

    # -- banks ------------------------------------------------------------------------------------
    def _banks_body(self, request: web.Request) -> Html:
        offset = int_param(request, "offset", 0, 0, 10**9)
        names = sorted(self.view.banks)
        rows = []
        for name in names[offset:offset + PAGE]:
            b = self.view.banks[name]
            flood = b["flood"]
            rows.append([link(f"/ui/bank/{quote(name)}", name), f"{b['enabled_ratio']:g}" if b["enabled"] else "disabled",
                         b["action"], bank_distance(b, default_signal_type()), ", ".join(b["suppressed_by"]),
                         f"{flood['max_matches']} / {format_duration_ms(flood['window_ms'])}" if flood else ""])
        bank_table = table(["bank", "enabled ratio", "action", "PDQ distance", "negative banks", "flood limit"], rows,
                           empty="no banks yet", id="banks")
        return render("banks.html", pager=pager("/ui/banks", offset, len(names)), bank_table=bank_table,
                      csrf=self.auth.csrf_token(request))

    async def banks(self, request: web.Request) -> web.StreamResponse:
        return self.page(request, "Banks", self._banks_body(request))

    async def bank_create(self, request: web.Request) -> web.StreamResponse:
        form = await self.changing_form(request)
        try:
            body: dict[str, Any] = {"name": str(form.get("name", "")).strip(),
                                    "action": str(form.get("action", "")).strip() or "review"}
            distance = _number(form, "pdq_distance", int, "PDQ distance")
            if distance is not None:
                body["distances"] = {default_signal_type(): distance}
            record = await self.curation.create_bank(body)
        except ApiError as exc:
            return self.page(request, "Banks", self._banks_body(request), message=exc.message, status=exc.status)
        raise web.HTTPSeeOther(f"/ui/bank/{quote(record['name'])}?{urlencode({'note': 'Bank created.'})}")

    def _bank_body(self, request: web.Request, name: str) -> Html:
        bank = self.curation.existing_bank(name)
        offset = int_param(request, "offset", 0, 0, 10**9)
        total, entries = self.view.entries_page(name, offset, PAGE)
        csrf = self.auth.csrf_token(request)
        rows = []
        for e in entries:
            disabled = "" if e.disable_until_ts == 1 else (
                "disabled" if e.disable_until_ts == 0 else f"disabled until {iso_utc(e.disable_until_ts * 1000)}")
            remove = tag("form", join([self.csrf_input(request), tag("button", "remove", type="submit")]),
                         method="post", action=f"/ui/bank/{quote(name)}/content/{e.bank_content_id}/remove",
                         class_="inline")
            rows.append([e.bank_content_id, e.signal_type, tag("code", e.value), disabled,
                         ", ".join(f"{k}={v}" for k, v in sorted(e.metadata.items())),
                         link("/ui/match", "explain", signal_type=e.signal_type, signal=e.value), remove])
        flood = bank["flood"] or {}
        path = f"/ui/bank/{quote(name)}"
        end = now_ms()
        series = self.state.activity.bank_series(name)
        total_matches = int(sum(v for _, v in series))
        chart = join([lines({"effective matches": series}, end - HORIZON_MS, end, label=f"effective matches of {name} per minute"),
                      tag("p", f"{total_matches:,} effective match{'' if total_matches == 1 else 'es'} in the last hour",
                          id="chart-total")])
        return render(
            "bank.html", csrf=csrf, chart=chart, action_url=path, add_url=f"{path}/content",
            enabled_ratio=f"{bank['enabled_ratio'] if bank['enabled'] else 0:g}", bank_action=bank["action"],
            distance_inputs=distance_inputs(bank["distances"]), suppressed_by=", ".join(bank["suppressed_by"]),
            flood_max=flood.get("max_matches", ""),
            flood_window=format_duration_ms(flood["window_ms"]) if flood else "",
            flood_baseline=flood.get("baseline_multiple") or "", confirmed_bank=bank["confirmed_bank"] or "",
            deconfirm_disable_s=bank["deconfirm_disable_s"], total=f"{total:,}", pager=pager(path, offset, total),
            content_table=table(["content id", "signal type", "value", "state", "metadata", "", ""], rows,
                                empty="no content yet", id="contents"),
        )

    async def bank(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["bank"]
        return self.page(request, f"Bank {name}", self._bank_body(request, name))

    async def _bank_change(self, request: web.Request, change: Callable[[dict[str, Any]], Awaitable[str]]) -> web.StreamResponse:
        """Apply a bank page's form; on bad input, the page again with the message."""
        name = request.match_info["bank"]
        form = await self.changing_form(request)
        try:
            note = await change(form)
        except ApiError as exc:
            return self.page(request, f"Bank {name}", self._bank_body(request, name), message=exc.message,
                             status=exc.status)
        raise web.HTTPSeeOther(f"/ui/bank/{quote(name)}?{urlencode({'note': note})}")

    async def bank_update(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["bank"]

        async def change(form: dict[str, Any]) -> str:
            await self.curation.update_bank(name, bank_changes(self.curation.existing_bank(name), form))
            return "Controls saved."
        return await self._bank_change(request, change)

    async def bank_add(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["bank"]

        async def change(form: dict[str, Any]) -> str:
            self.curation.existing_bank(name)
            metadata = content_metadata(None, str(form.get("note", "")).strip() or None)
            upload = form.get("file")
            if str(form.get("signal", "")).strip():
                signals = {default_signal_type(): str(form["signal"]).strip()}
            elif str(form.get("url", "")).strip():
                url = str(form["url"]).strip()
                hashed = await signals_of_url(url, None, self.state.settings)
                signals, metadata = {k: sv.value for k, sv in hashed.items()}, {**metadata, "content_uri": url}
            elif isinstance(upload, web.FileField) and upload.filename:
                hashed = await signals_of_bytes(upload.file.read(), upload.filename, None)
                signals = {k: sv.value for k, sv in hashed.items()}
            else:
                raise ApiError(400, "give a hash, a URL or a file to add")
            added = await self.curation.add_signals(name, signals, metadata)
            return f"Added content {added['id']}."
        return await self._bank_change(request, change)

    async def bank_remove(self, request: web.Request) -> web.StreamResponse:
        name, content_id = request.match_info["bank"], request.match_info["content_id"]

        async def change(form: dict[str, Any]) -> str:
            self.curation.existing_bank(name)
            removed = await self.curation.delete_content(name, content_id)
            return f"Removed content {content_id}." if removed else f"Content {content_id} was already gone."
        return await self._bank_change(request, change)


def setup(app: web.Application, state: ApiState) -> None:
    """Add the /ui pages to the API's application."""
    pages = UiPages(state)
    routes = [
        ("GET", "/ui", pages.home), ("GET", "/ui/login", pages.login), ("POST", "/ui/login", pages.login_post),
        ("POST", "/ui/logout", pages.logout),
        ("GET", "/ui/match", pages.match), ("POST", "/ui/match", pages.match_file),
        ("GET", "/ui/compare", pages.compare), ("POST", "/ui/compare", pages.compare),
        ("GET", "/ui/banks", pages.banks), ("POST", "/ui/banks", pages.bank_create),
        ("GET", "/ui/bank/{bank}", pages.bank), ("POST", "/ui/bank/{bank}", pages.bank_update),
        ("POST", "/ui/bank/{bank}/content", pages.bank_add),
        ("POST", "/ui/bank/{bank}/content/{content_id}/remove", pages.bank_remove),
    ]
    feed = FeedPages(state)
    for group in (ReviewPages(state), RecentPages(state), ExchangePages(state), feed):
        routes += group.routes()
    for method, path, handler in routes:
        app.router.add_route(method, path, pages.handler(handler))
    app.router.add_route("GET", "/ui/feed/events", feed.events)  # a stream: no page around it
    app.on_shutdown.append(lambda _: _ended(state))
    app.router.add_route("GET", "/ui/", lambda _: _redirect("/ui"))


async def _ended(state: ApiState) -> None:
    state.activity.end_subscriptions()


async def _redirect(path: str) -> web.StreamResponse:
    raise web.HTTPFound(path)
