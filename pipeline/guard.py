"""The guard: the status of each hit before the match record is written.

A hit is `disabled` when its bank or its bank content item is disabled. (Negative banks and flood
quarantine add `suppressed` and `quarantined`.) Only hits with status `match` lead to actions.
"""

from __future__ import annotations

import time
from typing import Any

from pipeline.banks import signal_enabled
from pipeline.state.bank_view import BankEntry

MATCH, SUPPRESSED, QUARANTINED, DISABLED = "match", "suppressed", "quarantined", "disabled"


def hit_status(entry: BankEntry, bank: dict[str, Any], now_s: float | None = None) -> tuple[str, str]:
    now_s = time.time() if now_s is None else now_s
    if not bank["enabled"]:
        return DISABLED, f"bank {entry.bank} is disabled"
    if not signal_enabled(entry.disable_until_ts, now_s):
        if entry.disable_until_ts == 0:
            return DISABLED, f"bank content {entry.bank_content_id} is disabled"
        return DISABLED, f"bank content {entry.bank_content_id} is disabled until {entry.disable_until_ts}"
    return MATCH, ""
