"""Flood detection: when one bank signal matches too much too fast, it is quarantined.

All hits of a signal reach one place (hits are re-keyed by signal id), where a count-min sketch
over time buckets estimates the signal's matches in the bank's window. Past the bank's limit
(and, if set, past a multiple of the signal's trailing baseline) a quarantine record is written;
guards read quarantine state back from the compacted `hma.quarantine` topic.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Any

from pipeline.state.count_min import CountMinSketch, MemoryCellStore

SAMPLE_SIZE = 10
SAMPLED_SIGNALS = 10_000
REMEMBERED_HITS = 100_000  # a matcher's own hits whose verdict it keeps, so a replayed hit gets the same


@dataclass(frozen=True)
class FloodVerdict:
    signal_id: str
    count: int
    window_ms: int
    sample_content_ids: list[str]


class FloodDetector:
    def __init__(self, sketch: CountMinSketch, bucket_ms: int, baseline_windows: int = 24) -> None:
        self.sketch = sketch
        self.bucket_ms = bucket_ms
        self.baseline_windows = baseline_windows
        self._samples: OrderedDict[str, deque[str]] = OrderedDict()
        self._allowances: dict[str, tuple[int, int]] = {}  # signal id -> (release time, count then)

    def bucket(self, at_ms: int) -> int:
        return at_ms // self.bucket_ms

    def _buckets(self, end_ms: int, window_ms: int) -> range:
        last = self.bucket(end_ms)
        return range(last - max(1, -(-window_ms // self.bucket_ms)) + 1, last + 1)

    def window_count(self, signal_id: str, at_ms: int, window_ms: int) -> int:
        return self.sketch.estimate(signal_id, self._buckets(at_ms, window_ms))

    def baseline(self, signal_id: str, at_ms: int, window_ms: int) -> float:
        """Mean count per window over the trailing baseline windows before the current one."""
        span = window_ms * self.baseline_windows
        return self.sketch.estimate(signal_id, self._buckets(at_ms - window_ms, span)) / self.baseline_windows

    def observe(
        self, signal_id: str, content_id: str, at_ms: int, flood: dict[str, Any] | None, allowance: int = 0
    ) -> FloodVerdict | None:
        """Count one hit; a verdict when the signal is past its bank's flood limit.

        `allowance` is what a reviewer's release already accepted (the window count at release).
        """
        self.sketch.add(signal_id, self.bucket(at_ms))
        self._remember(signal_id, content_id)
        if flood is None:
            return None
        window = flood["window_ms"]
        count = self.window_count(signal_id, at_ms, window)
        if count - allowance <= flood["max_matches"]:
            return None
        multiple = flood.get("baseline_multiple")
        if multiple is not None and count <= multiple * self.baseline(signal_id, at_ms, window):
            return None
        return FloodVerdict(signal_id, count, window, list(self._samples.get(signal_id, ())))

    def allowance(self, signal_id: str, released_at: int | None, at_ms: int, window_ms: int) -> int:
        """What a reviewer's release accepted: this detector's count when it first saw the release.

        Counts are per detector (each matcher's own, the flood agent's whole), so each takes its own.
        """
        if released_at is None:
            return 0
        known = self._allowances.get(signal_id)
        if known is None or known[0] != released_at:
            known = (released_at, self.window_count(signal_id, at_ms, window_ms))
            self._allowances[signal_id] = known
        return known[1]

    def _remember(self, signal_id: str, content_id: str) -> None:
        sample = self._samples.get(signal_id)
        if sample is None:
            sample = self._samples[signal_id] = deque(maxlen=SAMPLE_SIZE)
            if len(self._samples) > SAMPLED_SIGNALS:
                self._samples.popitem(last=False)
        else:
            self._samples.move_to_end(signal_id)
        sample.append(content_id)

    def horizon_start_bucket(self, now_ms: int, longest_window_ms: int) -> int:
        """Buckets before this one are older than any window or baseline can reach."""
        return self.bucket(now_ms - longest_window_ms * (self.baseline_windows + 1))


class LocalFloodGuard:
    """A matcher's own count of the hits it let through, checked against each bank's flood limit.

    The flood agent's count (all matchers, via hma.flood-hits) is authoritative and writes the
    quarantine record; until the guards read it back, each matcher stops the flood itself once
    its own count passes the limit. With one matcher the two counts agree, so nothing leaks past
    the limit; with several, a matcher's count is a part of the whole and never quarantines early.
    """

    def __init__(self, epsilon: float, delta: float, bucket_ms: int, horizon_ms: int = 2 * 3_600_000) -> None:
        self._store = MemoryCellStore()
        self.detector = FloodDetector(CountMinSketch(self._store, epsilon, delta), bucket_ms)
        self.horizon_ms = horizon_ms
        self._oldest_kept = 0
        self._verdicts: OrderedDict[str, FloodVerdict | None] = OrderedDict()  # hit event id -> verdict

    def over_limit(
        self, signal_id: str, content_id: str, at_ms: int, flood: dict[str, Any], released_at: int | None = None,
        event_id: str | None = None,
    ) -> FloodVerdict | None:
        """Count a hit and judge it; a hit this guard has judged before (same event id: its upload
        processed again) is not counted again and gets the same verdict."""
        if event_id is not None and event_id in self._verdicts:
            return self._verdicts[event_id]
        verdict = self._count(signal_id, content_id, at_ms, flood, released_at)
        if event_id is not None:
            self._verdicts[event_id] = verdict
            if len(self._verdicts) > REMEMBERED_HITS:
                self._verdicts.popitem(last=False)
        return verdict

    def _count(
        self, signal_id: str, content_id: str, at_ms: int, flood: dict[str, Any], released_at: int | None
    ) -> FloodVerdict | None:
        cutoff = self.detector.bucket(at_ms - self.horizon_ms)
        if cutoff > self._oldest_kept:
            self._store.drop_buckets_before(cutoff)
            self._oldest_kept = cutoff
        allowance = self.detector.allowance(signal_id, released_at, at_ms, flood["window_ms"])
        return self.detector.observe(signal_id, content_id, at_ms, flood, allowance)
