"""The keys of hma.config (run-time settings, hma.Setting records) and the records that set them.

Every writer and reader of hma.config names its keys through this module:
- `signal_type/<name>`: a signal type's enabled ratio (upstream HMA's enabled_ratio, 1.0 if unset);
- `reset/at`: unix ms of the last factory reset; feedback decided before it is ignored;
- `content_ids/base`: the hma.content-ids offset that bank content id 1 stands for since then.
"""

from __future__ import annotations

from typing import Any

from pipeline.clock import now_ms

RESET_AT = "reset/at"
CONTENT_ID_BASE = "content_ids/base"
SIGNAL_TYPE_PREFIX = "signal_type/"


def signal_type_ratio_key(signal_type_name: str) -> str:
    """The key holding a signal type's enabled ratio."""
    return SIGNAL_TYPE_PREFIX + signal_type_name


def is_signal_type_ratio_key(key: str) -> bool:
    return key.startswith(SIGNAL_TYPE_PREFIX)


def setting_record(key: str, number: float, changed_at: int | None = None) -> dict[str, Any]:
    """The hma.config value that sets `key` to `number` (an hma.Setting)."""
    return {"name": key, "number": float(number), "changed_at": now_ms() if changed_at is None else changed_at}
