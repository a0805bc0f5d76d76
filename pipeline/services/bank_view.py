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
from typing import Iterable, Mapping

from prometheus_client.core import Metric

from pipeline import metrics
from pipeline import topics as T
from pipeline.config import Settings
from pipeline.state.bank_view import BankView, exported_searchable
from pipeline.state.log_reader import ApplyBatch, Change, CompactedTopicFollower, KeyFilter, StalePositions
from pipeline.signal_types import SIGNAL_TYPES
from pipeline.state.snapshot import export_snapshot, read_snapshot, write_snapshot

log = logging.getLogger(__name__)
VIEW_STATS_EVERY_S = 60
WATCH_EVERY_S = 5.0  # how often the view's lag behind its topics is measured


class BankViewService:
    def __init__(self, settings: Settings, view: BankView, name: str, snapshot_path: Path | None = None,
                 listeners: Mapping[T.TopicSpec, ApplyBatch] | None = None, log_stats: bool = False,
                 loaded: "LoadedView | None" = None, saves: bool = True) -> None:
        """`snapshot_path`: where the view is saved every HMAS_VIEW_SNAPSHOT_INTERVAL_S (None: never).
        `listeners`: also given the records of a topic, after the view applied them (if it follows it).
        `loaded`: the view, loaded by a parent process before it forked, already holds the view
        topics up to its positions: follow on from there, read no snapshot. `saves=False`: the
        snapshot is only read (a parent that loads the view for processes it forks)."""
        self.settings = settings
        self.view = view
        self.loaded = loaded
        self.saves = saves
        self.name = name
        self.snapshot_path = snapshot_path if settings.view_snapshot_interval_s > 0 else None
        self.listeners = dict(listeners or {})
        self.log_stats = log_stats
        self.follower: CompactedTopicFollower | None = None
        self.behind_since: float | None = None  # monotonic time since the view is behind the topics' ends
        self._snapshot_positions: dict[str, int] = {}  # of the newest snapshot
        self._snapshot_current_at: float | None = None  # unix time the snapshot last matched the view
        self.reading = metrics.ViewReading()  # for the metrics, refreshed by the watch
        self._start_lock = asyncio.Lock()
        self._save_lock = asyncio.Lock()  # one save at a time: both would write the same temporary file
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
            self._tasks.append(asyncio.create_task(self._watch(WATCH_EVERY_S), name=f"{self.name}-watch"))
            metrics.STATE.set_source("bank_view", self.metric_families)
            if self.snapshot_path is not None and self.saves:
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

    async def _watch(self, every_s: float) -> None:
        """Measure how far the view is behind the topics' ends (`stale`, the metrics), and its sizes."""
        while True:
            await asyncio.sleep(every_s)
            self.reading.signals = {kind: self.view.signal_count(kind) for kind in SIGNAL_TYPES}
            self.reading.quarantined = sum(1 for q in self.view.quarantine.values() if q["state"] == "quarantined")
            try:
                assert self.follower is not None
                lag = await self.follower.lag()
            except Exception:  # a broker hiccup: keep the previous verdict
                continue
            suffixes = {spec.name(self.settings): spec.suffix for spec in self.topics}
            self.reading.lag_records = {suffixes.get(topic, topic): records for topic, records in lag.items()}
            if not any(lag.values()):
                self.behind_since = None
            elif self.behind_since is None:
                self.behind_since = time.monotonic()

    def metric_families(self) -> Iterable[Metric]:
        """The view's metrics (pipeline/metrics.py), read at a scrape."""
        self.reading.ready = self.is_ready
        self.reading.behind_seconds = 0.0 if self.behind_since is None else time.monotonic() - self.behind_since
        if self.snapshot_path is not None and self._snapshot_current_at is not None:
            self.reading.snapshot_age_seconds = max(0.0, time.time() - self._snapshot_current_at)
        return metrics.bank_view_families(self.reading)

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
        positions = dict(self.loaded.positions) if self.loaded is not None else None
        if positions is None and self.snapshot_path is not None:
            snap = await asyncio.to_thread(read_snapshot, self.snapshot_path, self.settings, self._view_topics)
            if snap is not None and exported_searchable(snap.meta) != self.view.searchable:
                log.info("view snapshot not used", extra={"path": str(self.snapshot_path), "differs": ["searchable"]})
                snap = None
            if snap is not None:
                await asyncio.to_thread(self.view.load, snap.arrays, snap.meta)
                log.info("bank view loaded from snapshot", extra={
                    "signals": self.view.signal_count(), "seconds": round(time.monotonic() - started, 1),
                    "age_s": round(time.time() - snap.created_at), "positions": snap.positions})
                positions = snap.positions
                self._snapshot_current_at = snap.created_at
        if positions is not None:
            # a view loaded by another process: saved again once caught up, unless its snapshot holds it all
            self._snapshot_positions = dict(positions if self.loaded is None else self.loaded.saved)
            follower = CompactedTopicFollower(self.settings, self.topics, self._apply, name=self.name,
                                              start_positions=positions, holds_key=self._held_keys())
            try:
                await follower.start()
                return follower
            except StalePositions as exc:
                log.warning("view snapshot does not fit the topics; reading them from the start",
                            extra={"reason": str(exc)})
                self.view.load(*BankView(shard=self.view.shard, searchable=self.view.searchable).export())
                self._snapshot_positions = {}
        follower = CompactedTopicFollower(self.settings, self.topics, self._apply, name=self.name,
                                          holds_key=self._held_keys())
        await follower.start()
        return follower

    def _held_keys(self) -> dict[T.TopicSpec, KeyFilter]:
        """A shard worker's view holds one shard's signals: the others' records are not decoded."""
        shard = self.view.shard
        if shard is None or shard.count == 1 or T.BANK_SIGNALS in self.listeners:
            return {}
        return {T.BANK_SIGNALS: shard.holds_key}

    async def _keep_snapshots(self) -> None:
        """Save the view once caught up (when the saved one is behind), then every interval."""
        await self.ready()
        while True:
            try:
                await self.save_snapshot()
            except Exception:  # a full disk: counted and logged, the view keeps serving
                metrics.SNAPSHOT_FAILURES.inc()
                log.exception("view snapshot not saved", extra={"path": str(self.snapshot_path)})
            await asyncio.sleep(self.settings.view_snapshot_interval_s)

    async def _log_stats(self) -> None:
        """Once a minute, the view's sizes: rows that should follow the signals, under churn too."""
        await self.ready()
        while True:
            log.info("bank view", extra=self.view.stats())
            await asyncio.sleep(VIEW_STATS_EVERY_S)

    @property
    def snapshot_positions(self) -> dict[str, int]:
        """The positions of the newest snapshot on disk that this view holds ({}: none)."""
        return dict(self._snapshot_positions)

    async def save_snapshot(self) -> None:
        """Write a snapshot if the view moved since the last one (a copy here, the writing on a thread).
        A save asked for while one runs waits for it, then finds the view saved unless it moved."""
        async with self._save_lock:
            await self._save_if_moved()

    async def _save_if_moved(self) -> None:
        follower = self.follower
        if self.snapshot_path is None or not self.saves or follower is None or not follower.ready.is_set():
            return
        if follower.positions == self._snapshot_positions:
            self._snapshot_current_at = time.time()
            return
        started = time.monotonic()
        snap = export_snapshot(self.view, follower.positions)
        await asyncio.to_thread(write_snapshot, snap, self.snapshot_path, self.settings, self._view_topics)
        self._snapshot_positions = snap.positions
        self._snapshot_current_at = time.time()
        log.info("bank view snapshot saved", extra={
            "signals": self.view.signal_count(), "seconds": round(time.monotonic() - started, 1),
            "path": str(self.snapshot_path)})

    async def stop(self, save: bool = True) -> None:
        """Stop following; the view is saved first if it has a snapshot path and `save` (a failed
        save does not stop the shutdown)."""
        for task in self._tasks:
            task.cancel()
        metrics.STATE.remove_source("bank_view", self.metric_families)
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
    saved: dict[str, int]  # the positions of the snapshot on disk it was loaded from ({}: none)


async def load_view(settings: Settings, snapshot_path: Path | None) -> LoadedView:
    """A view caught up with the topics (from the snapshot, then the tail), its reader stopped,
    no thread of its own left: for processes forked to share it (the first of them saves it)."""
    service = BankViewService(settings, BankView(), "view-loader", snapshot_path=snapshot_path, saves=False)
    await service.ready()
    await service.stop(save=False)
    service.view.settle()
    return LoadedView(service.view, dict(service.positions), service.snapshot_positions)
