"""Video signals: MD5 of the file (python-threatexchange's `video_md5`), and vPDQ when the
`vpdq` package (built against FFmpeg) is installed.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import subprocess
import tempfile

from pipeline.config import load_settings
from pipeline.hashing.base import HashingError, SignalValue

PROBE_TIMEOUT_S = 20.0


def video_seconds(path: str) -> float:
    """The duration the container states (ffprobe); HashingError when it states none or cannot be read."""
    try:
        probe = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", path],
                               capture_output=True, text=True, timeout=PROBE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise HashingError(f"video could not be probed within {PROBE_TIMEOUT_S:g}s") from None
    if probe.returncode != 0:
        reason = (probe.stderr.strip().splitlines() or ["unreadable"])[-1]
        raise HashingError(f"not a readable video: {reason[:200]}")
    try:
        return float(probe.stdout.strip())
    except ValueError:
        raise HashingError("video states no duration (a stream without an end?): refused") from None


class VideoMd5Hasher:
    signal_type = "video_md5"
    content_types = frozenset({"video"})

    def hash_bytes(self, data: bytes) -> SignalValue:
        return SignalValue(hashlib.md5(data).hexdigest())


class VpdqHasher:
    """vPDQ frame hashes, one line per hashed frame: `frame,quality,pdq_hex,timestamp` (the form of
    the vPDQ reference hashes); the signal's quality is the lowest frame quality.
    """

    signal_type = "vpdq"
    content_types = frozenset({"video"})

    def __init__(self, max_seconds: float | None = None) -> None:
        # vPDQ hashes every frame: a video longer than this (or of unknown length) would hold a
        # hashing process for as long as it runs.
        self.max_seconds = max_seconds or load_settings().max_video_seconds

    @staticmethod
    def available() -> bool:
        return importlib.util.find_spec("vpdq") is not None and shutil.which("ffprobe") is not None

    def hash_bytes(self, data: bytes) -> SignalValue:
        import vpdq

        with tempfile.NamedTemporaryFile(suffix=".mp4", delete=False) as tmp:
            tmp.write(data)
        try:
            seconds = video_seconds(tmp.name)
            if seconds > self.max_seconds:
                raise HashingError(f"video of {seconds:.0f}s is over the limit of {self.max_seconds:g}s")
            frames = vpdq.computeHash(tmp.name, seconds_per_hash=0)
        except HashingError:
            raise
        except Exception as exc:
            raise HashingError(f"vPDQ could not decode the video: {exc}") from None
        finally:
            os.unlink(tmp.name)
        if not frames:
            raise HashingError("vPDQ found no frames in the video")
        value = "\n".join(f"{f.frame_number},{f.quality},{f.hex},{f.timestamp:.3f}" for f in frames)
        return SignalValue(value, min(f.quality for f in frames))
