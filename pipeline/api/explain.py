"""`/m/explain`: why a hash, a file, a URL or a past upload matches each bank or does not
(pipeline/explain.py), on this process's own view of the banks."""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from typing import Any

from aiohttp import web

from pipeline import event_ids
from pipeline import topics as T
from pipeline.api.content import checked_signal, signals_of_bytes, signals_of_url
from pipeline.api.http import ApiError, Route, int_param, query, reply, uploaded_file
from pipeline.api.limits import HASH, LOOKUP
from pipeline.api.state import ApiState
from pipeline.clock import now_ms
from pipeline.event_ids import Position
from pipeline.explain import DEFAULT_NEAREST, DEFAULT_RADIUS, MAX_RADIUS, Explanation
from pipeline.rerun import what_changed
from pipeline.signal_types import default_signal_type
from pipeline.state.log_reader import read_at, read_key_near

MATCHED_WITHIN_MS = 10 * 60_000  # how long after its hashing a re-run looks for an upload's match record
CLOCK_SKEW_MS = 5_000  # record times come from different processes' clocks
LOOKUP_ID = "explain"  # the content id of a hash or file explained without one (it picks the coin)


def hashed_upload(content_id: str, signals: dict[str, Any]) -> dict[str, Any]:
    """An hma.hashes-shaped record of signals that were not uploaded (a hash, a file, a URL)."""
    return {
        "content_id": content_id, "content_type": "photo", "metadata": {}, "submitted_at": None,
        "hashed_at": now_ms(),
        "signals": {kind: {"value": sv.value, "quality": sv.quality} for kind, sv in signals.items()},
    }


async def located_upload(state: ApiState, content_id: str) -> tuple[Position, dict[str, Any]]:
    """Where on hma.hashes a recent upload is, and its record, found through the ring's positions."""
    position = state.ring.locate(content_id)
    if position is None:
        raise ApiError(404, f"content id '{content_id}' is not among the recent uploads this API keeps")
    records = await asyncio.to_thread(read_at, state.settings, T.HASHES, [position])
    if position not in records:
        raise ApiError(404, f"the hashes of content id '{content_id}' are no longer on {T.HASHES.name(state.settings)}")
    return (T.HASHES.name(state.settings), *position), records[position]


async def past_upload(state: ApiState, content_id: str) -> dict[str, Any]:
    """The hma.hashes record of a recent upload."""
    return (await located_upload(state, content_id))[1]


async def decided_then(state: ApiState, position: Position, hashed: dict[str, Any]) -> dict[str, Any] | None:
    """The upload's live record on hma.matches: its key read from the hashing time on, for at most
    MATCHED_WITHIN_MS, and picked by the event id the matcher gave it (pipeline/event_ids.py)."""
    since = hashed["hashed_at"] - CLOCK_SKEW_MS
    records = await asyncio.to_thread(read_key_near, state.settings, T.MATCHES, hashed["content_id"], since,
                                      since + MATCHED_WITHIN_MS)
    wanted = event_ids.match(hashed, position)
    live = [r for r in records if not r.get("retroactive")]
    return next((r for r in live if r.get("event_id") == wanted), live[0] if live else None)


async def hashed_from_query(state: ApiState, request: web.Request) -> dict[str, Any]:
    """What a GET names: a signal (with signal_type), a URL, or the content id of a past upload."""
    q = request.query
    content_id = q.get("content_id") or ""
    if q.get("signal"):
        kind = q.get("signal_type") or default_signal_type()
        value = checked_signal(kind, q["signal"].strip())
        return {**hashed_upload(content_id or LOOKUP_ID, {}), "signals": {kind: {"value": value, "quality": None}}}
    if q.get("url"):
        signals = await signals_of_url(q["url"].strip(), q.get("content_type"), state.settings)
        return hashed_upload(content_id or LOOKUP_ID, signals)
    if content_id:
        return await past_upload(state, content_id)
    raise ApiError(400, "give a signal (and signal_type), a url, or the content_id of a past upload")


async def explained(state: ApiState, request: web.Request, hashed: dict[str, Any]) -> dict[str, Any]:
    if not state.ready:
        raise ApiError(503, "index not yet ready")
    nearest = int_param(request, "nearest", DEFAULT_NEAREST, 1, 100)
    radius = int_param(request, "radius", DEFAULT_RADIUS, 0, MAX_RADIUS)
    view = state.view
    explanation = Explanation.start(hashed, view, state.settings, radius)
    with view.pinned():  # the index searches off the event loop (a wide radius can scan every signal)
        found = await asyncio.to_thread(explanation.search, view)
        return explanation.judge(view, found, nearest)


async def rerun(state: ApiState, request: web.Request, content_id: str) -> dict[str, Any]:
    """A recent upload then (its hma.matches record, None when not found) and now (its explanation)."""
    position, hashed = await located_upload(state, content_id)
    then = await decided_then(state, position, hashed)
    return {"upload": hashed, "then": then, "now": await explained(state, request, hashed)}


def routes(state: ApiState) -> list[Route]:
    async def explain_get(request: web.Request) -> web.Response:
        return reply(await explained(state, request, await hashed_from_query(state, request)))

    async def explain_post(request: web.Request) -> web.Response:
        data, filename, _ = await uploaded_file(request)
        signals = await signals_of_bytes(data, filename, request.query.get("content_type"))
        hashed = hashed_upload(request.query.get("content_id") or LOOKUP_ID, signals)
        return reply(await explained(state, request, hashed))

    async def rerun_get(request: web.Request) -> web.Response:
        result = await rerun(state, request, query(request, "content_id"))
        changes = [] if result["then"] is None else what_changed(result["then"], result["now"])
        return reply({**result, "changes": [asdict(c) for c in changes]})

    params = ("nearest", "radius")
    return [
        Route("GET", "/m/explain", explain_get, "Why a signal, URL or past upload matches each bank or not",
              "Matching", params=("signal_type", "signal", "url", "content_id", "content_type") + params, rate=LOOKUP),
        Route("POST", "/m/explain", explain_post, "Why an uploaded file (multipart) matches each bank or not",
              "Matching", params=("content_id", "content_type") + params, rate=HASH),
        Route("GET", "/m/explain/rerun", rerun_get, "A recent upload's match record then, its explanation now, what changed",
              "Matching", params=("content_id",) + params, rate=LOOKUP),
    ]
