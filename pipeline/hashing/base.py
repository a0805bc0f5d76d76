"""What hashing gives: a signal value (and its quality, for types that have one), or a HashingError with a reason."""

from __future__ import annotations

from dataclasses import dataclass


class HashingError(ValueError):
    """Content that cannot be hashed: the message says why (not an image, truncated, too large...)."""


@dataclass(frozen=True)
class SignalValue:
    value: str
    quality: int | None = None
