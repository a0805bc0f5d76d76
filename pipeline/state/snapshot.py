"""Local snapshots of a bank view with the offsets of the topics it reflects.

A worker holding 10M signals would need minutes to read hma.bank-signals from the start; from a
snapshot it loads the arrays, rebuilds the index (seconds) and reads only the records after the
saved offsets. One file (`<data_dir>/view-snapshots/<role>.npz`), replaced atomically; a
snapshot of other topics (another prefix or shard), of another format, or whose offsets the
topics no longer have (a recreated topic) is ignored, and the view is read from the start.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.config import Settings
from pipeline.state.bank_view import BankView

log = logging.getLogger(__name__)
FORMAT = 1


def snapshot_path(settings: Settings, role: str) -> Path:
    return settings.data_dir / "view-snapshots" / f"{role}.npz"


def _identity(settings: Settings, topics: dict[str, str]) -> dict[str, Any]:
    """What a snapshot must agree on to be used: format, topics, cluster, shard."""
    return {
        "format": FORMAT, "topics": topics, "bootstrap": settings.bootstrap_servers,
        "shard": str(settings.shard) if settings.shard is not None else None,
    }


@dataclass
class Snapshot:
    arrays: dict[str, np.ndarray]
    meta: dict[str, Any]
    positions: dict[str, int]  # topic name -> next offset to read (the view topics have one partition)
    created_at: float


def export_snapshot(view: BankView, positions: dict[str, int]) -> Snapshot:
    """A consistent copy of the view (call between two applied batches, on the view's thread)."""
    arrays, meta = view.export()
    return Snapshot(arrays, meta, dict(positions), time.time())


def write_snapshot(snapshot: Snapshot, path: Path, settings: Settings, topics: dict[str, str]) -> None:
    """Write to a temporary file, then replace: a reader sees the old snapshot or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    head = {**_identity(settings, topics), "positions": snapshot.positions, "created_at": snapshot.created_at,
            "view": snapshot.meta}
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        np.savez(fh, _meta=np.frombuffer(json.dumps(head).encode(), dtype=np.uint8), **snapshot.arrays)
    os.replace(tmp, path)


def read_snapshot(path: Path, settings: Settings, topics: dict[str, str]) -> Snapshot | None:
    """The snapshot at path if it is one of these topics; None (with the reason logged) if not."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            head = json.loads(data["_meta"].tobytes())
            identity = _identity(settings, topics)
            mismatch = [k for k in identity if head.get(k) != identity[k]]
            if mismatch:
                log.info("view snapshot not used", extra={"path": str(path), "differs": mismatch})
                return None
            arrays = {name: data[name] for name in data.files if name != "_meta"}
    except (OSError, ValueError, KeyError) as exc:
        log.warning("view snapshot unreadable", extra={"path": str(path), "reason": str(exc)})
        return None
    return Snapshot(arrays, head["view"], {k: int(v) for k, v in head["positions"].items()}, head["created_at"])
