"""merger: hma.shard-hits -> hma.matches in shard mode; joins the S shards' answers, then guards.

hma.shard-hits is keyed by content id like hma.hashes, with as many partitions, so the partials
of one hashed upload (named by its hma.hashes partition and offset) reach one merger, in the
partition's order. Partials wait in a Faust table (RocksDB + changelog) until every shard has
answered, so a restart loses none, and a shard that is down holds its uploads back rather than
letting them through half-matched. A shard worker that restarts re-sends partials from its
last commit: per (partition, shard), partials at or below the highest offset already taken are
duplicates and are dropped.
"""

from __future__ import annotations

import logging

import faust

from pipeline import event_ids
from pipeline import topics as T
from pipeline.agents.matcher import BATCH, BATCH_WITHIN_S, emit_matches, new_flood_guard
from pipeline.matching import empty_match_record, hits_from_candidates, judge_batch
from pipeline.services.worker import WorkerServices
from pipeline.shard_join import JoinedBatch, Partial, ShardJoin, source_of
from pipeline.state.tables import state_table, writes_to_partition_of

log = logging.getLogger(__name__)
STAGE = "merger"


def merged_record(parts: list[Partial], hashes_topic: str) -> dict:
    """The match record of an upload every shard answered, before the guard (no hits yet)."""
    first = parts[0]
    record = empty_match_record(first["upload"])
    record["event_id"] = event_ids.match(first["upload"], (hashes_topic, first["hashes_partition"], first["hashes_offset"]))
    for partial in parts:
        record["skipped"].update(partial["skipped"])
    return record


def join_by_partition(join: ShardJoin, events: list[faust.EventT], parts: list[Partial]) -> JoinedBatch:
    """Join a batch one partition at a time: Faust writes a table key to the changelog partition
    of the current event, so each partition's waiting partials are written under one of its own."""
    groups: dict[int, list[int]] = {}
    for i, event in enumerate(events):
        groups.setdefault(event.message.partition, []).append(i)
    out = JoinedBatch()
    for members in groups.values():
        with writes_to_partition_of(events[members[-1]]):
            joined = join.join([parts[i] for i in members])
        out.complete += [(members[i], uploads) for i, uploads in joined.complete]
        out.mismatched += [members[i] for i in joined.mismatched]
        out.duplicates += [members[i] for i in joined.duplicates]
    return out


def register(app: faust.App, services: WorkerServices) -> None:
    s = services.settings
    pending = state_table(app, "shard-merge", partitions=s.topic_partitions)  # "p:offset" -> {shard: partial}
    taken = state_table(app, "shard-taken", default=lambda: -1, partitions=s.topic_partitions)  # "p:shard" -> offset
    join = ShardJoin(s.index_shards, pending, taken)

    @app.agent(services.topic(T.SHARD_HITS), name=f"{app.conf.id}.merger")
    async def merger(stream: faust.StreamT) -> None:
        view = await services.bank_view.ready()
        flood_guard = new_flood_guard(services)
        async for events in stream.take_events(BATCH, within=BATCH_WITHIN_S):
            good, parts = await services.events.decode_batch(events, T.SHARD_HITS, STAGE)
            joined = join_by_partition(join, good, parts)
            for i in joined.mismatched:
                part = parts[i]
                await services.output.send_dead_letter(good[i].message, (
                    f"partial of shard {part['shard']} of {part['shards']}, but this merger joins "
                    f"{s.index_shards} shards (HMAS_INDEX_SHARDS)"), STAGE, "shard_mismatch")
            for i in joined.duplicates:
                log.info("duplicate shard partial dropped", extra={"source": source_of(parts[i]), "shard": parts[i]["shard"]})
            if not joined.complete:
                continue
            records = [merged_record(uploads, T.HASHES.name(s)) for _, uploads in joined.complete]
            hits = [hits_from_candidates([c for partial in uploads for c in partial["candidates"]], view)
                    for _, uploads in joined.complete]
            judge_batch(records, hits, view, flood_guard)
            keyed = [(good[i].message.key, record) for (i, _), record in zip(joined.complete, records)]
            await emit_matches(services, keyed, view, STAGE)
