"""Hashing content into signals: every signal type's plug-in that hashes the content type
(pipeline/signal_types.py; names from python-threatexchange).

`hash_content` is a top-level function of bytes so that the hasher agent can run it in worker
processes, off the event loop.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Iterator

from pipeline.hashing.base import HashingError, SignalValue

__all__ = ["HashingError", "SignalValue", "hash_content", "hash_files", "detect_content_type", "URL_CONTENT"]

VIDEO_EXTENSIONS = {".mp4", ".m4v", ".mov", ".webm", ".mkv", ".avi", ".flv", ".mpg", ".mpeg", ".ts", ".3gp"}
URL_CONTENT = "url"  # python-threatexchange's URLContent: the address is the content, never fetched


def hash_content(content_type: str, data: bytes) -> dict[str, SignalValue]:
    """Every signal of the content type's signal types; HashingError if the content cannot be hashed."""
    from pipeline.signal_types import SIGNAL_TYPES

    if not data:
        raise HashingError("empty content")
    plugins = [p for p in SIGNAL_TYPES.values() if content_type in p.content_types]
    if not plugins:
        raise HashingError(f"no signal type hashes content type {content_type!r}")
    signals = {}
    for plugin in plugins:
        signal = plugin.hash_content(content_type, data)
        if signal is not None:
            signals[plugin.name] = signal
    if not signals:
        raise HashingError(f"no signal type could hash this {content_type}")
    return signals


def detect_content_type(data: bytes, filename: str | None = None) -> str:
    """'video' for the common video containers (by magic bytes, then extension), 'text' for a
    .txt file, else 'photo'."""
    head = data[:16]
    if head[4:8] == b"ftyp" or head[:4] == b"\x1a\x45\xdf\xa3" or head[:3] == b"FLV":
        return "video"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "video"
    if filename and Path(filename).suffix.lower() in VIDEO_EXTENSIONS:
        return "video"
    if filename and Path(filename).suffix.lower() == ".txt":
        return "text"
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
