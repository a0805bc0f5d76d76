"""Signal types as matching plug-ins: how a value is validated, identified and indexed.

Names are python-threatexchange's (`pdq`, `video_md5`, `vpdq`). Hashing content into these
signals lives in `pipeline.hashing`; this module is what the matcher and the bank tools need.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass



class InvalidSignal(ValueError):
    """A signal value that its signal type does not accept."""


@dataclass(frozen=True)
class SignalType:
    name: str
    content_types: frozenset[str]
    pattern: re.Pattern[str] | None  # the value's form; None: any non-empty string
    description: str
    default_distance: int  # 0 for exact-match types
    max_distance: int
    matchable: bool = True
    hamming: bool = False  # values are bit strings compared bit by bit; otherwise equal or not

    def distance(self, a: str, b: str) -> int:
        """How far apart two valid values are: differing bits, or 0 / 1 for exact-match types."""
        if self.hamming:
            return bin(int(a, 16) ^ int(b, 16)).count("1")
        return 0 if a == b else 1

    def validate(self, value: object) -> str:
        """The value normalised (lower-case hex), or InvalidSignal saying what is wrong."""
        if not isinstance(value, str) or not value:
            raise InvalidSignal(f"{self.name} value must be a non-empty string")
        if self.pattern is not None:
            if not self.pattern.fullmatch(value):
                raise InvalidSignal(f"{self.name} value must be {self.description}, got {_preview(value)}")
            return value.lower()
        return value


def _preview(value: str) -> str:
    return repr(value if len(value) <= 24 else value[:21] + "...") + f" ({len(value)} characters)"


PDQ = SignalType(
    "pdq", frozenset({"photo"}), re.compile(r"[0-9a-fA-F]{64}"), "64 hex characters",
    default_distance=31, max_distance=256, hamming=True,
)
VIDEO_MD5 = SignalType(
    "video_md5", frozenset({"video"}), re.compile(r"[0-9a-fA-F]{32}"), "32 hex characters",
    default_distance=0, max_distance=0,
)
VPDQ = SignalType(
    "vpdq", frozenset({"video"}), re.compile(r"(\d+,\d+,[0-9a-fA-F]{64},[0-9.]+\n?)+"),
    "lines of frame,quality,pdq_hex,timestamp", default_distance=31, max_distance=31, matchable=False,
)

SIGNAL_TYPES: dict[str, SignalType] = {t.name: t for t in (PDQ, VIDEO_MD5, VPDQ)}


def signal_type(name: str) -> SignalType:
    try:
        return SIGNAL_TYPES[name]
    except KeyError:
        raise InvalidSignal(f"unknown signal type {name!r}; known: {', '.join(SIGNAL_TYPES)}") from None


def signal_id(signal_type_name: str, value: str) -> str:
    """A short stable id for a signal value, the same in every bank (flood counting is per signal)."""
    return hashlib.sha256(f"{signal_type_name}:{value}".encode()).hexdigest()[:16]


