"""The hasher plug-in interface: content bytes in, one signal out, or a HashingError with a reason."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


class HashingError(ValueError):
    """Content that cannot be hashed: the message says why (not an image, truncated, too large...)."""


@dataclass(frozen=True)
class SignalValue:
    value: str
    quality: int | None = None


class ContentHasher(Protocol):
    signal_type: str  # python-threatexchange's name
    content_types: frozenset[str]

    def hash_bytes(self, data: bytes) -> SignalValue: ...
