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


def routes(state: ApiState) -> list[Route]:
    view = state.view

    async def feedback_post(request: web.Request) -> web.Response:
        body = await json_object(request)
        content_id, verdict = body.get("content_id"), body.get("verdict")
        if not isinstance(content_id, str) or not content_id:
            raise ApiError(400, "content_id (a string) is required")
        if verdict not in VERDICTS:
            raise ApiError(400, f"verdict must be one of {', '.join(VERDICTS)}")
        signals = body.get("signals", [])
        if not isinstance(signals, list) or not all(isinstance(s, str) for s in signals):
            raise ApiError(400, "signals must be a list of signal ids")
        unknown = [s for s in signals if not view.entries_with_signal(s)]
        if unknown:
            raise ApiError(400, f"no bank holds signal {', '.join(unknown)}")
        note = body.get("note", "")
        if not isinstance(note, str):
            raise ApiError(400, "note should be a string")
        record = {"content_id": content_id, "verdict": verdict, "signals": signals, "note": note,
                  "decided_at": now_ms()}
        await state.write([(T.FEEDBACK, content_id, record)])
        reports = feedback_writes(view, state.exchanges.configs, record)
        if reports:  # after the decision is recorded: a report never goes out for a decision that was not
            await state.output.deliver(reports)
        return reply({**record, "exchange_reports": len(reports)}, 201)

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
            sid = request.match_info["signal_id"]
            current = view.quarantine.get(sid)
            if current is None:
                raise ApiError(404, f"signal '{sid}' is not in quarantine review")
            record: dict[str, Any] = {**current, "state": new_state, "changed_at": now_ms()}
            await state.write([(T.QUARANTINE, sid, record)])
            return reply(record)
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
