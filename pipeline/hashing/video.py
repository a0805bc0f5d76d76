"""vPDQ of a video (the `vpdq` package, built against FFmpeg), for the vPDQ plug-in
(pipeline/plugins/vpdq.py), with the video's stated length checked first: vPDQ hashes every frame,
so a video longer than the limit (or of unknown length) would hold a hashing process for as long
as it runs."""

from __future__ import annotations

import os
import subprocess
import tempfile

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


def vpdq_signal(data: bytes, max_seconds: float) -> SignalValue:
    """vPDQ hashes of every frame, in python-threatexchange's form (a JSON list of
    `pdq_hex,quality,timestamp`); the signal's quality is the lowest frame quality."""
    import vpdq
    from threatexchange.extensions.vpdq.vpdq_util import VpdqCompactFeature, vpdq_to_json

    with tempfile.NamedTemporaryFile(suffix=".mp4", delete=False) as tmp:
        tmp.write(data)
    try:
        seconds = video_seconds(tmp.name)
        if seconds > max_seconds:
            raise HashingError(f"video of {seconds:.0f}s is over the limit of {max_seconds:g}s")
        frames = vpdq.computeHash(tmp.name, seconds_per_hash=0)
    except HashingError:
        raise
    except Exception as exc:
        raise HashingError(f"vPDQ could not decode the video: {exc}") from None
    finally:
        os.unlink(tmp.name)
    if not frames:
        raise HashingError("vPDQ found no frames in the video")
    value = vpdq_to_json([VpdqCompactFeature.from_vpdq_feature(f) for f in frames])
    return SignalValue(value, min(f.quality for f in frames))
