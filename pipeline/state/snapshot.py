"""Local snapshots of a bank view with the offsets of the topics it reflects.

A worker or API holding 10M signals would need minutes to read hma.bank-signals from the start;
from a snapshot it loads the view's arrays as they were in memory (the index's tables included:
nothing is rebuilt, a load is a copy of about 2 GB at 10M) and reads only the records after the
saved offsets. One file (`<data_dir>/view-snapshots/<role>.snapshot`), replaced atomically: a
header (JSON: identity, offsets, the view's small state, where each array lies) then each array's
bytes, aligned. A snapshot of other topics (another prefix or shard), of another format, or whose
offsets the topics no longer have (a recreated topic) is ignored, and the view is read from the start.
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
FORMAT = 2  # 1: an .npz of live codes whose index was rebuilt at load
MAGIC = b"HMAS-VIEW-SNAPSHOT\n"
ALIGN = 64  # each array starts at a multiple of this


def snapshot_path(settings: Settings, role: str) -> Path:
    return settings.data_dir / "view-snapshots" / f"{role}.snapshot"


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
    layout, at = [], 0
    for name, array in snapshot.arrays.items():
        if array.dtype.hasobject:
            raise ValueError(f"snapshot array {name} holds Python objects")
        layout.append({"name": name, "dtype": array.dtype.str, "shape": list(array.shape), "at": at})
        at += -(-array.nbytes // ALIGN) * ALIGN
    head = json.dumps({**_identity(settings, topics), "positions": snapshot.positions,
                       "created_at": snapshot.created_at, "view": snapshot.meta, "arrays": layout}).encode()
    start = -(-(len(MAGIC) + 8 + len(head)) // ALIGN) * ALIGN
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(MAGIC + len(head).to_bytes(8, "little") + head)
        for place, array in zip(layout, snapshot.arrays.values()):
            fh.seek(start + place["at"])
            fh.write(_bytes_of(np.ascontiguousarray(array)))
        fh.truncate(start + at)
    os.replace(tmp, path)


def _bytes_of(array: np.ndarray) -> memoryview:
    return memoryview(array.reshape(-1).view(np.uint8))


def read_snapshot(path: Path, settings: Settings, topics: dict[str, str]) -> Snapshot | None:
    """The snapshot at path if it is one of these topics; None (with the reason logged) if not."""
    if not path.is_file():
        return None
    try:
        with open(path, "rb") as fh:
            if fh.read(len(MAGIC)) != MAGIC:
                raise ValueError("not a view snapshot of this format")
            size = int.from_bytes(fh.read(8), "little")
            head = json.loads(fh.read(size))
            identity = _identity(settings, topics)
            mismatch = [k for k in identity if head.get(k) != identity[k]]
            if mismatch:
                log.info("view snapshot not used", extra={"path": str(path), "differs": mismatch})
                return None
            start = -(-(len(MAGIC) + 8 + size) // ALIGN) * ALIGN
            arrays = {}
            for place in head["arrays"]:
                array = np.empty(place["shape"], dtype=np.dtype(place["dtype"]))
                fh.seek(start + place["at"])
                if fh.readinto(_bytes_of(array)) != array.nbytes:
                    raise ValueError(f"snapshot array {place['name']} is cut short")
                arrays[place["name"]] = array
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("view snapshot unreadable", extra={"path": str(path), "reason": str(exc)})
        return None
    return Snapshot(arrays, head["view"], {k: int(v) for k, v in head["positions"].items()}, head["created_at"])
