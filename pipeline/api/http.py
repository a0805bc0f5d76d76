"""HTTP plumbing shared by the routes: the route table, JSON errors, request parsing."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

import orjson
from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
QueryAnswer = Callable[[Mapping[str, str]], Awaitable[Any]]  # a GET route's JSON answer from its query alone
Params = web.Request | Mapping[str, str]  # a request, or its query parameters


class ApiError(Exception):
    """An answer with a status and a JSON message: {"message": ...} as upstream HMA does."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Handler
    summary: str
    tag: str
    writes: bool = False  # changes something: needs a token of role curate (at least) when tokens are configured
    params: tuple[str, ...] = field(default_factory=tuple)  # documented query parameters
    role: str = ""  # the role it needs (pipeline/api/auth.py), when not read (or curate for writes)
    rate: str = ""  # its per-client rate limit (pipeline/api/limits.py): "lookup", "hash" or none
    answer: QueryAnswer | None = None  # set by `answering`: the lean front may serve it

    @classmethod
    def answering(cls, path: str, answer: QueryAnswer, summary: str, tag: str, **kwargs: Any) -> "Route":
        """A GET route whose JSON answer follows from its query alone: aiohttp serves it through a
        handler made here, the lean front (pipeline/api/lean_front.py) without building a request."""
        async def handler(request: web.Request) -> web.Response:
            return reply(await answer(request.query))
        return cls("GET", path, handler, summary, tag, answer=answer, **kwargs)

    @property
    def needs(self) -> str:
        return self.role or ("curate" if self.writes else "read")


def reply(data: Any, status: int = 200) -> web.Response:
    """A JSON answer, encoded by orjson (a lookup's answer in about a microsecond: the API answers
    thousands a second on one event loop)."""
    return web.Response(body=orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS), status=status,
                        content_type="application/json", charset="utf-8")


def _query_of(params: Params) -> Mapping[str, str]:
    return params.query if isinstance(params, web.BaseRequest) else params


def query(params: Params, name: str, required: bool = True) -> str | None:
    value = _query_of(params).get(name)
    if required and not value:
        raise ApiError(400, f"missing required parameter '{name}'")
    return value


def flag(params: Params, name: str, default: bool = False) -> bool:
    value = _query_of(params).get(name)
    return default if value is None else value.lower() in ("1", "true", "yes", "on")


def int_param(params: Params, name: str, default: int, low: int, high: int) -> int:
    """An integer query parameter within [low, high]; 400 otherwise."""
    raw = _query_of(params).get(name)
    try:
        value = default if raw in (None, "") else int(raw)
    except ValueError:
        raise ApiError(400, f"{name} must be an integer") from None
    if not low <= value <= high:
        raise ApiError(400, f"{name} must be from {low} to {high}")
    return value


async def json_object(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ApiError(400, "request body must be JSON") from None
    if not isinstance(body, dict):
        raise ApiError(400, "request body must be a JSON object")
    return body


async def uploaded_file(request: web.Request) -> tuple[bytes, str | None, dict[str, str]]:
    """The one file of a multipart/form-data request, its name, and the other form fields."""
    if not request.content_type.startswith("multipart/"):
        raise ApiError(400, "Missing multipart/form-data file upload")
    try:
        form = await request.post()
    except (ValueError, AssertionError) as exc:  # aiohttp's multipart reader on a malformed body
        raise ApiError(400, f"malformed multipart/form-data body: {exc}") from None
    files = [(k, v) for k, v in form.items() if isinstance(v, web.FileField)]
    if not files:
        raise ApiError(400, "Missing multipart/form-data file upload")
    if len(files) > 1:
        raise ApiError(400, "Only one file allowed per request")
    _, upload = files[0]
    fields = {k: v for k, v in form.items() if isinstance(v, str)}
    return upload.file.read(), upload.filename, fields
