"""Upstream HMA's matching and hashing routes (/m/*, /h/*), on this process's own index replica.

Lookups apply the same per-bank distance and guard as the worker; `lookup` lists the hits the
guard lets through (as upstream lists enabled content only), `raw_lookup` every hit in distance.
A lookup's `seed` is its content id, whose coin samples banks and signal types by their
enabled_ratio as the worker samples that upload; without one each lookup draws its own coin, as
upstream's does.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from pipeline.api.content import checked_signal, signals_of_bytes, signals_of_url
from pipeline.api.http import ApiError, Route, flag, json_object, query, reply, uploaded_file
from pipeline.api.limits import HASH, LOOKUP
from pipeline.api.state import ApiState
from pipeline.clock import now_ms
from pipeline.guard import MATCH
from pipeline.signal_types import SIGNAL_TYPES


async def lookup_hits(
    state: ApiState, signals: dict[str, str], banks: set[str] | None, content_id: str, sample: bool = True
) -> dict[str, list[dict]]:
    """Hits per signal type, from one synthetic hashed upload with this content id (`sample=False`:
    upstream's bypass_coinflip, every fractional enabled_ratio keeps it), searched together with
    the lookups of concurrent requests (pipeline/api/coalescer.py)."""
    if not state.ready:
        raise ApiError(503, "index not yet ready")
    hashed = {
        "content_id": content_id, "content_type": "photo", "metadata": {}, "submitted_at": None,
        "signals": {kind: {"value": value, "quality": None} for kind, value in signals.items()},
        "hashed_at": now_ms(),
    }
    record = await state.lookups.match(hashed, sample=sample)
    out: dict[str, list[dict]] = {kind: [] for kind in signals}
    for hit in record["matches"]:
        if banks is None or hit["bank"] in banks:
            out[hit["signal_type"]].append(hit)
    return out


def match_with_distance(hit: dict) -> dict[str, Any]:
    """Upstream's MatchWithDistance: the distance is a string (its similarity_info.pretty_str())."""
    return {"bank_content_id": hit["bank_content_id"], "distance": str(hit["distance"])}


def by_bank(hits: list[dict]) -> dict[str, list[dict[str, Any]]]:
    """Upstream's lookup shape: {BANK: [{"bank_content_id": id, "distance": "d"}]}, effective hits only;
    a hit on a signal fetched from an exchange also says where it came from ("exchange")."""
    out: dict[str, list[dict[str, Any]]] = {}
    for hit in hits:
        if hit["status"] == MATCH:
            found = match_with_distance(hit)
            if hit.get("exchange"):
                found["exchange"] = hit["exchange"]
            out.setdefault(hit["bank"], []).append(found)
    return out


def _banks_param(params: Mapping[str, str]) -> set[str] | None:
    value = params.get("banks")
    return set(value.split(",")) if value else None


def _content_id(params: Mapping[str, str]) -> str:
    """Upstream's `seed` (a content id, for a coin that decides the same way again), or a fresh one."""
    return params.get("seed") or f"lookup-{random.getrandbits(64):016x}"  # a coin, not a secret


def _plain(signals: dict[str, Any]) -> dict[str, str]:
    return {kind: sv.value for kind, sv in signals.items()}


def routes(state: ApiState) -> list[Route]:
    async def lookup_get(params: Mapping[str, str]) -> Any:
        banks = _banks_param(params)
        if params.get("url"):
            signals = _plain(await signals_of_url(params["url"], params.get("content_type"), state.settings))
            hits = await lookup_hits(state, signals, banks, _content_id(params))
            return {kind: by_bank(h) for kind, h in hits.items()}
        kind, value = params.get("signal_type"), params.get("signal")
        if not kind or not value:
            raise ApiError(400, "Either url or both signal and signal_type are required")
        value = checked_signal(kind, value)
        return by_bank((await lookup_hits(state, {kind: value}, banks, _content_id(params)))[kind])

    async def lookup_post(request: web.Request) -> web.Response:
        data, filename, _ = await uploaded_file(request)
        signals = _plain(await signals_of_bytes(data, filename, request.query.get("content_type")))
        bypass = flag(request, "bypass_coinflip")  # upstream's POST honours it, its GET does not
        hits = await lookup_hits(state, signals, _banks_param(request.query), _content_id(request.query),
                                 sample=not bypass)
        return reply({kind: by_bank(h) for kind, h in hits.items()})

    async def raw_lookup(params: Mapping[str, str]) -> Any:
        kind = query(params, "signal_type")
        value = checked_signal(kind, query(params, "signal"))
        hits = (await lookup_hits(state, {kind: value}, _banks_param(params), _content_id(params)))[kind]
        if flag(params, "include_distance"):
            return {"matches": [match_with_distance(h) for h in hits]}
        return {"matches": [h["bank_content_id"] for h in hits]}

    async def compare(request: web.Request) -> web.Response:
        body = await json_object(request)
        out: dict[str, Any] = {}
        for kind, pair in body.items():
            if not isinstance(pair, list):
                raise ApiError(400, f"Comparison hashes for {kind} was not a list")
            if len(pair) != 2:
                raise ApiError(400, "Comparison hash list length must be exactly 2")
            if kind not in SIGNAL_TYPES:
                raise ApiError(400, f"No such SignalType '{kind}'")
            left, right = (checked_signal(kind, str(v)) for v in pair)
            compared = SIGNAL_TYPES[kind].compare(left, right)
            out[kind] = [compared.match, {"distance": compared.distance}]
        return reply(out)

    async def hash_get(request: web.Request) -> web.Response:
        url = query(request, "url")
        signals = await signals_of_url(url, request.query.get("content_type"), state.settings)
        return reply({kind: sv.value for kind, sv in signals.items()})

    async def hash_post(request: web.Request) -> web.Response:
        data, filename, _ = await uploaded_file(request)
        signals = await signals_of_bytes(data, filename, request.query.get("content_type"))
        return reply({kind: sv.value for kind, sv in signals.items()})

    return [
        Route.answering("/m/lookup", lookup_get, "Look up a signal, or the content at a URL", "Matching",
              params=("signal_type", "signal", "url", "content_type", "banks", "seed"), rate=LOOKUP),
        Route("POST", "/m/lookup", lookup_post, "Look up an uploaded file (multipart)", "Matching",
              params=("content_type", "banks", "seed", "bypass_coinflip"), rate=HASH),
        Route.answering("/m/raw_lookup", raw_lookup, "Bank content ids near a signal, guard not applied", "Matching",
              params=("signal_type", "signal", "include_distance", "banks"), rate=LOOKUP),
        Route("POST", "/m/compare", compare, "Distances between pairs of signals", "Matching", rate=LOOKUP),
        Route("GET", "/h/hash", hash_get, "Hash the content at a URL", "Hashing", params=("url", "content_type"),
              rate=HASH),
        Route("POST", "/h/hash", hash_post, "Hash an uploaded file (multipart)", "Hashing", params=("content_type",),
              rate=HASH),
    ]
