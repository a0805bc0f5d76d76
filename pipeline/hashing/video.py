"""vPDQ of a video (the `vpdq` package, built against FFmpeg), for the vPDQ plug-in
(pipeline/plugins/vpdq.py)."""

from __future__ import annotations

import os
import tempfile

from pipeline.hashing.base import HashingError, SignalValue


def vpdq_signal(data: bytes) -> SignalValue:
    """vPDQ hashes of every frame, in python-threatexchange's form (a JSON list of
    `pdq_hex,quality,timestamp`); the signal's quality is the lowest frame quality."""
    import vpdq
    from threatexchange.extensions.vpdq.vpdq_util import VpdqCompactFeature, vpdq_to_json

    with tempfile.NamedTemporaryFile(suffix=".mp4", delete=False) as tmp:
        tmp.write(data)
    try:
        frames = vpdq.computeHash(tmp.name, seconds_per_hash=0)
    except Exception as exc:
        raise HashingError(f"vPDQ could not decode the video: {exc}") from None
    finally:
        os.unlink(tmp.name)
    if not frames:
        raise HashingError("vPDQ found no frames in the video")
    value = vpdq_to_json([VpdqCompactFeature.from_vpdq_feature(f) for f in frames])
    return SignalValue(value, min(f.quality for f in frames))
