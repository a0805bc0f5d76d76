"""flood: counts effective matches per signal (hma.flood-hits, keyed by signal id) and writes
hma.quarantine when a signal floods.

Each hit is counted once: a hit written again (a matcher or this agent processing its input again
after a crash) has the event id of the first copy, and the ids counted within the replay horizon
are kept in a table next to the counts (pipeline/state/seen_events.py). In exactly-once mode a
hit comes once (read committed) and the counts are the committed ones (the tables are restored
from their changelogs, written in the worker's transactions): the table stays, unused.

Between the count crossing a limit and the guards reading the quarantine record back, hits
already in flight still pass: that window is what the flood test measures (docs in README).
"""

from __future__ import annotations

import logging

import faust

from pipeline import metrics
from pipeline import topics as T
from pipeline.clock import now_ms
from pipeline.flood import FloodDetector
from pipeline.matching import released_at
from pipeline.services.delivery import EXACTLY_ONCE
from pipeline.services.worker import WorkerServices
from pipeline.state.count_min import CountMinSketch
from pipeline.state.faust_cells import FaustTableCellStore, in_partition_of
from pipeline.state.seen_events import SeenEvents
from pipeline.state.tables import state_table

log = logging.getLogger(__name__)
STAGE = "flood"
DEFAULT_HORIZON_MS = 3_600_000


def register(app: faust.App, services: WorkerServices) -> None:
    s = services.settings
    cells = state_table(app, "flood-cells", partitions=s.topic_partitions,  # chunk key -> counts (FaustTableCellStore)
                        key_type=str, value_type=bytes)  # bytes values: Faust stores them raw
    store = FaustTableCellStore(cells)
    # At least once, a hit can come twice (same event id); exactly once, it comes once and the
    # counts are the committed ones: nothing to remember. The table exists in both modes all the
    # same, so that switching the guarantee leaves the worker's subscriptions as they were (a static
    # member rejoining with other topics than its old assignment's never consumes).
    seen_table = state_table(app, "flood-seen", partitions=s.topic_partitions,  # "p:event id" -> bucket
                             key_type=str, value_type=bytes)
    seen = None if services.delivery.guarantee == EXACTLY_ONCE else SeenEvents(seen_table)
    detector = FloodDetector(
        CountMinSketch(store, s.flood_epsilon, s.flood_delta),
        bucket_ms=s.flood_bucket_ms, baseline_windows=s.flood_baseline_windows,
    )
    quarantined_at: dict[str, int] = {}  # signals this agent quarantined, until the view shows it
    last_cleanup: dict[int, int] = {}  # partition -> bucket when old buckets were last dropped

    def already_handled(sid: str) -> bool:
        q = services.view.quarantine.get(sid)
        if q is not None and q["state"] in ("quarantined", "disabled"):
            return True
        ours = quarantined_at.get(sid)
        return ours is not None and (q is None or q["changed_at"] <= ours)

    async def count(event: faust.EventT, hit: dict) -> None:
        view = services.view
        sid = hit["signal_id"]
        if seen is not None and not seen.first_time(hit["event_id"], detector.bucket(now_ms())):
            metrics.FLOOD_REPLAYED_HITS.inc()
            return
        bank = view.banks.get(hit["bank"])
        limit = bank["flood"] if bank is not None else None
        handled = already_handled(sid)
        allowance = 0
        if limit is not None:
            allowance = detector.allowance(sid, released_at(view, sid), hit["matched_at"], limit["window_ms"])
        verdict = detector.observe(sid, hit["content_id"], hit["matched_at"], None if handled else limit, allowance)
        if verdict is not None:
            stamp = now_ms()
            quarantined_at[sid] = stamp
            log.warning("signal quarantined", extra={"signal_id": sid, "count": verdict.count, "bank": hit["bank"]})
            metrics.QUARANTINES.inc()
            await services.output.send(T.QUARANTINE, sid, {
                "signal_id": sid, "state": "quarantined", "count": verdict.count,
                "window_ms": verdict.window_ms, "sample_content_ids": verdict.sample_content_ids,
                "changed_at": stamp,
            }, STAGE)

    @app.agent(services.topic(T.FLOOD_HITS), name=f"{app.conf.id}.flood")
    async def flood(stream: faust.StreamT) -> None:
        view = await services.bank_view.ready()
        async for events in services.delivery.batches(stream, 512, 0.1):
            by_partition: dict[int, list[faust.EventT]] = {}
            for event in events:
                by_partition.setdefault(event.message.partition, []).append(event)
            for group in by_partition.values():
                with in_partition_of(group[-1], store):
                    if seen is not None:
                        seen.partition = store.partition
                    good, hits = await services.events.decode_batch(group, T.FLOOD_HITS, STAGE)
                    for event, hit in zip(good, hits):
                        await count(event, hit)
                    store.flush()
                    _drop_old_buckets(group[-1], detector, seen, s.flood_replay_horizon_ms, view, last_cleanup)


def _drop_old_buckets(event: faust.EventT, detector: FloodDetector, seen: SeenEvents | None, replay_horizon_ms: int, view,
                      last_cleanup: dict[int, int]) -> None:
    """Once a bucket per partition: drop counts older than any window reaches, and hit ids older
    than the replay horizon."""
    partition = event.message.partition
    current = detector.bucket(now_ms())
    if last_cleanup.get(partition) == current:
        return
    last_cleanup[partition] = current
    longest = max((b["flood"]["window_ms"] for b in view.banks.values() if b.get("flood")), default=DEFAULT_HORIZON_MS)
    dropped = detector.sketch.store.drop_buckets_before(detector.horizon_start_bucket(now_ms(), longest))
    forgotten = 0 if seen is None else seen.drop_before(detector.bucket(now_ms() - replay_horizon_ms))
    if dropped or forgotten:
        log.info("dropped old flood buckets", extra={"partition": partition, "cells": dropped, "hit_ids": forgotten})
