"""shard matcher: hma.hashes -> hma.shard-hits, this shard's candidates for every hashed upload.

Runs in a shard worker (`hmas worker --shard K`), whose Faust app has its own consumer group, so
every shard reads every hashed upload. Its bank view holds only shard K's signals; the guard runs
later, in the merger, once all shards have answered. Shard 0 alone dead-letters records that do
not decode (every shard sees them).
"""

from __future__ import annotations

import faust

from pipeline import topics as T
from pipeline.agents.matcher import BATCH, BATCH_WITHIN_S, lookup
from pipeline.clock import now_ms
from pipeline.matching import candidate_record
from pipeline.services.worker import WorkerServices

STAGE = "shard-matcher"


def register(app: faust.App, services: WorkerServices) -> None:
    shard = services.settings.shard
    assert shard is not None, "the shard matcher runs in shard workers only"

    @app.agent(services.topic(T.HASHES), name=f"{app.conf.id}.shard-matcher")
    async def shard_matcher(stream: faust.StreamT) -> None:
        view = await services.bank_view.ready()
        async for events in services.delivery.batches(stream, BATCH, BATCH_WITHIN_S):
            good, hashed = await services.events.decode_batch(events, T.HASHES, STAGE, dead_letters=shard.index == 0)
            records, hits = await lookup(services, hashed, view)
            await services.output.send_many(T.SHARD_HITS, [(event.message.key, {
                "shard": shard.index, "shards": shard.count,
                "hashes_partition": event.message.partition, "hashes_offset": event.message.offset,
                "upload": upload, "skipped": record["skipped"],
                "candidates": [candidate_record(hit) for hit in upload_hits],
                "looked_up_at": now_ms(),
            }) for event, upload, record, upload_hits in zip(good, hashed, records, hits)], STAGE)
