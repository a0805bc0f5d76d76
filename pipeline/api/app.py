"""The HTTP API process: upstream HMA's routes plus bank controls, over its own view of the log."""

from __future__ import annotations

import functools
import logging
import time

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from pipeline import metrics
from pipeline.api import controls, curation, development, exchanges, explain, matching, recent, status
from pipeline.api.auth import PUBLIC, READ, ApiTokens, allows, bearer
from pipeline.api.http import ApiError, Route, reply
from pipeline.api.limits import CLIENT_KEY, RateLimits, kind_of
from pipeline.api.openapi import openapi_document
from pipeline.api.ui import pages as ui_pages
from pipeline.api.state import ApiState
from pipeline.services.output import DeliveryFailed
from pipeline.services.read_back import NotCaughtUp
from pipeline.config import Settings

log = logging.getLogger(__name__)

STATE_KEY = web.AppKey("state", ApiState)
ROUTES_KEY = web.AppKey("routes", dict)  # aiohttp's route -> ours (one dict lookup per request)


def create_api(settings: Settings, state: ApiState | None = None) -> web.Application:
    """The application over `state` (by default a new one of its own)."""
    state = state if state is not None else ApiState(settings)
    metrics.set_process_role("api")
    app = web.Application(
        middlewares=[_errors, _auth(ApiTokens.from_settings(settings), bool(settings.api_open_reads)),
                     _limits(state.limits),
                     _metrics],
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
    ui_pages.setup(app, state)
    app.on_startup.append(lambda _: state.start())
    app.on_cleanup.append(lambda _: state.stop())
    return app


async def _openapi(table: list[Route]) -> web.Response:
    return reply(openapi_document(table))


async def _prometheus(request: web.Request) -> web.Response:
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})


@web.middleware
async def _errors(request: web.Request, handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        response = reply({"message": exc.message}, exc.status)
        response.headers.update(exc.headers)
        return response
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


def _auth(tokens: ApiTokens, open_reads: bool):
    """The role a route needs against the presented token's (401 without a token of ours, 403 with
    one of too weak a role); no tokens configured: every route is open."""
    @web.middleware
    async def middleware(request: web.Request, handler) -> web.StreamResponse:
        route = _route_of(request)
        presented = bearer(request)
        role = tokens.role_of(presented) if presented and tokens.configured else None
        request[CLIENT_KEY] = ApiTokens.client_id(presented) if role else (request.remote or "unknown")
        needed = route.needs if route is not None else PUBLIC
        if not tokens.configured or needed == PUBLIC or (needed == READ and open_reads):
            return await handler(request)
        if role is None:
            raise ApiError(401, f"this route needs `Authorization: Bearer <token>` of role {needed} or above",
                           {"WWW-Authenticate": "Bearer"})
        if not allows(role, needed):
            raise ApiError(403, f"this route needs a token of role {needed} or above; this token's role is {role}")
        return await handler(request)
    return middleware


def _limits(limits: RateLimits):
    """429 with Retry-After once a client is over its rate for the route's kind (the UI's pages
    count theirs in pipeline/api/ui/frame.py, against the same limits)."""
    @web.middleware
    async def middleware(request: web.Request, handler) -> web.StreamResponse:
        route = _route_of(request)
        kind = kind_of(route.rate, request.query) if route is not None else ""
        if kind:
            limits.take(kind, request[CLIENT_KEY])
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
def _counted(route: str, status: int):
    """The labelled counter of a route and status, looked up once (labels() costs a lock and a hash)."""
    return metrics.API_REQUESTS.labels(route, str(status))


@functools.lru_cache(maxsize=1024)
def _timed(route: str):
    return metrics.API_REQUEST_SECONDS.labels(route)
