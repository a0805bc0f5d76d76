"""matcher: hma.hashes -> hma.matches, one record per hashed upload (also when nothing matched).

Effective hits are also written to hma.flood-hits, keyed by signal id, for flood counting.

Micro-batches from the stream are looked up together: one index search per signal type.
"""

from __future__ import annotations

import logging

import faust

from pipeline import metrics
from pipeline import topics as T
from pipeline.app import PipelineContext
from pipeline.flood import LocalFloodGuard
from pipeline.guard import MATCH, QUARANTINED
from pipeline.state.bank_view import BankView
from pipeline.matching import match_batch
from schemas.codec import DecodeError

log = logging.getLogger(__name__)
STAGE = "matcher"


def counts_toward_flood(hit: dict, view: BankView) -> bool:
    """Hits that pass, and hits this matcher stopped itself while no quarantine record exists yet."""
    if hit["status"] == MATCH:
        return True
    q = view.quarantine.get(hit["signal_id"])
    return hit["status"] == QUARANTINED and (q is None or q["state"] == "released")


def register(app: faust.App, ctx: PipelineContext) -> None:
    @app.agent(ctx.topic(T.HASHES), name=f"{app.conf.id}.matcher")
    async def matcher(stream: faust.StreamT) -> None:
        view = await ctx.bank_view()
        s = ctx.settings
        flood_guard = LocalFloodGuard(s.flood_epsilon, s.flood_delta, s.flood_bucket_ms)
        async for events in stream.take_events(256, within=0.05):
            good, hashed = [], []
            metrics.RECORDS_IN.labels(STAGE).inc(len(events))
            for event in events:
                try:
                    hashed.append(T.HASHES.codec.decode(event.value))
                    good.append(event)
                except DecodeError as exc:
                    await ctx.send_dead_letter(event, str(exc), STAGE)
            for event, record in zip(good, match_batch(hashed, view, ctx.settings, flood_guard)):
                await ctx.send(T.MATCHES, event.message.key, record, STAGE)
                if record["submitted_at"]:
                    metrics.UPLOAD_TO_MATCH.observe(max(0, record["matched_at"] - record["submitted_at"]) / 1000)
                for hit in record["matches"]:
                    metrics.HITS.labels(hit["status"]).inc()
                    if counts_toward_flood(hit, view):
                        await ctx.send(T.FLOOD_HITS, hit["signal_id"], {
                            "signal_id": hit["signal_id"], "bank": hit["bank"],
                            "content_id": record["content_id"], "matched_at": record["matched_at"],
                        }, STAGE)
