"""What is being uploaded now: recent uploads near a hash, and clusters of recent near-duplicates,
from this process's own ring of recent hashes."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from pipeline.api.content import checked_signal
from pipeline.api.http import ApiError, Route, int_param, query, reply
from pipeline.api.limits import LOOKUP
from pipeline import topics as T
from pipeline.api.state import ApiState
from pipeline.clock import now_ms, parse_duration_ms
from pipeline.index.codes import codes_from_hex
from pipeline.recent.clusters import clusters
from pipeline.signal_types import SIGNAL_TYPES
from pipeline.state.log_reader import read_at

CLUSTER_DISTANCE = 16  # default PDQ distance that joins two recent uploads into a cluster


async def similar_hits(state: ApiState, codes: list[str], distance: int) -> list[Any]:
    """Ring hits within `distance` of any of a signal's PDQ codes (one for a photo, a video's
    frames), nearest first, one per upload."""
    found = await asyncio.to_thread(state.ring.search, codes_from_hex(codes), distance)
    nearest = {}  # a video's frames hit once per frame: one hit per upload, its nearest
    for h in sorted(found, key=lambda h: (h.distance, -h.hashed_at)):
        nearest.setdefault((h.partition, h.offset), h)
    return list(nearest.values())


async def uploads_of(state: ApiState, hits: list[Any]) -> list[dict[str, Any]]:
    """Ring hits with their hma.hashes records' fields (read at their positions, not scanned)."""
    records = await asyncio.to_thread(read_at, state.settings, T.HASHES, [(h.partition, h.offset) for h in hits])
    out = []
    for h in hits:
        record = records.get((h.partition, h.offset), {})
        out.append({"content_id": h.content_id, "distance": h.distance, "uploaded_at": h.hashed_at,
                    "content_type": record.get("content_type"), "metadata": record.get("metadata", {})})
    return out


async def similar_uploads(state: ApiState, codes: list[str], distance: int, limit: int) -> list[dict[str, Any]]:
    """The `limit` recent uploads nearest a signal, with their records' fields."""
    return await uploads_of(state, (await similar_hits(state, codes, distance))[:limit])


async def recent_clusters(state: ApiState, window: str, distance: int, min_size: int) -> list[dict[str, Any]]:
    """Clusters of the uploads of the last `window` (30m, 1h, 2d), largest first."""
    try:
        since = now_ms() - parse_duration_ms(window)
    except ValueError:
        raise ApiError(400, "window must look like 30m, 1h or 2d") from None
    ids, times, codes = state.ring.since(since)
    return await asyncio.to_thread(clusters, ids, times, codes, distance, min_size)


def routes(state: ApiState) -> list[Route]:
    async def similar(request: web.Request) -> web.Response:
        kind = query(request, "signal_type")
        value = checked_signal(kind, query(request, "signal"))
        codes = SIGNAL_TYPES[kind].recent_codes(value)
        if not codes:
            raise ApiError(400, f"recent similarity is not kept for signal_type={kind} (it has no PDQ codes)")
        distance = int_param(request, "distance", 31, 0, 256)
        limit = int_param(request, "limit", 100, 1, 10_000)
        return reply(await similar_uploads(state, codes, distance, limit))

    async def clusters_get(request: web.Request) -> web.Response:
        distance = int_param(request, "distance", CLUSTER_DISTANCE, 0, 31)
        min_size = int_param(request, "min_size", 2, 1, 10**9)
        return reply(await recent_clusters(state, request.query.get("window", "1h"), distance, min_size))

    return [
        Route("GET", "/recent/similar", similar, "Recent uploads near a hash, with their times", "Recent",
              params=("signal_type", "signal", "distance", "limit"), rate=LOOKUP),
        Route("GET", "/recent/clusters", clusters_get, "Clusters of recent near-duplicates, largest first",
              "Recent", params=("window", "distance", "min_size")),
    ]
