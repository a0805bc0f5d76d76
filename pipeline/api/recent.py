"""What is being uploaded now: recent uploads near a hash, and clusters of recent near-duplicates,
from this process's own ring of recent hashes."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from pipeline.api.content import checked_signal
from pipeline.api.http import ApiError, Route, int_param, query, reply
from pipeline import topics as T
from pipeline.api.state import ApiState
from pipeline.clock import now_ms, parse_duration_ms
from pipeline.index.codes import codes_from_hex
from pipeline.recent.clusters import clusters
from pipeline.state.log_reader import read_at

CLUSTER_DISTANCE = 16  # default PDQ distance that joins two recent uploads into a cluster


async def similar_uploads(state: ApiState, value: str, distance: int, limit: int) -> list[dict[str, Any]]:
    """Recent uploads within `distance` of a PDQ hash, nearest first, with their hma.hashes records' fields."""
    hits = await asyncio.to_thread(state.ring.search, codes_from_hex([value]), distance)
    hits = sorted(hits, key=lambda h: (h.distance, -h.hashed_at))[:limit]
    records = await asyncio.to_thread(read_at, state.settings, T.HASHES, [(h.partition, h.offset) for h in hits])
    out = []
    for h in hits:
        record = records.get((h.partition, h.offset), {})
        out.append({"content_id": h.content_id, "distance": h.distance, "uploaded_at": h.hashed_at,
                    "content_type": record.get("content_type"), "metadata": record.get("metadata", {})})
    return out


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
        if kind != "pdq":
            raise ApiError(400, "recent similarity is kept for signal_type=pdq")
        value = checked_signal(kind, query(request, "signal"))
        distance = int_param(request, "distance", 31, 0, 256)
        limit = int_param(request, "limit", 100, 1, 10_000)
        return reply(await similar_uploads(state, value, distance, limit))

    async def clusters_get(request: web.Request) -> web.Response:
        distance = int_param(request, "distance", CLUSTER_DISTANCE, 0, 31)
        min_size = int_param(request, "min_size", 2, 1, 10**9)
        return reply(await recent_clusters(state, request.query.get("window", "1h"), distance, min_size))

    return [
        Route("GET", "/recent/similar", similar, "Recent uploads near a hash, with their times", "Recent",
              params=("signal_type", "signal", "distance", "limit")),
        Route("GET", "/recent/clusters", clusters_get, "Clusters of recent near-duplicates, largest first",
              "Recent", params=("window", "distance", "min_size")),
    ]
