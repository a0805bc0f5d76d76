"""recent: keeps the ring of recent hashes and writes retroactive matches when signals are banked.

The ring reads hma.hashes itself, all partitions, from `recent_horizon_ms` ago (offsets for that
time), so a restarted worker refills it from the log alone. Run it on one worker
(HMAS_RECENT_ENABLED=0 on the others): each ring holds every recent upload.
Searches for a batch of new signals run in a thread, so an exchange sync of thousands of signals
does not stall the live agents.
"""

from __future__ import annotations

import asyncio
import logging
import time

import faust
from aiokafka import AIOKafkaConsumer, TopicPartition

from pipeline import topics as T
from pipeline.app import PipelineContext
from pipeline.recent.retro import retro_matches
from pipeline.recent.ring import RecentRing
from pipeline.state.bank_view import BankEntry
from pipeline.state.log_reader import topic_partitions
from schemas.codec import DecodeError

log = logging.getLogger(__name__)
STAGE = "recent"


def register(app: faust.App, ctx: PipelineContext) -> None:
    s = ctx.settings
    if not s.recent_enabled:
        return
    ring = RecentRing(s.recent_horizon_ms, s.recent_cap, s.recent_bucket_ms)
    pending: asyncio.Queue[list[BankEntry]] = asyncio.Queue()

    @app.task
    async def recent() -> None:
        view = await ctx.bank_view()
        view.on_new_signals = pending.put_nowait
        consumer = await _hashes_consumer(ctx)
        try:
            while True:
                batches = await consumer.getmany(timeout_ms=100, max_records=5000)
                for records in batches.values():
                    for r in records:
                        try:
                            ring.add(T.HASHES.codec.decode(r.value))
                        except DecodeError:
                            continue  # the matcher dead-letters it
                ring.evict(int(time.time() * 1000))
                new: list[BankEntry] = []
                while not pending.empty():
                    new += pending.get_nowait()
                if new:
                    found = await asyncio.to_thread(retro_matches, ring, new, view, s)
                    for record in found:
                        await ctx.send(T.RETRO_MATCHES, record["content_id"], record, STAGE)
                    log.info("retroactive search", extra={"signals": len(new), "matches": len(found), "ring": ring.size})
        finally:
            await consumer.stop()


async def _hashes_consumer(ctx: PipelineContext) -> AIOKafkaConsumer:
    """All partitions of hma.hashes from the ring's horizon on."""
    topic = T.HASHES.name(ctx.settings)
    consumer = AIOKafkaConsumer(bootstrap_servers=ctx.settings.bootstrap_servers, group_id=None,
                                enable_auto_commit=False, auto_offset_reset="earliest", client_id="hmas-recent")
    await consumer.start()
    partitions = [TopicPartition(topic, p) for p in sorted(await asyncio.to_thread(topic_partitions, ctx.settings, topic))]
    consumer.assign(partitions)
    since = int(time.time() * 1000) - ctx.settings.recent_horizon_ms
    offsets = await consumer.offsets_for_times({tp: since for tp in partitions})
    ends = await consumer.end_offsets(partitions)  # explicit: a lazy seek-to-end could skip records
    for tp in partitions:
        consumer.seek(tp, ends[tp] if offsets[tp] is None else offsets[tp].offset)
    return consumer
