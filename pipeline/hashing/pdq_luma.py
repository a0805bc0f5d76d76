"""PDQ's downsampling of a photo to 64x64 luma, bit for bit as pdqhash computes it, in compiled code.

pdqhash (what python-threatexchange hashes with) spends most of a photo's time outside PDQ's
arithmetic proper: it builds the luma plane through float64 numpy temporaries, then its C++ box
filter walks every column with a stride of a whole row, one cache miss per pixel. Here the same
float operations, in the same order per value, run fused and row by row:

- luma: float64 ``r*0.299 + g*0.587 + b*0.114`` rounded to float32 (numpy's expression, evaluated
  left to right; no fused multiply-add, as numba does not contract without fastmath);
- Jarosz's tent filter: two passes of a 1-D running-sum box filter along rows then columns, each
  value's sum accumulated in float32 in the order PDQ's ``box1DFloat`` does (phases 1-4), the
  column pass advancing all columns of a row at once (the same per-column sums, in cache order);
- decimation at the 64x64 cell centres.

The 64x64 result goes to pdqhash's own quality metric, DCT and median (pdq_native), so the hash
and quality are the reference's; tests check it on every shipped and reference image.
"""

from __future__ import annotations

import numpy as np
from numba import njit

SIDE = 64
PASSES = 2  # X,Y,X,Y: a tent filter


def window_size(old: int, new: int = SIDE) -> int:
    return (old + 2 * new - 1) // (2 * new)


@njit(cache=True, nogil=True)
def _luma_rgb(pixels: np.ndarray, out: np.ndarray) -> None:
    rows, cols = out.shape
    for i in range(rows):
        for j in range(cols):
            r = np.float64(pixels[i, j, 0])
            g = np.float64(pixels[i, j, 1])
            b = np.float64(pixels[i, j, 2])
            out[i, j] = np.float32(r * 0.299 + g * 0.587 + b * 0.114)


@njit(cache=True, nogil=True)
def _luma_grey(pixels: np.ndarray, out: np.ndarray) -> None:
    """A grey pixel is r = g = b, and the same float64 expression gives its luma."""
    rows, cols = out.shape
    for i in range(rows):
        for j in range(cols):
            v = np.float64(pixels[i, j])
            out[i, j] = np.float32(v * 0.299 + v * 0.587 + v * 0.114)


@njit(cache=True, nogil=True)
def _box_rows(src: np.ndarray, dst: np.ndarray, window: int) -> None:
    rows, n = src.shape
    half = (window + 2) // 2
    p1, p2, p3, p4 = half - 1, window - half + 1, n - window, half - 1
    for i in range(rows):
        s = np.float32(0.0)
        size = 0
        ri = li = oi = 0
        for _ in range(p1):
            s += src[i, ri]
            size += 1
            ri += 1
        for _ in range(p2):
            s += src[i, ri]
            size += 1
            dst[i, oi] = s / np.float32(size)
            ri += 1
            oi += 1
        for _ in range(p3):
            s += src[i, ri]
            s -= src[i, li]
            dst[i, oi] = s / np.float32(size)
            li += 1
            ri += 1
            oi += 1
        for _ in range(p4):
            s -= src[i, li]
            size -= 1
            dst[i, oi] = s / np.float32(size)
            li += 1
            oi += 1


@njit(cache=True, nogil=True)
def _box_cols(src: np.ndarray, dst: np.ndarray, window: int, sums: np.ndarray) -> None:
    """The same running sums as _box_rows down every column, all columns advanced a row at a time."""
    n, cols = src.shape
    half = (window + 2) // 2
    p1, p2, p3, p4 = half - 1, window - half + 1, n - window, half - 1
    sums[:] = 0
    size = 0
    ri = li = oi = 0
    for _ in range(p1):
        for j in range(cols):
            sums[j] += src[ri, j]
        size += 1
        ri += 1
    for _ in range(p2):
        size += 1
        d = np.float32(size)
        for j in range(cols):
            sums[j] += src[ri, j]
            dst[oi, j] = sums[j] / d
        ri += 1
        oi += 1
    d = np.float32(size)
    for _ in range(p3):
        for j in range(cols):
            sums[j] += src[ri, j]
            sums[j] -= src[li, j]
            dst[oi, j] = sums[j] / d
        li += 1
        ri += 1
        oi += 1
    for _ in range(p4):
        size -= 1
        d = np.float32(size)
        for j in range(cols):
            sums[j] -= src[li, j]
            dst[oi, j] = sums[j] / d
        li += 1
        oi += 1


@njit(cache=True, nogil=True)
def _downsample(luma: np.ndarray, spare: np.ndarray, out: np.ndarray) -> None:
    rows, cols = luma.shape
    along_rows = (cols + 2 * 64 - 1) // (2 * 64)
    along_cols = (rows + 2 * 64 - 1) // (2 * 64)
    sums = np.empty(cols, dtype=np.float32)
    for _ in range(2):
        _box_rows(luma, spare, along_rows)
        _box_cols(spare, luma, along_cols, sums)
    for oi in range(64):
        i = int(((oi + 0.5) * rows) / 64)
        for oj in range(64):
            j = int(((oj + 0.5) * cols) / 64)
            out[oi, oj] = luma[i, j]


def luma(pixels: np.ndarray) -> np.ndarray:
    """The float32 luma plane of uint8 pixels (H x W grey, or H x W x C with R, G, B first)."""
    out = np.empty(pixels.shape[:2], dtype=np.float32)
    if pixels.ndim == 2:
        _luma_grey(pixels, out)
    else:
        _luma_rgb(pixels, out)
    return out


def downsample_64(plane: np.ndarray) -> np.ndarray:
    """PDQ's 64x64 blur-and-decimate of a luma plane of at least 5x5 (the plane is overwritten)."""
    out = np.empty((SIDE, SIDE), dtype=np.float32)
    _downsample(plane, np.empty_like(plane), out)
    return out
