"""Upstream HMA's exchange routes (/c/exchanges..., /c/exchange/<name>...) over hma.exchanges,
hma.exchange-fetch and hma.exchange-credentials.

An exchange fills the bank of its name, a normal bank with the bank controls; creating the
exchange creates that bank, removing it removes the bank. Credentials are only ever written sealed
and never answered.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from connectors.exchanges.config import (
    EXCHANGE_APIS, InvalidExchange, api_schema, changed, creation_writes, exchange_api, exchange_json,
    exchange_record, removal_writes, supports_auth,
)
from connectors.exchanges.credentials import CredentialsUnavailable, found_outside, sealed_record, where_to_provide
from connectors.exchanges.fetcher import initial_status
from connectors.exchanges.writer import initial_write_status
from pipeline import topics as T
from pipeline.api.auth import ADMIN
from pipeline.api.http import ApiError, Route, json_object, reply
from pipeline.api.state import ApiState
from pipeline.clock import now_ms

log = logging.getLogger(__name__)

UPSTREAM_STATUS = ("checkpoint_ts", "running_fetch_start_ts", "last_fetch_complete_ts", "last_fetch_succeeded",
                   "up_to_date", "fetched_items")
PROGRESS = ("records_last_fetch", "records_per_s", "last_success_ts", "last_error")


WRITE_STATUS = ("delivered", "skipped", "retries", "dead_lettered", "last_success_ts", "last_attempt_ts", "last_error")


def status_json(status: dict[str, Any], writes: dict[str, Any]) -> dict[str, Any]:
    """Upstream's FetchStatus fields, then this project's progress fields and write-back status."""
    return {**{k: status[k] for k in UPSTREAM_STATUS + PROGRESS}, "write": {k: writes[k] for k in WRITE_STATUS}}


def shown(record: dict[str, Any]) -> dict[str, Any]:
    """Upstream's exchange JSON, and this project's write-back fields when they are set."""
    extra = {f: record[f] for f in ("report_feedback", "endpoint") if record[f]}
    return {**exchange_json(record), **extra}


def fetch_status(state: ApiState, record: dict[str, Any]) -> dict[str, Any]:
    """An exchange's fetch checkpoint and progress (before any fetch: the initial one)."""
    return state.exchanges.fetches.get(record["name"]) or initial_status(record["name"], record["api"])


def write_status(state: ApiState, record: dict[str, Any]) -> dict[str, Any]:
    """An exchange's write-back status (before any write: the initial one)."""
    return state.exchanges.writes.get(record["name"]) or initial_write_status(record["name"])


async def create_exchange(state: ApiState, bank: Any, api: Any, api_json: Any, enabled: Any = True,
                          report_feedback: Any = False, endpoint: Any = None) -> dict[str, Any]:
    """A new exchange and, unless it exists, its bank."""
    if not isinstance(bank, str) or not bank:
        raise ApiError(400, "Field `bank` is required")
    if api is None:
        raise ApiError(400, "Field `api_type` is required")
    if bank in state.exchanges.configs:
        raise ApiError(409, f"exchange '{bank}' already exists")
    try:
        record = exchange_record(bank, api, api_json, enabled, report_feedback=report_feedback, endpoint=endpoint)
    except InvalidExchange as exc:
        raise ApiError(400, str(exc)) from None
    await state.write(creation_writes(record, bank in state.view.banks))
    return record


