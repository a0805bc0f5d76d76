"""The guard: the status of each hit before the match record is written.

In order of precedence, a hit is
- `disabled`: its bank, its bank content item, or its signal (after flood review) is disabled, or
  the bank's enabled_ratio samples this upload out (by the content id's coin, pipeline.sampling);
- `quarantined`: its signal matched too much too fast and awaits review (hma.quarantine);
- `suppressed`: the upload also matches one of the bank's suppressing (negative) banks;
- `match`: none of the above. Only these lead to actions.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from pipeline.banks import matching_enabled_ratio, signal_enabled
from pipeline.clock import iso_utc
from pipeline.sampling import sampled_out
from pipeline.state.bank_view import BankEntry, BankView

MATCH, SUPPRESSED, QUARANTINED, DISABLED = "match", "suppressed", "quarantined", "disabled"
NO_ACTION = "none"  # a bank whose action is "none" (e.g. a negative bank) matches without acting


@dataclass
class Hit:
    """A bank entry within its bank's distance of one of the upload's signals."""

    entry: BankEntry
    bank: dict[str, Any]
    distance: int
    threshold: int
    query_signal: str
    status: str = MATCH
    reason: str = ""
    suppressed_by: "Hit | None" = None  # the negative bank's hit that suppressed this one


def _disabled_reason(hit: Hit, view: BankView, content_id: str | None, now_s: float) -> str:
    entry = hit.entry
    ratio = matching_enabled_ratio(hit.bank)
    if ratio <= 0:
        return f"bank {entry.bank} is disabled" if not hit.bank["enabled"] else f"bank {entry.bank} has enabled_ratio 0"
    if (coin := sampled_out(ratio, content_id)) is not None:
        return (f"bank {entry.bank} sampled out by the bank's enabled_ratio for this content "
                f"(its coin {coin:.3f} >= enabled_ratio {ratio:g})")
    if not signal_enabled(entry.disable_until_ts, now_s):
        until = "" if entry.disable_until_ts == 0 else f" until {iso_utc(entry.disable_until_ts * 1000)}"
        return f"bank content {entry.bank_content_id} is disabled{until}"
    q = view.quarantine.get(entry.signal_id)
    if q is not None and q["state"] == "disabled":
        return f"signal {entry.signal_id} was disabled after flood review"
    return ""


def decide(hits: list[Hit], view: BankView, content_id: str | None, now_s: float | None = None) -> None:
    """Set the status and reason of every hit of one upload. `content_id` fixes its sampling coin
    (pipeline.sampling); None keeps every bank whose enabled_ratio is above 0."""
    now_s = time.time() if now_s is None else now_s
    for hit in hits:
        reason = _disabled_reason(hit, view, content_id, now_s)
        if reason:
            hit.status, hit.reason = DISABLED, reason
            continue
        q = view.quarantine.get(hit.entry.signal_id)
        if q is not None and q["state"] == "quarantined":
            hit.status = QUARANTINED
            hit.reason = (f"signal {hit.entry.signal_id} quarantined since {iso_utc(q['changed_at'])}: "
                          f"{q['count']} matches within {q['window_ms'] // 1000}s")
    nearest_live: dict[str, Hit] = {}  # bank -> its nearest hit that counts for suppression
    for hit in hits:
        if hit.status in (MATCH, QUARANTINED):
            known = nearest_live.get(hit.entry.bank)
            if known is None or hit.distance < known.distance:
                nearest_live[hit.entry.bank] = hit
    if not nearest_live:
        return
    for hit in hits:
        if hit.status != MATCH:
            continue
        negatives = sorted(b for b in hit.bank["suppressed_by"] if b in nearest_live)
        if negatives:
            by = nearest_live[negatives[0]]
            hit.status, hit.suppressed_by = SUPPRESSED, by
            hit.reason = (f"also matches negative bank {', '.join(negatives)}: content {by.entry.bank_content_id}, "
                          f"signal {by.entry.signal_id} at distance {by.distance}")
