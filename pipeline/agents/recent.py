"""recent: keeps the ring of recent hashes and writes retroactive matches when signals are banked.

The ring is filled from hma.hashes by a RecentFeed (all partitions, from the horizon on), so a
restarted worker refills it from the log alone. Run it on one worker
(HMAS_RECENT_ENABLED=0 on the others): each ring holds every recent upload.
Searches for a batch of new signals run in a thread, so an exchange sync of thousands of signals
does not stall the live agents.
"""

from __future__ import annotations

import asyncio
import logging

import faust

from pipeline import topics as T
from pipeline.recent.feed import RecentFeed
from pipeline.recent.retro import retro_matches
from pipeline.recent.ring import RecentRing
from pipeline.services.worker import WorkerServices
from pipeline.state.bank_view import BankEntry

log = logging.getLogger(__name__)
STAGE = "recent"
CATCH_UP_S = 30.0  # how long a search for new signals waits for the ring to read the hashes written before them


def register(app: faust.App, services: WorkerServices) -> None:
    s = services.settings
    if not s.recent_enabled:
        return
    ring = RecentRing(s.recent_horizon_ms, s.recent_cap, s.recent_bucket_ms)
    pending: asyncio.Queue[list[BankEntry]] = asyncio.Queue()

    @app.task
    async def recent() -> None:
        view = await services.bank_view.ready()
        view.on_new_signals = pending.put_nowait
        feed = RecentFeed(s, ring)
        await feed.start()
        try:
            while True:
                await feed.poll()
                new: list[BankEntry] = []
                while not pending.empty():
                    new += pending.get_nowait()
                if new:
                    if not await feed.catch_up(CATCH_UP_S):
                        log.warning("retroactive search before the ring read every earlier hash",
                                    extra={"signals": len(new), "waited_s": CATCH_UP_S})
                    found = await asyncio.to_thread(retro_matches, ring, new, view, s)
                    async with services.delivery.unit():
                        for record in found:
                            await services.output.send(T.RETRO_MATCHES, record["content_id"], record, STAGE)
                    log.info("retroactive search", extra={"signals": len(new), "matches": len(found), "ring": ring.size})
        finally:
            await feed.stop()