async def change_exchange(state: ApiState, record: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """An exchange enabled, disabled, or asked to fetch now (fetch_requested_at)."""
    new = changed(record, **changes)
    await state.write([(T.EXCHANGES, record["name"], new)])
    return new


def routes(state: ApiState) -> list[Route]:
    exchanges = state.exchanges

    def api_of(name: str, status: int = 400):
        try:
            return exchange_api(name)
        except InvalidExchange:
            raise ApiError(status, f"no such Exchange API '{name}'") from None

    def existing(name: str) -> dict[str, Any]:
        record = exchanges.configs.get(name)
        if record is None:
            raise ApiError(404, f"Exchange '{name}' not found")
        return record

    def auth_json(api: str) -> dict[str, bool]:
        api_cls = api_of(api)
        has = supports_auth(api_cls) and (api in exchanges.credentials or found_outside(api_cls))
        return {"supports_authentification": supports_auth(api_cls), "has_set_authentification": has}

    async def apis(request: web.Request) -> web.Response:
        return reply(list(EXCHANGE_APIS))

    async def api_get(request: web.Request) -> web.Response:
        return reply(auth_json(request.match_info["api"]))

    async def api_credentials(request: web.Request) -> web.Response:
        api = request.match_info["api"]
        api_cls = api_of(api)
        body = await json_object(request)
        creds = body.get("credential_json")
        if creds is not None and not isinstance(creds, dict):
            raise ApiError(400, "credential_json must be a JSON object")
        if creds == {}:
            await state.write([(T.EXCHANGE_CREDENTIALS, api, None)])
        elif creds:
            if not supports_auth(api_cls):
                raise ApiError(400, f"exchange API '{api}' takes no credentials")
            try:
                record = sealed_record(api_cls, creds, state.settings.secret_key)
            except CredentialsUnavailable as exc:
                raise ApiError(400, f"{exc}; or provide them through {where_to_provide(api_cls)}") from None
            except ValueError as exc:
                raise ApiError(400, str(exc)) from None
            await state.write([(T.EXCHANGE_CREDENTIALS, api, record)])
            log.info("exchange credentials stored sealed", extra={"api": api})
        return reply(auth_json(api))

    async def api_schema_get(request: web.Request) -> web.Response:
        return reply(api_schema(api_of(request.match_info["api"], status=404)))

    async def create(request: web.Request) -> web.Response:
        body = await json_object(request)
        await create_exchange(state, body.get("bank"), body.get("api"), body.get("api_json", {}), body.get("enabled", True),
                              body.get("report_feedback", False), body.get("endpoint"))
        return reply({"message": "Created successfully"}, 201)

    async def index(request: web.Request) -> web.Response:
        return reply(sorted(exchanges.configs))

    async def get(request: web.Request) -> web.Response:
        return reply(shown(existing(request.match_info["name"])))

    async def status(request: web.Request) -> web.Response:
        record = existing(request.match_info["name"])
        return reply(status_json(fetch_status(state, record), write_status(state, record)))

    async def update(request: web.Request) -> web.Response:
        record = existing(request.match_info["name"])
        body = await json_object(request)
        flags = {f: body.get(f, record[f]) for f in ("enabled", "report_feedback")}
        for name, value in flags.items():
            if not isinstance(value, bool):
                raise ApiError(400, f"{name} must be true or false")
        return reply(shown(await change_exchange(state, record, **flags)))

    async def fetch_now(request: web.Request) -> web.Response:
        await change_exchange(state, existing(request.match_info["name"]), fetch_requested_at=now_ms())
        return reply({"message": "Fetch requested"})

    async def delete(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name in exchanges.configs:
            keys = [e.key for e in list(state.view.entries(name))]
            await state.write(removal_writes(name, keys, name in state.view.banks))
        return reply({"message": "Exchange deleted"})

    tag = "Exchanges"
    return [
        Route("GET", "/c/exchanges/apis", apis, "List exchange API types", tag),
        Route("GET", "/c/exchanges/api/{api}", api_get, "Whether an exchange API takes and has credentials", tag),
        Route("POST", "/c/exchanges/api/{api}", api_credentials,
              "Set (sealed with HMAS_SECRET_KEY) or unset ({}) an exchange API's credential_json", tag, writes=True,
              role=ADMIN),
        Route("GET", "/c/exchanges/api/{api}/schema", api_schema_get, "Field descriptors of api_json and credentials", tag),
        Route("POST", "/c/exchanges", create, "Create an exchange and its bank: {bank, api, api_json, report_feedback, endpoint}", tag,
              writes=True, role=ADMIN),
        Route("GET", "/c/exchanges", index, "List exchange names", tag),
        Route("GET", "/c/exchange/{name}", get, "Get an exchange's configuration", tag),
        Route("PUT", "/c/exchange/{name}", update, "Enable or disable an exchange, or its feedback reports ({enabled, report_feedback})", tag,
              writes=True, role=ADMIN),
        Route("DELETE", "/c/exchange/{name}", delete, "Remove an exchange, its bank and its content", tag, writes=True,
              role=ADMIN),
        Route("GET", "/c/exchange/{name}/status", status, "Fetch checkpoint and progress, and write-back status", tag),
        Route("POST", "/c/exchange/{name}/fetch", fetch_now, "Fetch this exchange now", tag, writes=True, role=ADMIN),
    ]
