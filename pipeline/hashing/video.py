"""Video signals: MD5 of the file (python-threatexchange's `video_md5`), and vPDQ when the
`vpdq` package (built against FFmpeg) is installed.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import tempfile

from pipeline.hashing.base import HashingError, SignalValue


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

    @staticmethod
    def available() -> bool:
        return importlib.util.find_spec("vpdq") is not None

    def hash_bytes(self, data: bytes) -> SignalValue:
        import vpdq

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
        value = "\n".join(f"{f.frame_number},{f.quality},{f.hex},{f.timestamp:.3f}" for f in frames)
        return SignalValue(value, min(f.quality for f in frames))
