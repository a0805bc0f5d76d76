"""The HTTP API process: upstream HMA's routes plus bank controls, over its own view of the log."""

from __future__ import annotations

import time

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from pipeline import metrics
from pipeline.api import controls, curation, development, exchanges, explain, matching, recent, status
from pipeline.api.auth import PUBLIC, ApiTokens
from pipeline.api.gate import Gate, error_answer, observe
from pipeline.api.http import Route, reply
from pipeline.api.lean_front import LEAN_KEY, LeanRoutes
from pipeline.api.limits import CLIENT_KEY
from pipeline.api.openapi import openapi_document
from pipeline.api.ui import pages as ui_pages
from pipeline.api.state import ApiState
from pipeline.config import Settings

STATE_KEY = web.AppKey("state", ApiState)
ROUTES_KEY = web.AppKey("routes", dict)  # aiohttp's route -> ours (one dict lookup per request)


def create_api(settings: Settings, state: ApiState | None = None) -> web.Application:
    """The application over `state` (by default a new one of its own)."""
    state = state if state is not None else ApiState(settings)
    gate = Gate(ApiTokens.from_settings(settings), bool(settings.api_open_reads), state.limits)
    metrics.set_process_role("api")
    app = web.Application(
        middlewares=[_gated(gate)],
        client_max_size=settings.fetch_max_bytes,
    )
    app[STATE_KEY] = state
    table: list[Route] = []
    table += status.routes(state, table) + matching.routes(state) + curation.routes(state) + controls.routes(state)
    table += recent.routes(state) + explain.routes(state) + exchanges.routes(state)
    if settings.api_dev_routes:
        table += development.routes(state)
    table.append(Route("GET", "/openapi/openapi.json", lambda r: _openapi(table), "This document (upstream's path)", "Core",
                       role=PUBLIC))
    table.append(Route("GET", "/openapi.json", lambda r: _openapi(table), "This document", "Core", role=PUBLIC))
    table.append(Route("GET", "/metrics", _prometheus, "Prometheus metrics (docs/metrics.md)", "Core", role=PUBLIC))
    app[ROUTES_KEY] = {app.router.add_route(r.method, r.path, r.handler): r for r in table}
    app[LEAN_KEY] = LeanRoutes(gate, {r.path: r for r in table if r.method == "GET" and r.answer is not None})
    ui_pages.setup(app, state)
    app.on_startup.append(lambda _: state.start())
    app.on_cleanup.append(lambda _: state.stop())
    return app


async def _openapi(table: list[Route]) -> web.Response:
    return reply(openapi_document(table))


async def _prometheus(request: web.Request) -> web.Response:
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})


def _gated(gate: Gate):
    """The one middleware: the gate (role, rate), the handler, errors as JSON answers, metrics."""
    @web.middleware
    async def middleware(request: web.Request, handler) -> web.StreamResponse:
        route = request.app[ROUTES_KEY].get(request.match_info.route)
        started = time.perf_counter()
        status = 500
        try:
            request[CLIENT_KEY] = gate.admit(route, request.headers.get("Authorization", ""), request.remote,
                                             request.query)
            response = await handler(request)
            status = response.status
            return response
        except Exception as exc:
            answer = error_answer(exc, request.method, request.path)
            if answer is None:
                raise
            status, body, headers = answer
            response = reply(body, status)
            response.headers.update(headers)
            return response
        finally:
            observe(route, status, time.perf_counter() - started)
    return middleware
