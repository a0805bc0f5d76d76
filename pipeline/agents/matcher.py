"""matcher: hma.hashes -> hma.matches, one record per hashed upload (also when nothing matched),
and hma.actions for the uploads with effective matches.

Replica mode (HMAS_INDEX_SHARDS=1): this worker holds every bank signal, so it looks up and
guards in one step. Effective hits are also written to hma.flood-hits, keyed by signal id, for
flood counting. Micro-batches from the stream are looked up together: one index search per
signal type. Actions are written with the match records that cause them, from the same judged
records and view, rather than by another agent reading hma.matches back: that would cost every
upload a second delivery and decode of its largest record.
"""

from __future__ import annotations

import logging
from typing import Any

import faust

from pipeline import event_ids, metrics
from pipeline import topics as T
from pipeline.flood import LocalFloodGuard
from pipeline.guard import MATCH, QUARANTINED, Hit
from pipeline.matching import actions_for, judge_batch, lookup_batch_on
from pipeline.services.events import position
from pipeline.services.worker import WorkerServices
from pipeline.state.bank_view import BankView

log = logging.getLogger(__name__)
STAGE = "matcher"
BATCH, BATCH_WITHIN_S = 256, 0.05


def counts_toward_flood(hit: dict, view: BankView) -> bool:
    """Hits that pass, and hits this matcher stopped itself while no quarantine record exists yet."""
    if hit["status"] == MATCH:
        return True
    q = view.quarantine.get(hit["signal_id"])
    return hit["status"] == QUARANTINED and (q is None or q["state"] == "released")


def new_flood_guard(services: WorkerServices) -> LocalFloodGuard:
    s = services.settings
    return LocalFloodGuard(s.flood_epsilon, s.flood_delta, s.flood_bucket_ms)


async def lookup(services: WorkerServices, hashed: list[dict[str, Any]],
                 view: BankView) -> tuple[list[dict], list[list[Hit]]]:
    """lookup_batch, with the index searches on the worker's index thread."""
    return await lookup_batch_on(services.pools.index, hashed, view, services.settings)


async def emit_matches(services: WorkerServices, judged: list[tuple[bytes | None, dict[str, Any]]], view: BankView,
                       stage: str) -> None:
    """Write judged match records, their actions, and their effective hits re-keyed by signal for
    flood counting."""
    flood_hits, actions = [], []
    for key, record in judged:
        actions += [(key, action) for action in actions_for(record, view)]
        if record["submitted_at"]:
            metrics.UPLOAD_TO_MATCH.observe(max(0, record["matched_at"] - record["submitted_at"]) / 1000)
        for hit in record["matches"]:
            metrics.HITS.labels(hit["status"]).inc()
            if counts_toward_flood(hit, view):
                flood_hits.append((hit["signal_id"], {
                    "signal_id": hit["signal_id"], "bank": hit["bank"],
                    "content_id": record["content_id"], "matched_at": record["matched_at"],
                    "event_id": event_ids.flood_hit(record.get("event_id"), hit["signal_id"]),
                }))
    metrics.count_actions(action for _, action in actions)
    await services.output.send_many(T.MATCHES, judged, stage)
    await services.output.send_many(T.ACTIONS, actions, stage)
    await services.output.send_many(T.FLOOD_HITS, flood_hits, stage)


def register(app: faust.App, services: WorkerServices) -> None:
    @app.agent(services.topic(T.HASHES), name=f"{app.conf.id}.matcher")
    async def matcher(stream: faust.StreamT) -> None:
        view = await services.bank_view.ready()
        flood_guard = new_flood_guard(services)
        async for events in services.delivery.batches(stream, BATCH, BATCH_WITHIN_S):
            good, hashed = await services.events.decode_batch(events, T.HASHES, STAGE)
            records, hits = await lookup(services, hashed, view)
            for event, upload, record in zip(good, hashed, records):
                record["event_id"] = event_ids.match(upload, position(event))
            judged = judge_batch(records, hits, view, flood_guard)
            keyed = [(event.message.key, record) for event, record in zip(good, judged)]
            await emit_matches(services, keyed, view, STAGE)
