"""Hashing content into signals, one plug-in per signal type (names from python-threatexchange).

`hash_content` is a top-level function of bytes so that the hasher agent can run it in worker
processes, off the event loop.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Iterable, Iterator

from pipeline.hashing.base import ContentHasher, HashingError, SignalValue
from pipeline.hashing.photo import PdqHasher
from pipeline.hashing.video import VideoMd5Hasher, VpdqHasher

__all__ = ["ContentHasher", "HashingError", "SignalValue", "hash_content", "hash_files", "detect_content_type",
           "hashers_for"]

VIDEO_EXTENSIONS = {".mp4", ".m4v", ".mov", ".webm", ".mkv", ".avi", ".flv", ".mpg", ".mpeg", ".ts", ".3gp"}


@lru_cache(maxsize=None)
def _hashers() -> tuple[ContentHasher, ...]:
    found: list[ContentHasher] = [PdqHasher(), VideoMd5Hasher()]
    if VpdqHasher.available():
        found.append(VpdqHasher())
    return tuple(found)


def hashers_for(content_type: str) -> list[ContentHasher]:
    return [h for h in _hashers() if content_type in h.content_types]


def hash_content(content_type: str, data: bytes) -> dict[str, SignalValue]:
    """Every signal of the content type's hashers; HashingError if the content cannot be hashed."""
    if not data:
        raise HashingError("empty content")
    hashers = hashers_for(content_type)
    if not hashers:
        raise HashingError(f"no hasher for content type {content_type!r}")
    return {h.signal_type: h.hash_bytes(data) for h in hashers}


def detect_content_type(data: bytes, filename: str | None = None) -> str:
    """'video' for the common video containers (by magic bytes, then extension), else 'photo'."""
    head = data[:16]
    if head[4:8] == b"ftyp" or head[:4] == b"\x1a\x45\xdf\xa3" or head[:3] == b"FLV":
        return "video"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "video"
    if filename and Path(filename).suffix.lower() in VIDEO_EXTENSIONS:
        return "video"
    return "photo"


def hash_files(paths: Iterable[str]) -> Iterator[dict]:
    """One result per file, as `hmas hash` prints it: its signals, or the reason it has none."""
    for path in paths:
        try:
            data = Path(path).read_bytes()
            content_type = detect_content_type(data, path)
            signals = hash_content(content_type, data)
        except (HashingError, OSError) as exc:
            yield {"file": path, "error": str(exc)}
            continue
        yield {
            "file": path,
            "content_type": content_type,
            "signals": {
                kind: {"value": sv.value, **({"quality": sv.quality} if sv.quality is not None else {})}
                for kind, sv in signals.items()
            },
        }
