"""PDQ's hash of a float luma plane, through the compiled routine inside pdqhash itself.

pdqhash's Python entry point only takes uint8 pixels (it builds the luma itself, slowly); its
extension module also exports PDQ's C++ ``pdqHash256FromFloatLuma``, which this calls directly
with a luma plane we prepared. Given a 64x64 plane, that routine skips its own downsampling and
computes quality, DCT and median-threshold bits as for any photo: the same code, so the same hash.
"""

from __future__ import annotations

import ctypes

import numpy as np
import pdqhash.bindings

_SYMBOL = "_ZN8facebook3pdq7hashing23pdqHash256FromFloatLumaEPfS2_iiPA64_fS4_PA16_fRNS1_7Hash256ERi"
_floats = np.ctypeslib.ndpointer(dtype=np.float32, flags="C_CONTIGUOUS")
_hash256 = np.ctypeslib.ndpointer(dtype=np.uint16, shape=(16,), flags="C_CONTIGUOUS")

try:
    _routine = getattr(ctypes.CDLL(pdqhash.bindings.__file__), _SYMBOL)
    _routine.restype = None
    _routine.argtypes = [_floats, _floats, ctypes.c_int, ctypes.c_int, _floats, _floats, _floats, _hash256,
                         ctypes.POINTER(ctypes.c_int)]
except (OSError, AttributeError):  # a pdqhash build that does not export it: callers use pdqhash.compute
    _routine = None
AVAILABLE = _routine is not None


def hash_luma(plane: np.ndarray) -> tuple[bytes, int]:
    """(32-byte PDQ hash, most significant bit first, as python-threatexchange's hex; quality)
    of a float32 luma plane, which the routine may overwrite."""
    plane = np.ascontiguousarray(plane, dtype=np.float32)
    rows, cols = plane.shape
    words = np.zeros(16, dtype=np.uint16)
    quality = ctypes.c_int(0)
    _routine(plane, np.empty_like(plane), rows, cols, np.empty((64, 64), np.float32), np.empty((16, 64), np.float32),
             np.empty((16, 16), np.float32), words, ctypes.byref(quality))
    # bit k is bit (k & 15) of word k >> 4; the hex reads bit 255 first: words last to first, big-endian
    return words[::-1].astype(">u2").tobytes(), quality.value
