"""The vPDQ plug-in (python-threatexchange's vpdq extension): videos matched by their frames.

A value is python-threatexchange's: a JSON list of `pdq_hex,quality,timestamp` frames. Its rule
(threatexchange.extensions.vpdq): frames below quality 50 are dropped and equal frames counted
once on both sides; a query video matches a bank video when the share of its frames within the
frame distance of some bank-video frame, and the share of the bank video's frames within it of
some query frame, reach 80% and 0%.

The index keeps every bank video's frames in the PDQ index (`pipeline.index`, exact) and answers,
per bank video, the smallest frame distance at which the two videos match by that rule. Both
shares only grow with the frame distance, so a hit is within a bank's distance exactly when
python-threatexchange, run at that frame distance, calls it a match: the per-bank distance of
vPDQ is its frame distance (default 31, python-threatexchange's).
"""

from __future__ import annotations

import importlib.util
import re
import shutil
from collections import defaultdict
from typing import Any, Sequence

import numpy as np

from pipeline.config import Settings, load_settings
from pipeline.hashing.base import SignalValue
from pipeline.index import build_pdq_index, codes_from_hex
from pipeline.signal_types import Comparison, SignalPlugin
from pipeline.state.signal_index import Hits, StoredValues

try:  # python-threatexchange's thresholds; the extension needs the vpdq package
    from threatexchange.extensions.vpdq.vpdq_util import (
        VPDQ_DISTANCE_THRESHOLD as FRAME_DISTANCE,
        VPDQ_INDEX_MATCH_THRESHOLD_PERCENT as BANK_SHARE,
        VPDQ_QUALITY_THRESHOLD as QUALITY_FLOOR,
        VPDQ_QUERY_MATCH_THRESHOLD_PERCENT as QUERY_SHARE,
        VpdqCompactFeature,
        prepare_vpdq_feature,
        vpdq_to_json,
    )
except ImportError:  # then no plug-in is made from this module (VpdqPlugin.served)
    FRAME_DISTANCE, BANK_SHARE, QUALITY_FLOOR, QUERY_SHARE = 31, 0.0, 50, 80.0

# This pipeline's earlier form of a value: one `frame,quality,pdq_hex,timestamp` line per frame.
LINES = re.compile(r"(\d+,\d+,[0-9a-fA-F]{64},[0-9.]+\n?)+")


def as_tx_value(value: str) -> str:
    """A value in python-threatexchange's form (values banked in the earlier form are converted)."""
    if not LINES.fullmatch(value):
        return value
    frames = [line.split(",") for line in value.split()]
    return vpdq_to_json([VpdqCompactFeature(pdq_hex.lower(), int(quality), float(ts)) for _, quality, pdq_hex, ts in frames])


def frame_hexes(value: str) -> list[str]:
    """A value's frames as the rule counts them: quality floor first, then each PDQ hash once
    (as python-threatexchange's VPDQIndex prepares them)."""
    return [f.pdq_hex for f in prepare_vpdq_feature(as_tx_value(value), QUALITY_FLOOR)]


def _enough(matched: int, total: int, share: float) -> bool:
    """python-threatexchange's test of a share, in its own arithmetic (percent, >=)."""
    return matched * 100 / total >= share


def match_distance(query_nearest: Sequence[int], query_total: int, bank_nearest: Sequence[int],
                   bank_total: int) -> int | None:
    """The smallest frame distance at which two videos match, from each side's frames' distances
    to the nearest frame of the other (frames with none within the searched radius left out);
    None when they do not match within it."""
    if not query_total or not bank_total:
        return None
    q, b = sorted(query_nearest), sorted(bank_nearest)
    for d in sorted({0, *q, *b}):
        if _enough(int(np.searchsorted(q, d, side="right")), query_total, QUERY_SHARE) and \
                _enough(int(np.searchsorted(b, d, side="right")), bank_total, BANK_SHARE):
            return d
    return None


