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
from pipeline import topics as T
from pipeline.api.auth import ADMIN
from pipeline.api.http import ApiError, Route, json_object, reply
from pipeline.api.state import ApiState
from pipeline.clock import now_ms

log = logging.getLogger(__name__)

UPSTREAM_STATUS = ("checkpoint_ts", "running_fetch_start_ts", "last_fetch_complete_ts", "last_fetch_succeeded",
                   "up_to_date", "fetched_items")
PROGRESS = ("records_last_fetch", "records_per_s", "last_success_ts", "last_error")


def status_json(status: dict[str, Any]) -> dict[str, Any]:
    """Upstream's FetchStatus fields, then this project's progress fields."""
    return {k: status[k] for k in UPSTREAM_STATUS + PROGRESS}


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
        bank = body.get("bank")
        if not isinstance(bank, str) or not bank:
            raise ApiError(400, "Field `bank` is required")
        if body.get("api") is None:
            raise ApiError(400, "Field `api_type` is required")
        if bank in exchanges.configs:
            raise ApiError(409, f"exchange '{bank}' already exists")
        try:
            record = exchange_record(bank, body["api"], body.get("api_json", {}), body.get("enabled", True))
        except InvalidExchange as exc:
            raise ApiError(400, str(exc)) from None
        await state.write(creation_writes(record, bank in state.view.banks))
        return reply({"message": "Created successfully"}, 201)

    async def index(request: web.Request) -> web.Response:
        return reply(sorted(exchanges.configs))

    async def get(request: web.Request) -> web.Response:
        return reply(exchange_json(existing(request.match_info["name"])))

    async def status(request: web.Request) -> web.Response:
        record = existing(request.match_info["name"])
        return reply(status_json(exchanges.fetches.get(record["name"]) or initial_status(record["name"], record["api"])))

    async def update(request: web.Request) -> web.Response:
        record = existing(request.match_info["name"])
        body = await json_object(request)
        enabled = body.get("enabled", record["enabled"])
        if not isinstance(enabled, bool):
            raise ApiError(400, "enabled must be true or false")
        new = changed(record, enabled=enabled)
        await state.write([(T.EXCHANGES, record["name"], new)])
        return reply(exchange_json(new))

    async def fetch_now(request: web.Request) -> web.Response:
        record = existing(request.match_info["name"])
        await state.write([(T.EXCHANGES, record["name"], changed(record, fetch_requested_at=now_ms()))])
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
        Route("POST", "/c/exchanges", create, "Create an exchange and its bank: {bank, api, api_json}", tag, writes=True, role=ADMIN),
        Route("GET", "/c/exchanges", index, "List exchange names", tag),
        Route("GET", "/c/exchange/{name}", get, "Get an exchange's configuration", tag),
        Route("PUT", "/c/exchange/{name}", update, "Enable or disable an exchange ({enabled})", tag, writes=True, role=ADMIN),
        Route("DELETE", "/c/exchange/{name}", delete, "Remove an exchange, its bank and its content", tag, writes=True,
              role=ADMIN),
        Route("GET", "/c/exchange/{name}/status", status, "Fetch checkpoint and progress", tag),
        Route("POST", "/c/exchange/{name}/fetch", fetch_now, "Fetch this exchange now", tag, writes=True, role=ADMIN),
    ]
