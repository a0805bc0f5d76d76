"""Upstream HMA's status and configuration routes: health, site map, index status, signal and
content types. In this design "the index" is this replica's view, and how far it has read
hma.bank-signals is what "built to" means.
"""

from __future__ import annotations

import contextlib
import re

from aiohttp import web

from pipeline import topics as T
from pipeline.api.auth import ADMIN, PUBLIC
from pipeline.api.http import ApiError, Route, json_object, reply
from pipeline.api.state import ApiState
from pipeline.banks import check_enabled_ratio
from pipeline.config_keys import setting_record, signal_type_ratio_key
from pipeline.signal_types import SIGNAL_TYPES, content_types



def routes(state: ApiState, table: list[Route]) -> list[Route]:
    view = state.view

    async def status(request: web.Request) -> web.Response:
        if not state.ready:
            return web.Response(text="INDEX-NOT-LOADED", status=503)
        if state.stale:
            return web.Response(text="INDEX-STALE", status=503)
        return web.Response(text="I-AM-ALIVE")

    async def live(request: web.Request) -> web.Response:
        return web.Response(text="I-AM-ALIVE")

    async def site_map(request: web.Request) -> web.Response:
        return reply(sorted({re.sub(r"{(\w+)}", r"<\1>", r.path) for r in table}))

    def matchable(request: web.Request) -> list[str]:
        kinds = list(SIGNAL_TYPES)
        wanted = request.query.get("signal_type")
        if wanted is None:
            return kinds
        if wanted not in kinds:
            raise ApiError(400, f"No such signal type '{wanted}'")
        return [wanted]

    def built_to() -> int:
        return view.newest_signal_ms // 1000 if view.newest_signal_ms else -1

    async def index_status(request: web.Request) -> web.Response:
        return reply({
            kind: {"present": state.ready, "built_to": built_to() if state.ready else -1, "size": view.signal_count(kind)}
            for kind in matchable(request)
        })

    async def signal_type_index(request: web.Request) -> web.Response:
        ends = await state.bank_view.end_offsets()
        topic = T.BANK_SIGNALS.name(state.settings)
        consumed, end = state.bank_view.positions.get(topic, 0), ends.get(topic, 0)
        banked: dict[str, int] = {}
        for entry in view.entries():
            banked[entry.signal_type] = banked.get(entry.signal_type, 0) + 1
        return reply({
            kind: {
                "db_size": banked.get(kind, 0),
                "index_size": view.signal_count(kind),
                "index_out_of_date": consumed < end,
                "newest_db_item": built_to(),
                "index_built_to": built_to(),
            }
            for kind in matchable(request)
        })

    async def signal_types(request: web.Request) -> web.Response:
        return reply([{"name": k, "enabled_ratio": view.signal_type_ratio(k)} for k in SIGNAL_TYPES])

    async def signal_type_update(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in SIGNAL_TYPES:
            raise ApiError(400, f"No such signal type '{name}'")
        body = await json_object(request)
        ratio = body.get("enabled_ratio")
        if isinstance(ratio, str):
            with contextlib.suppress(ValueError):  # upstream takes "0.5" too; other text fails the check
                ratio = float(ratio)
        try:
            ratio = check_enabled_ratio(ratio)
        except ValueError as exc:
            raise ApiError(400, str(exc)) from None
        key = signal_type_ratio_key(name)
        await state.write([(T.CONFIG, key, setting_record(key, ratio))])
        return web.Response(status=204)

    async def content_type_list(request: web.Request) -> web.Response:
        return reply([{"name": c, "enabled": True} for c in content_types()])

    return [
        Route("GET", "/status", status, "200 once this replica's view has caught up with the banks", "Core",
              role=PUBLIC),
        Route("GET", "/status/live", live, "200 while the process runs", "Core", role=PUBLIC),
        Route("GET", "/site-map", site_map, "Every route", "Core", role=PUBLIC),
        Route("GET", "/m/index/status", index_status, "Index replica per signal type: present, built_to, size",
              "Matching", params=("signal_type",)),
        Route("GET", "/c/signal_type/index", signal_type_index, "Banked signals against what the index holds",
              "Signal Types", params=("signal_type",)),
        Route("GET", "/c/signal_type", signal_types, "Signal types and their enabled_ratio", "Signal Types"),
        Route("PUT", "/c/signal_type/{name}", signal_type_update,
              "Set a signal type's enabled_ratio (0 disables it)", "Signal Types", writes=True, role=ADMIN),
        Route("GET", "/c/content_type", content_type_list, "Content types", "Signal Types"),
    ]
