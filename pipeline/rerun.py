"""A past upload run again: what its record on hma.matches decided then against what the explain
verdicts (pipeline/explain.py) decide now, and what changed in between, entry by entry."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipeline.explain import SKIPPED, TOO_FAR

MATCH = "match"
EntryKey = tuple[str, int, str]  # bank, bank content id, signal type


@dataclass(frozen=True)
class Change:
    kind: str  # added, removed, status, threshold, skipped
    bank: str
    bank_content_id: int | None
    text: str


def _then_hits(record: dict[str, Any]) -> dict[EntryKey, dict[str, Any]]:
    return {(h["bank"], h["bank_content_id"], h["signal_type"]): h for h in record["matches"]}


def _now_verdicts(explanation: dict[str, Any]) -> dict[EntryKey, dict[str, Any]]:
    return {(name, v["bank_content_id"], v["signal_type"]): v
            for name, bank in explanation["banks"].items() for v in bank["nearest"]}


def what_changed(then: dict[str, Any], now: dict[str, Any]) -> list[Change]:
    """Each difference between the match record `then` and the explanation `now` of one upload."""
    before, after = _then_hits(then), _now_verdicts(now)
    changes: list[Change] = []
    for key in sorted(set(before) | set(after)):
        bank, content_id, kind = key
        old, new = before.get(key), after.get(key)
        entry = f"{bank} content {content_id} ({kind})"
        if old is None:
            if new is not None and new["verdict"] not in (TOO_FAR, SKIPPED):
                changes.append(Change("added", bank, content_id,
                                      f"{entry}: no hit then, {new['verdict'].replace('_', ' ')} now at distance "
                                      f"{new['distance']}: banked (or its bank's threshold widened) since"))
            continue
        if new is None:
            changes.append(Change("removed", bank, content_id,
                                  f"{entry}: {old['status']} then; now no longer banked (or its bank is gone)"))
            continue
        if old["threshold"] != new["threshold"]:
            changes.append(Change("threshold", bank, content_id,
                                  f"{entry}: threshold {old['threshold']} then, {new['threshold']} now"))
        if old["status"] != new["verdict"]:
            changes.append(Change("status", bank, content_id,
                                  f"{entry}: {old['status']} then, {new['verdict'].replace('_', ' ')} now: {new['reason']}"))
    then_skipped, now_skipped = then.get("skipped") or {}, {k: s["skipped"] for k, s in now["signals"].items() if s["skipped"]}
    for kind in sorted(set(then_skipped) | set(now_skipped)):
        if then_skipped.get(kind) != now_skipped.get(kind):
            changes.append(Change("skipped", "", None, f"{kind}: {then_skipped.get(kind) or 'searched'} then, "
                                                       f"{now_skipped.get(kind) or 'searched'} now"))
    return changes
