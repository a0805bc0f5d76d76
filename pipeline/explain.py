"""Why an upload matches a bank, or does not: the nearest entries of every bank and their verdicts.

The verdicts come from the worker's own code: `plan_lookups` (signal types skipped for quality or
by their enabled ratio and this content id's coin), `search_plan` / `collect_hits` (the entries
within each bank's distance) and `judge_batch` (the guard: disabled, quarantined, suppressed,
match). Entries past their bank's distance are found by one wider radius search per signal and
are "too far". Nothing is written and no flood is counted: an explanation is a read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pipeline.clock import iso_utc
from pipeline.config import Settings
from pipeline.guard import Hit
from pipeline.matching import LookupPlan, bank_distance, collect_hits, judge_batch, plan_lookups, search_plan
from pipeline.signal_types import SIGNAL_TYPES
from pipeline.state.bank_view import BankEntry, BankView

TOO_FAR, SKIPPED = "too_far", "skipped"
DEFAULT_NEAREST = 5
DEFAULT_RADIUS = 64
MAX_RADIUS = 96  # two random PDQ hashes are ~128 apart: past ~96 nearly every banked hash is "near"
Found = dict[str, list[list[tuple[int, int]]]]  # the matcher's search results (search_plan)


@dataclass
class Verdict:
    """One bank entry near the upload, and what the worker would decide about it."""

    entry: BankEntry
    distance: int
    threshold: int
    status: str
    reason: str
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        e = self.entry
        return {
            "signal_type": e.signal_type, "bank_content_id": e.bank_content_id, "signal_id": e.signal_id,
            "value": e.value, "metadata": e.metadata, "distance": self.distance, "threshold": self.threshold,
            "verdict": self.status, "reason": self.reason, **self.details,
        }


@dataclass
class Explanation:
    """One explanation in three steps, so that the searches can run off the event loop:
    `start` and `judge` read the view's dicts (on the thread that applies changes); `search` only
    searches the indices (safe on another thread, as the matcher's `search_plan`). Run `search`
    and `judge` inside one `view.pinned()`."""

    hashed: dict[str, Any]
    plan: LookupPlan
    asked_radius: int
    radius: dict[str, int]  # signal type -> the radius of its nearest-entries search (>= every threshold)
    min_quality: int

    @classmethod
    def start(cls, hashed: dict[str, Any], view: BankView, settings: Settings, radius: int) -> "Explanation":
        kinds = [k for k in hashed["signals"] if k in SIGNAL_TYPES]
        widest = {k: max((bank_distance(b, k) for b in list(view.banks.values())), default=0) for k in kinds}
        return cls(hashed, plan_lookups([hashed], view, settings), radius, {k: max(radius, widest[k]) for k in kinds},
                   settings.pdq_min_quality)

    def search(self, view: BankView) -> tuple[Found, dict[str, list[tuple[int, int]]]]:
        """The worker's searches, and one wider search per signal for the nearest entries."""
        near = {k: view.search_rows(k, [self.hashed["signals"][k]["value"]], r)[0] for k, r in self.radius.items()}
        return search_plan(view, self.plan), near

    def judge(self, view: BankView, found: tuple[Found, dict[str, list[tuple[int, int]]]], nearest: int) -> dict[str, Any]:
        worker_found, near = found
        hits = collect_hits(view, self.plan, worker_found)
        [record] = judge_batch(self.plan.records, hits, view)
        judged = {hit.entry.key: hit for hit in hits[0]}
        skipped: dict[str, str] = record["skipped"]
        per_bank: dict[str, list[Verdict]] = {name: [] for name in sorted(view.banks)}
        for kind, rows in near.items():
            for cand in view.nearest_per_bank(rows, nearest):
                named = view.bank_of(cand.entry)  # a renamed bank's entries under its new name, as the matcher
                if named is None or named[0] not in per_bank:
                    continue
                name, bank = named
                threshold = bank_distance(bank, kind)
                verdict = _verdict(view, cand.entry, cand.distance, threshold, skipped.get(kind), judged.get(cand.entry.key))
                if verdict is not None:
                    per_bank[name].append(verdict)
        signals = self.hashed["signals"]
        banks = {}
        for name, verdicts in per_bank.items():
            bank = view.banks[name]
            banks[name] = {
                "enabled": bank["enabled"], "enabled_ratio": bank["enabled_ratio"], "suppressed_by": bank["suppressed_by"],
                "thresholds": {kind: bank_distance(bank, kind) for kind in signals if kind in SIGNAL_TYPES},
                "nearest": [v.to_json() for v in sorted(verdicts, key=lambda v: (v.distance, v.entry.bank_content_id))],
            }
        return {
            "content_id": self.hashed["content_id"],
            "signals": {kind: {"value": s["value"], "quality": s.get("quality"), "skipped": skipped.get(kind, "")}
                        for kind, s in signals.items()},
            "pdq_min_quality": self.min_quality,
            "nearest": nearest, "radius": self.asked_radius,
            "matched": sorted({h["bank"] for h in record["matches"] if h["status"] == "match"}),
            "banks": banks,
        }


def explain(hashed: dict[str, Any], view: BankView, settings: Settings, nearest: int = DEFAULT_NEAREST,
            radius: int = DEFAULT_RADIUS) -> dict[str, Any]:
    """The explanation of one hashed upload (an hma.hashes record) against this view's banks."""
    explanation = Explanation.start(hashed, view, settings, radius)
    with view.pinned():
        return explanation.judge(view, explanation.search(view), nearest)


def _verdict(view: BankView, entry: BankEntry, distance: int, threshold: int, skip: str | None,
             hit: Hit | None) -> Verdict | None:
    if skip:
        return Verdict(entry, distance, threshold, SKIPPED, skip)
    if hit is not None:
        reason = hit.reason or f"distance {distance} <= threshold {threshold}"
        return Verdict(entry, distance, threshold, hit.status, reason, _details(view, hit))
    if distance > threshold:
        return Verdict(entry, distance, threshold, TOO_FAR, f"too far: distance {distance} > threshold {threshold}")
    return None  # within distance yet not found by the worker's search: removed in between


def _details(view: BankView, hit: Hit) -> dict[str, Any]:
    """What the reason names, as fields: until when, since when and how often, by which entry."""
    details: dict[str, Any] = {}
    if hit.entry.disable_until_ts > 1:
        details["disabled_until"] = iso_utc(hit.entry.disable_until_ts * 1000)
    q = view.quarantine.get(hit.entry.signal_id)
    if q is not None:
        details["quarantine"] = {"state": q["state"], "since": iso_utc(q["changed_at"]), "count": q["count"],
                                 "window_ms": q["window_ms"]}
    if hit.suppressed_by is not None:
        by = hit.suppressed_by
        details["suppressed_by"] = {"bank": by.entry.bank, "bank_content_id": by.entry.bank_content_id,
                                    "signal_id": by.entry.signal_id, "distance": by.distance}
    return details
