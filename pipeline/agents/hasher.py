"""hasher: hma.uploads -> hma.hashes (one record per upload) or hma.dead-letters.

Content is fetched on threads and hashed in worker processes, a batch at a time, so both cores
hash while the event loop keeps consuming. Records are written in input order.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, NamedTuple

import faust

from connectors.fetch import FetchError, fetch_url
from pipeline import event_ids, metrics
from pipeline import topics as T
from pipeline.clock import now_ms
from pipeline.hashing import URL_CONTENT, HashingError, hash_content
from pipeline.services.events import position
from pipeline.services.worker import WorkerServices
from pipeline.uploads import InvalidUpload, decode_content_b64, parse_upload

log = logging.getLogger(__name__)
STAGE = "hasher"


class Rejected(NamedTuple):
    """Why an upload becomes a dead letter: `kind` for the metric (invalid_upload, fetch_failed,
    hashing_failed, unexpected), `reason` for the record."""

    kind: str
    reason: str


def hashes_record(upload: dict[str, Any], signals: dict[str, dict[str, Any]], source: str) -> dict[str, Any]:
    return {
        "content_id": upload["content_id"],
        "content_type": upload["content_type"],
        "signals": signals,
        "source": source,
        "metadata": upload["metadata"],
        "submitted_at": upload["submitted_at"],
        "hashed_at": now_ms(),
    }


def prehashed_record(upload: dict[str, Any]) -> dict[str, Any]:
    """The hma.hashes record of an upload that brought its signals: no fetching, no hashing."""
    return hashes_record(upload, {name: {"value": value, "quality": None} for name, value in upload["signals"].items()},
                         "signals")


async def hash_upload(services: WorkerServices, upload: dict[str, Any]) -> dict[str, Any]:
    """The hma.hashes record of one checked upload; raises InvalidUpload, FetchError or HashingError."""
    if upload["signals"] is not None:
        return prehashed_record(upload)
    loop = asyncio.get_running_loop()
    if upload["url"] is not None and upload["content_type"] == URL_CONTENT:
        data, source = upload["url"].encode(), "url"  # the address is the content: never fetched
    elif upload["url"] is not None:
        data = await loop.run_in_executor(services.pools.fetch, fetch_url, upload["url"], services.settings)
        source = "url"
    else:
        data = decode_content_b64(upload["content_b64"])
        source = "inline"
        cap = services.settings.fetch_max_bytes
        if len(data) > cap:
            raise InvalidUpload(f"content of {len(data)} bytes is over the size cap of {cap} bytes")
    hashed, seconds = await loop.run_in_executor(services.pools.hash, metrics.timed, hash_content,
                                                 upload["content_type"], data)
    metrics.HASH_SECONDS.labels(upload["content_type"]).observe(seconds)
    return hashes_record(upload, {name: {"value": sv.value, "quality": sv.quality} for name, sv in hashed.items()}, source)


async def _hash_or_reason(services: WorkerServices, event: faust.EventT,
                          upload: dict[str, Any]) -> dict[str, Any] | Rejected:
    """The hashes record of an upload with content, or why the upload is a dead letter."""
    try:
        return await hash_upload(services, upload)
    except InvalidUpload as exc:
        return Rejected("invalid_upload", str(exc))
    except FetchError as exc:
        metrics.FETCH_ERRORS.labels(exc.reason).inc()
        return Rejected("fetch_failed", str(exc))
    except HashingError as exc:
        return Rejected("hashing_failed", str(exc))
    except Exception as exc:  # an upload must never stop the agent
        return _unexpected(event, exc)


def _unexpected(event: faust.EventT, exc: Exception) -> Rejected:
    log.exception("unexpected hashing failure", extra={"offset": event.message.offset})
    return Rejected("unexpected", f"unexpected error: {type(exc).__name__}: {exc}")


async def hash_batch(services: WorkerServices, events: list[faust.EventT]) -> list[dict[str, Any] | Rejected]:
    """Hashes records, or dead-letter reasons, in input order. Pre-hashed uploads are done at once;
    only uploads with content to fetch or hash wait on the pools (together)."""
    results: list[dict[str, Any] | Rejected] = []
    slow: list[tuple[int, faust.EventT, dict[str, Any]]] = []
    for i, event in enumerate(events):
        try:
            upload = parse_upload(event.value)
        except InvalidUpload as exc:
            results.append(Rejected("invalid_upload", str(exc)))
            continue
        except Exception as exc:  # an upload must never stop the agent
            results.append(_unexpected(event, exc))
            continue
        if upload["signals"] is not None:
            results.append(prehashed_record(upload))
        else:
            results.append(Rejected("unexpected", "not hashed"))  # replaced below
            slow.append((i, event, upload))
    if slow:
        done = await asyncio.gather(*(_hash_or_reason(services, e, u) for _, e, u in slow))
        for (i, _, _), result in zip(slow, done):
            results[i] = result
    return results


def register(app: faust.App, services: WorkerServices) -> None:
    batch = 64  # precomputed signals need no hashing; content waits for the pool's processes

    @app.agent(services.topic(T.UPLOADS), name=f"{app.conf.id}.hasher")
    async def hasher(stream: faust.StreamT) -> None:
        async for events in services.delivery.batches(stream, batch, 0.2):
            metrics.took_batch(STAGE, T.UPLOADS.suffix, len(events))
            results = await hash_batch(services, events)
            for event, result in zip(events, results):
                if isinstance(result, Rejected):
                    await services.output.send_dead_letter(event.message, result.reason, STAGE, result.kind)
                else:
                    result["event_id"] = event_ids.hashed_upload(position(event), result)
            await services.output.send_many(T.HASHES, [(event.message.key, result)
                                                       for event, result in zip(events, results)
                                                       if not isinstance(result, Rejected)], STAGE)
