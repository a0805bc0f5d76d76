"""The HTTP API process: upstream HMA's routes plus bank controls, over its own view of the log."""

from __future__ import annotations

import functools
import hmac
import logging
import time

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

from pipeline.api import controls, curation, development, exchanges, explain, matching, recent, status
from pipeline.api.http import ApiError, Route, reply
from pipeline.api.openapi import openapi_document
from pipeline.api.ui import pages as ui_pages
from pipeline.api.state import ApiState
from pipeline.services.output import DeliveryFailed
from pipeline.services.read_back import NotCaughtUp
from pipeline.config import Settings
from pipeline.signal_types import SIGNAL_TYPES

log = logging.getLogger(__name__)

REQUESTS = Counter("hmas_api_requests_total", "API requests", ["route", "status"])
LATENCY = Histogram("hmas_api_request_seconds", "API request latency", ["route"])
INDEX_SIZE = Gauge("hmas_api_index_signals", "Signals in the API's index replica", ["signal_type"])
STATE_KEY = web.AppKey("state", ApiState)
ROUTES_KEY = web.AppKey("routes", dict)  # aiohttp's route -> ours (one dict lookup per request)


def create_api(settings: Settings, state: ApiState | None = None) -> web.Application:
    """The application over `state` (by default a new one of its own)."""
    state = state if state is not None else ApiState(settings)
    app = web.Application(
        middlewares=[_errors, _auth(settings.api_token), _metrics],
        client_max_size=settings.fetch_max_bytes,
    )
    app[STATE_KEY] = state
    table: list[Route] = []
    table += status.routes(state, table) + matching.routes(state) + curation.routes(state) + controls.routes(state)
    table += recent.routes(state) + explain.routes(state) + exchanges.routes(state)
    if settings.api_dev_routes:
        table += development.routes(state)
    table.append(Route("GET", "/openapi/openapi.json", lambda r: _openapi(table), "This document (upstream's path)", "Core"))
    table.append(Route("GET", "/openapi.json", lambda r: _openapi(table), "This document", "Core"))
    table.append(Route("GET", "/metrics", _prometheus(state), "Prometheus metrics", "Core"))
    app[ROUTES_KEY] = {app.router.add_route(r.method, r.path, r.handler): r for r in table}
    ui_pages.setup(app, state)
    app.on_startup.append(lambda _: state.start())
    app.on_cleanup.append(lambda _: state.stop())
    return app


async def _openapi(table: list[Route]) -> web.Response:
    return reply(openapi_document(table))


def _prometheus(state: ApiState):
    async def handler(request: web.Request) -> web.Response:
        for kind in SIGNAL_TYPES:
            INDEX_SIZE.labels(kind).set(state.view.signal_count(kind))
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})
    return handler


@web.middleware
async def _errors(request: web.Request, handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return reply({"message": exc.message}, exc.status)
    except (NotCaughtUp, DeliveryFailed) as exc:
        return reply({"message": str(exc)}, 503)
    except web.HTTPRequestEntityTooLarge:
        return reply({"message": "Content too large"}, 413)
    except web.HTTPException as exc:
        if exc.status >= 400:
            return reply({"message": exc.reason}, exc.status)
        raise
    except Exception:
        log.exception("unhandled API error", extra={"path": request.path, "method": request.method})
        return reply({"message": "internal error; see the API log"}, 500)


def _route_of(request: web.Request) -> Route | None:
    return request.app[ROUTES_KEY].get(request.match_info.route)


def _auth(token: str):
    @web.middleware
    async def middleware(request: web.Request, handler) -> web.StreamResponse:
        route = _route_of(request)
        if token and route is not None and route.writes:
            given = request.headers.get("Authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
                raise ApiError(401, "this route needs `Authorization: Bearer <token>`")
        return await handler(request)
    return middleware


@web.middleware
async def _metrics(request: web.Request, handler) -> web.StreamResponse:
    route = _route_of(request)
    name = route.path if route else "unmatched"
    start = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except ApiError as exc:
        status = exc.status
        raise
    finally:
        _counted(name, status).inc()
        _timed(name).observe(time.perf_counter() - start)


@functools.lru_cache(maxsize=4096)
def _counted(route: str, status: int) -> Counter:
    """The labelled counter of a route and status, looked up once (labels() costs a lock and a hash)."""
    return REQUESTS.labels(route, str(status))


@functools.lru_cache(maxsize=1024)
def _timed(route: str) -> Histogram:
    return LATENCY.labels(route)
