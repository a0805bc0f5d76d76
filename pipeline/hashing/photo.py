"""PDQ for photos, computed as python-threatexchange's PDQ signal type does (pdqhash on the
decoded pixels, no EXIF rotation), with the image checked before its pixels are decoded.

Two modes (setting `photo_hash`):
- "exact" (default): the reference's hash and quality bit for bit, about 4x faster per core than
  pdqhash's own entry point: the luma plane and PDQ's blur-and-decimate run in compiled code in
  cache order (pdq_luma), then pdqhash's compiled DCT and median (pdq_native).
- "fast": JPEGs are decoded at a reduced scale in the DCT domain (libjpeg's scaled IDCT, through
  Pillow's draft mode), no smaller than FAST_MIN_SIDE on either side, and colour JPEGs to their Y
  (luma) plane only, before the same PDQ. PDQ
  blurs each 1/64th of the photo into one value anyway, so the hash moves by a few bits at most
  (BENCHMARKS.md measures it and its effect on match decisions); other formats hash exactly.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import pdqhash
from PIL import Image, UnidentifiedImageError

from pipeline.config import load_settings
from pipeline.hashing import pdq_luma, pdq_native
from pipeline.hashing.base import HashingError, SignalValue

PHOTO_HASH_MODES = ("exact", "fast")
FAST_MIN_SIDE = 256  # the fast mode's decode keeps at least this many pixels per side

# Pillow's own bomb check is replaced by ours (the limit comes from the settings).
Image.MAX_IMAGE_PIXELS = None


def decode_image(data: bytes, max_pixels: int, reduced: bool = False) -> Image.Image:
    """The decoded image; with `reduced`, a JPEG decoded at 1/2, 1/4 or 1/8 scale where it stays
    at least FAST_MIN_SIDE pixels on both sides."""
    try:
        image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise HashingError("not an image (no decoder recognises the bytes)") from None
    except Exception as exc:  # malformed headers raise many types
        raise HashingError(f"not a readable image: {exc}") from None
    width, height = image.size
    if width * height > max_pixels:
        raise HashingError(
            f"decompression bomb: {width}x{height} = {width * height} pixels is over the limit of {max_pixels}"
        )
    if width == 0 or height == 0:
        raise HashingError(f"empty image ({width}x{height})")
    if reduced and image.format == "JPEG":
        # libjpeg decodes only the Y plane for "L": JPEG's Y is PDQ's luma (0.299 R + 0.587 G +
        # 0.114 B), so colour conversion and chroma upsampling are skipped, not approximated
        image.draft("L" if image.mode in ("RGB", "L") else image.mode, (FAST_MIN_SIDE, FAST_MIN_SIDE))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            image.load()
    except OSError as exc:
        raise HashingError(f"image could not be decoded, it may be truncated: {exc}") from None
    except Exception as exc:
        raise HashingError(f"image could not be decoded: {exc}") from None
    return image


def pixel_array(image: Image.Image) -> np.ndarray:
    """The pixels as python-threatexchange prepares them for pdqhash; 8-bit grey stays one
    channel (pdq_luma reads it as r = g = b), other grey is repeated to three channels."""
    if image.mode in ("LA", "I;16"):
        image = image.convert("RGB")
    array = np.asarray(image)
    if array.dtype == np.bool_:
        # pdqhash.compute's luma reads 1-bit pixels as 0 and 1 (Pillow's bytes behind them are 0 and 255)
        array = np.minimum(array.view(np.uint8), 1)
    if array.ndim == 2 and array.dtype != np.uint8:
        array = np.repeat(array[..., np.newaxis], 3, axis=2)  # pdqhash.compute's layout
    return array


def pdq_of_pixels(array: np.ndarray) -> tuple[str, int]:
    """(hex hash, quality) of the array pixel_array gives, as pdqhash.compute gives them."""
    if not pdq_native.AVAILABLE or array.dtype != np.uint8 or (array.ndim == 3 and array.shape[2] < 3):
        if array.ndim == 2:
            array = np.repeat(array[..., np.newaxis], 3, axis=2)
        bits, quality = pdqhash.compute(array)  # unusual layouts (1-bit, 16-bit): the reference itself
        return np.packbits(np.asarray(bits, dtype=np.uint8)).tobytes().hex(), int(quality)
    plane = pdq_luma.luma(array)
    rows, cols = plane.shape
    if min(rows, cols) >= 5 and (rows, cols) != (pdq_luma.SIDE, pdq_luma.SIDE):
        plane = pdq_luma.downsample_64(plane)  # PDQ's routine takes a 64x64 plane as already downsampled
    code, quality = pdq_native.hash_luma(plane)
    return code.hex(), quality


class PdqHasher:
    """The PDQ plug-in's hasher (pipeline/plugins/pdq.py)."""

    def __init__(self, max_pixels: int | None = None, mode: str | None = None) -> None:
        settings = load_settings() if max_pixels is None or mode is None else None
        self.max_pixels = max_pixels or settings.max_image_pixels
        self.mode = mode or settings.photo_hash
        if self.mode not in PHOTO_HASH_MODES:
            raise ValueError(f"photo_hash must be one of {', '.join(PHOTO_HASH_MODES)}, not {self.mode!r}")

    def hash_bytes(self, data: bytes) -> SignalValue:
        image = decode_image(data, self.max_pixels, reduced=self.mode == "fast")
        try:
            code, quality = pdq_of_pixels(pixel_array(image))
        except Exception as exc:
            raise HashingError(f"PDQ could not hash this image ({image.mode}, {image.size}): {exc}") from None
        return SignalValue(code, quality)
