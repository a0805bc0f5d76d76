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
from pipeline.agents.matcher import emit_matches, new_flood_guard
from pipeline.matching import empty_match_record, hits_from_candidates, judge_batch
from pipeline.services.worker import WorkerServices
from pipeline.state.tables import state_table

log = logging.getLogger(__name__)
STAGE = "merger"


def register(app: faust.App, services: WorkerServices) -> None:
    s = services.settings
    pending = state_table(app, "shard-merge", partitions=s.topic_partitions)  # "p:offset" -> {shard: partial}
    taken = state_table(app, "shard-taken", default=lambda: -1, partitions=s.topic_partitions)  # "p:shard" -> offset

    @app.agent(services.topic(T.SHARD_HITS), name=f"{app.conf.id}.merger")
    async def merger(stream: faust.StreamT) -> None:
        view = await services.bank_view.ready()
        flood_guard = new_flood_guard(services)
        async for event, part in services.events.records(stream, T.SHARD_HITS, STAGE):
            if part["shards"] != s.index_shards or not 0 <= part["shard"] < s.index_shards:
                await services.output.send_dead_letter(event.message, (
                    f"partial of shard {part['shard']} of {part['shards']}, but this merger joins "
                    f"{s.index_shards} shards (HMAS_INDEX_SHARDS)"), STAGE, "shard_mismatch")
                continue
            source = f"{part['hashes_partition']}:{part['hashes_offset']}"
            mark = f"{part['hashes_partition']}:{part['shard']}"
            if part["hashes_offset"] <= taken[mark]:
                log.info("duplicate shard partial dropped", extra={"source": source, "shard": part["shard"]})
                continue
            taken[mark] = part["hashes_offset"]
            parts = dict(pending.get(source) or {})
            parts[str(part["shard"])] = part
            if len(parts) < s.index_shards:
                pending[source] = parts
                continue
            if source in pending:
                del pending[source]
            record = empty_match_record(part["upload"])
            record["event_id"] = event_ids.match(
                part["upload"], (T.HASHES.name(s), part["hashes_partition"], part["hashes_offset"]))
            for partial in parts.values():
                record["skipped"].update(partial["skipped"])
            candidates = [c for partial in parts.values() for c in partial["candidates"]]
            judge_batch([record], [hits_from_candidates(candidates, view)], view, flood_guard)
            await emit_matches(services, [(event.message.key, record)], view, STAGE)
