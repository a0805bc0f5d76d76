"""The bank view of a process: hma.banks, hma.bank-signals, hma.quarantine and hma.config
followed into a BankView, restored from and saved to a local snapshot (the worker), with its
readiness and staleness.

Other topics can be followed on the same reader (`listeners`, e.g. the API's feedback tallies),
so that one set of positions says how far the process has read.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from pipeline import topics as T
from pipeline.config import Settings
from pipeline.state.bank_view import BankView
from pipeline.state.log_reader import ApplyBatch, Change, CompactedTopicFollower, StalePositions
from pipeline.state.snapshot import export_snapshot, read_snapshot, write_snapshot

log = logging.getLogger(__name__)
VIEW_STATS_EVERY_S = 60


class BankViewService:
    def __init__(self, settings: Settings, view: BankView, name: str, snapshot_path: Path | None = None,
                 listeners: Mapping[T.TopicSpec, ApplyBatch] | None = None, log_stats: bool = False,
                 loaded_at: Mapping[str, int] | None = None) -> None:
        """`snapshot_path`: where the view is saved every HMAS_VIEW_SNAPSHOT_INTERVAL_S (None: never).
        `listeners`: also given the records of a topic, after the view applied them (if it follows it).
        `loaded_at`: the view already holds the view topics up to these positions (a view loaded
        by a parent process before it forked): follow on from there, read no snapshot."""
        self.settings = settings
        self.view = view
        self.loaded_at = dict(loaded_at) if loaded_at is not None else None
        self.name = name
        self.snapshot_path = snapshot_path if settings.view_snapshot_interval_s > 0 else None
        self.listeners = dict(listeners or {})
        self.log_stats = log_stats
        self.follower: CompactedTopicFollower | None = None
        self.behind_since: float | None = None  # monotonic time since the view is behind the topics' ends
        self._snapshot_positions: dict[str, int] = {}  # of the newest snapshot
        self._start_lock = asyncio.Lock()
        self._tasks: list[asyncio.Task] = []

    @property
    def topics(self) -> tuple[T.TopicSpec, ...]:
        return T.VIEW_TOPICS + tuple(spec for spec in self.listeners if spec not in T.VIEW_TOPICS)

    async def start(self) -> None:
        """Start following (from the snapshot when there is one); idempotent."""
        async with self._start_lock:
            if self.follower is not None:
                return
            self.follower = await self._start_follower()
            if self.snapshot_path is not None:
                self._tasks.append(asyncio.create_task(self._keep_snapshots(), name=f"{self.name}-snapshots"))
            if self.log_stats:
                self._tasks.append(asyncio.create_task(self._log_stats(), name=f"{self.name}-stats"))

    async def ready(self) -> BankView:
        """The view, once it has read the topics up to the ends they had at start (starting it if needed)."""
        await self.start()
        assert self.follower is not None
        await self.follower.ready.wait()
        return self.view

    @property
    def is_ready(self) -> bool:
        return self.follower is not None and self.follower.ready.is_set()

    @property
    def positions(self) -> dict[str, int]:
        """Records read, per topic name (summed over partitions)."""
        return {} if self.follower is None else self.follower.positions

    async def end_offsets(self) -> dict[str, int]:
        assert self.follower is not None
        return await self.follower.end_offsets()

    def start_stale_watch(self, every_s: float = 5.0) -> None:
        """Track how long the view has been behind the topics' ends (`stale`)."""
        self._tasks.append(asyncio.create_task(self._watch_staleness(every_s), name=f"{self.name}-staleness"))

    async def _watch_staleness(self, every_s: float) -> None:
        while True:
            await asyncio.sleep(every_s)
            try:
                assert self.follower is not None
                behind = await self.follower.behind()
            except Exception:  # a broker hiccup: keep the previous verdict
                continue
            if not behind:
                self.behind_since = None
            elif self.behind_since is None:
                self.behind_since = time.monotonic()

    @property
    def stale(self) -> bool:
        """Behind the topics' ends for longer than HMAS_INDEX_STALE_S."""
        return self.behind_since is not None and time.monotonic() - self.behind_since > self.settings.index_stale_s

    def _apply(self, spec: T.TopicSpec, changes: list[Change]) -> None:
        if spec in T.VIEW_TOPICS:
            self.view.apply(spec, changes)
        listener = self.listeners.get(spec)
        if listener is not None:
            listener(spec, changes)

    # -- snapshots -------------------------------------------------------------------------------
    @property
    def _view_topics(self) -> dict[str, str]:
        return {spec.suffix: spec.name(self.settings) for spec in T.VIEW_TOPICS}

    async def _start_follower(self) -> CompactedTopicFollower:
        started = time.monotonic()
        positions = self.loaded_at
        if positions is None and self.snapshot_path is not None:
            snap = await asyncio.to_thread(read_snapshot, self.snapshot_path, self.settings, self._view_topics)
            if snap is not None:
                await asyncio.to_thread(self.view.load, snap.arrays, snap.meta)
                log.info("bank view loaded from snapshot", extra={
                    "signals": self.view.signal_count(), "seconds": round(time.monotonic() - started, 1),
                    "age_s": round(time.time() - snap.created_at), "positions": snap.positions})
                positions = snap.positions
        if positions is not None:
            # a view loaded by another process: the snapshot it came from may be behind, save once caught up
            self._snapshot_positions = dict(positions) if self.loaded_at is None else {}
            follower = CompactedTopicFollower(self.settings, self.topics, self._apply, name=self.name,
                                              start_positions=positions)
            try:
                await follower.start()
                return follower
            except StalePositions as exc:
                log.warning("view snapshot does not fit the topics; reading them from the start",
                            extra={"reason": str(exc)})
                self.view.load(*BankView(shard=self.view.shard).export())
                self._snapshot_positions = {}
        follower = CompactedTopicFollower(self.settings, self.topics, self._apply, name=self.name)
        await follower.start()
        return follower

    async def _keep_snapshots(self) -> None:
        """Save the view once caught up (when the saved one is behind), then every interval."""
        await self.ready()
        while True:
            await self.save_snapshot()
            await asyncio.sleep(self.settings.view_snapshot_interval_s)

    async def _log_stats(self) -> None:
        """Once a minute, the view's sizes: rows that should follow the signals, under churn too."""
        await self.ready()
        while True:
            log.info("bank view", extra=self.view.stats())
            await asyncio.sleep(VIEW_STATS_EVERY_S)

    async def save_snapshot(self) -> None:
        """Write a snapshot if the view moved since the last one (a copy here, the writing on a thread)."""
        follower = self.follower
        if (self.snapshot_path is None or follower is None or not follower.ready.is_set()
                or follower.positions == self._snapshot_positions):
            return
        started = time.monotonic()
        snap = export_snapshot(self.view, follower.positions)
        await asyncio.to_thread(write_snapshot, snap, self.snapshot_path, self.settings, self._view_topics)
        self._snapshot_positions = snap.positions
        log.info("bank view snapshot saved", extra={
            "signals": self.view.signal_count(), "seconds": round(time.monotonic() - started, 1),
            "path": str(self.snapshot_path)})

    async def stop(self, save: bool = True) -> None:
        """Stop following; the view is saved first if it has a snapshot path and `save` (a failed
        save does not stop the shutdown)."""
        for task in self._tasks:
            task.cancel()
        if self.follower is None:
            return
        if save:
            try:
                await self.save_snapshot()
            except Exception:
                log.exception("view snapshot not saved at shutdown")
        await self.follower.stop()


@dataclass(frozen=True)
class LoadedView:
    """A bank view that holds the view topics up to `positions`, nothing following it."""

    view: BankView
    positions: dict[str, int]


async def load_view(settings: Settings, snapshot_path: Path | None) -> LoadedView:
    """A view caught up with the topics (from the snapshot, then the tail), its reader stopped,
    no thread of its own left: for processes forked to share it (the first of them saves it)."""
    service = BankViewService(settings, BankView(), "view-loader", snapshot_path=snapshot_path)
    await service.ready()
    await service.stop(save=False)
    service.view.settle()
    return LoadedView(service.view, dict(service.positions))
