"""Routes upstream HMA lacks: feedback (confirm / deconfirm) with per-signal tallies, and the review
of signals quarantined for flooding.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from connectors.exchanges.outbox import feedback_writes
from pipeline import topics as T
from pipeline.api.http import ApiError, Route, json_object, reply
from pipeline.api.state import ApiState
from pipeline.clock import now_ms

VERDICTS = ("harmful", "benign")


async def record_feedback(state: ApiState, content_id: Any, verdict: Any, signals: Any, note: str = "") -> dict[str, Any]:
    """A confirm (harmful) or deconfirm (benign) decision on hma.feedback, once it is checked."""
    if not isinstance(content_id, str) or not content_id:
        raise ApiError(400, "content_id (a string) is required")
    if verdict not in VERDICTS:
        raise ApiError(400, f"verdict must be one of {', '.join(VERDICTS)}")
    if not isinstance(signals, list) or not all(isinstance(s, str) for s in signals):
        raise ApiError(400, "signals must be a list of signal ids")
    unknown = [s for s in signals if not state.view.entries_with_signal(s)]
    if unknown:
        raise ApiError(400, f"no bank holds signal {', '.join(unknown)}")
    record = {"content_id": content_id, "verdict": verdict, "signals": signals, "note": note, "decided_at": now_ms()}
    await state.write([(T.FEEDBACK, content_id, record)])
    reports = feedback_writes(state.view, state.exchanges.configs, record)
    if reports:  # after the decision is recorded: a report never goes out for a decision that was not
        await state.output.deliver(reports)
    return {**record, "exchange_reports": len(reports)}


async def review_quarantine(state: ApiState, signal_id: str, new_state: str) -> dict[str, Any]:
    """A quarantined signal released (it matches again) or disabled for good."""
    current = state.view.quarantine.get(signal_id)
    if current is None:
        raise ApiError(404, f"signal '{signal_id}' is not in quarantine review")
    record: dict[str, Any] = {**current, "state": new_state, "changed_at": now_ms()}
    await state.write([(T.QUARANTINE, signal_id, record)])
    return record


def routes(state: ApiState) -> list[Route]:
    view = state.view

    async def feedback_post(request: web.Request) -> web.Response:
        body = await json_object(request)
        note = body.get("note", "")
        if not isinstance(note, str):
            raise ApiError(400, "note should be a string")
        record = await record_feedback(state, body.get("content_id"), body.get("verdict"), body.get("signals", []), note)
        return reply(record, 201)

    async def feedback_get(request: web.Request) -> web.Response:
        return reply(state.feedback.decisions(request.match_info["content_id"]))

    async def tallies(request: web.Request) -> web.Response:
        sid = request.match_info["signal_id"]
        counts = state.feedback.of_signal(sid)
        if counts is None and not view.entries_with_signal(sid):
            raise ApiError(404, f"signal '{sid}' not found")
        return reply({"signal_id": sid, **(counts or {"harmful": 0, "benign": 0})})

    async def quarantine_list(request: web.Request) -> web.Response:
        wanted = request.query.get("state", "quarantined")
        return reply(sorted(
            (q for q in view.quarantine.values() if wanted == "all" or q["state"] == wanted),
            key=lambda q: -q["changed_at"],
        ))

    def review(new_state: str):
        async def handler(request: web.Request) -> web.Response:
            return reply(await review_quarantine(state, request.match_info["signal_id"], new_state))
        return handler

    return [
        Route("POST", "/c/feedback", feedback_post, "Record a confirm (harmful) or deconfirm (benign) decision",
              "Feedback", writes=True),
        Route("GET", "/c/feedback/{content_id}", feedback_get, "Decisions recorded for a content id", "Feedback"),
        Route("GET", "/c/signal/{signal_id}/tallies", tallies, "Harmful / benign tallies of a signal", "Feedback"),
        Route("GET", "/c/quarantine", quarantine_list, "Signals quarantined for flooding", "Quarantine",
              params=("state",)),
        Route("POST", "/c/quarantine/{signal_id}/release", review("released"),
              "Release a quarantined signal: it matches again", "Quarantine", writes=True),
        Route("POST", "/c/quarantine/{signal_id}/disable", review("disabled"),
              "Disable a quarantined signal for good", "Quarantine", writes=True),
    ]
