"""PDQ hashes as index codes: 64 hex digits <-> 32 bytes (uint8), the bit order of bytes.fromhex."""

from __future__ import annotations

from typing import Sequence

import numpy as np

CODE_BYTES = 32


def pdq_hex_to_code(value: str) -> np.ndarray:
    return np.frombuffer(bytes.fromhex(value), dtype=np.uint8)


def codes_from_hex(values: Sequence[str]) -> np.ndarray:
    """(N, 32) uint8 codes from N PDQ hex strings."""
    if len(values) == 0:
        return np.zeros((0, CODE_BYTES), dtype=np.uint8)
    return np.frombuffer(b"".join(bytes.fromhex(v) for v in values), dtype=np.uint8).reshape(-1, CODE_BYTES)


def code_to_hex(code: np.ndarray) -> str:
    return np.asarray(code, dtype=np.uint8).tobytes().hex()


def check_codes(codes: np.ndarray) -> np.ndarray:
    codes = np.ascontiguousarray(codes, dtype=np.uint8)
    if codes.ndim != 2 or codes.shape[1] != CODE_BYTES:
        raise ValueError(f"codes must have shape (N, {CODE_BYTES}), got {codes.shape}")
    return codes


def check_max_distance(max_distance: int) -> int:
    if not 0 <= max_distance <= 256:
        raise ValueError(f"max_distance must be between 0 and 256, got {max_distance}")
    return int(max_distance)