class VpdqFrameIndex(StoredValues):
    """Bank videos as their frames in the PDQ index; a search answers (row, match distance) per video."""

    def __init__(self, exported: dict[str, np.ndarray] | None = None) -> None:
        self._frames = build_pdq_index(np.zeros((0, 32), dtype=np.uint8), np.zeros(0, dtype=np.int64))
        self._frames_of: dict[int, np.ndarray] = {}  # row -> its frame ids
        self._video_of: dict[int, int] = {}  # frame id -> row (frame ids are never reused)
        self._next_frame = 0
        super().__init__(exported)

    def add(self, ids: Sequence[int], values: Sequence[str]) -> None:
        self.remove([row for row in ids if row in self._value_of])
        with self._lock:
            codes, frame_ids = [], []
            for row, value in zip(ids, values):
                hexes = frame_hexes(value)
                fids = np.arange(self._next_frame, self._next_frame + len(hexes), dtype=np.int64)
                self._next_frame += len(hexes)
                self._value_of[row], self._frames_of[row] = value, fids
                self._video_of.update(dict.fromkeys(fids.tolist(), row))
                codes += hexes
                frame_ids.append(fids)
            if codes:
                self._frames.add(codes_from_hex(codes), np.concatenate(frame_ids))

    def remove(self, ids: Sequence[int]) -> None:
        with self._lock:
            gone = [self._frames_of.pop(row) for row in ids if row in self._frames_of]
            for row in ids:
                self._value_of.pop(row, None)
            if gone:
                fids = np.concatenate(gone)
                self._frames.remove(fids)
                for fid in fids.tolist():
                    self._video_of.pop(fid, None)

    def search(self, values: Sequence[str], max_distance: int) -> Hits:
        return [self._search_one(frame_hexes(value), max_distance) for value in values]

    def _search_one(self, hexes: list[str], max_distance: int) -> list[tuple[int, int]]:
        if not hexes:
            return []
        lims, fids, distances = self._frames.search(codes_from_hex(hexes), max_distance=max_distance)
        query_nearest: dict[int, dict[int, int]] = defaultdict(dict)  # row -> query frame -> distance
        bank_nearest: dict[int, dict[int, int]] = defaultdict(dict)  # row -> bank frame id -> distance
        for qi in range(len(hexes)):
            for fid, d in zip(fids[lims[qi]:lims[qi + 1]].tolist(), distances[lims[qi]:lims[qi + 1]].tolist()):
                row = self._video_of.get(fid)
                if row is None:  # removed meanwhile
                    continue
                mine, theirs = query_nearest[row], bank_nearest[row]
                mine[qi] = min(d, mine.get(qi, d))
                theirs[fid] = min(d, theirs.get(fid, d))
        hits = []
        for row, mine in query_nearest.items():
            frames = self._frames_of.get(row)
            if frames is None:
                continue
            d = match_distance(list(mine.values()), len(hexes), list(bank_nearest[row].values()), len(frames))
            if d is not None:
                hits.append((row, d))
        return hits

    def stats(self) -> dict[str, int]:
        return {"videos": len(self._value_of), "frames": len(self._video_of)}

    def wait_for_merges(self) -> None:
        self._frames.wait_for_merges()


class VpdqPlugin(SignalPlugin):
    default_distance = FRAME_DISTANCE
    max_distance = 256
    frames = True
    description = "a JSON list of \"pdq_hex,quality,timestamp\" frames (python-threatexchange's vPDQ)"

    @staticmethod
    def served() -> Any:
        """python-threatexchange's vPDQ signal type, when the vpdq extension can load."""
        if importlib.util.find_spec("vpdq") is None or shutil.which("ffprobe") is None:
            return None
        from threatexchange.extensions.vpdq.vpdq import VPDQSignal

        return VPDQSignal

    def validate(self, value: object) -> str:
        return super().validate(as_tx_value(value) if isinstance(value, str) else value)

    def min_quality(self, settings: Settings) -> int | None:
        return None  # frames below the floor are dropped one by one, not the video

    def new_index(self, exported: dict[str, Any] | None = None) -> VpdqFrameIndex:
        return VpdqFrameIndex(exported)

    def hash_content(self, content_type: str, data: bytes) -> SignalValue | None:
        from pipeline.hashing.video import vpdq_signal

        return vpdq_signal(data, load_settings().max_video_seconds) if content_type in self.content_types else None

    def compare(self, a: str, b: str) -> Comparison:
        index = VpdqFrameIndex()
        index.add([0], [b])
        [found] = index.search([a], self.max_distance)
        distance = found[0][1] if found else self.max_distance + 1
        return Comparison(distance <= self.default_distance, distance)

    def recent_codes(self, value: str) -> list[str]:
        return frame_hexes(value)


PLUGIN = VpdqPlugin
