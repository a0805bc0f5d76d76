"""PDQ for photos, computed as python-threatexchange's PDQ signal type does (pdqhash on the
decoded pixels, no EXIF rotation), with the image checked before its pixels are decoded.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import pdqhash
from PIL import Image, UnidentifiedImageError

from pipeline.config import load_settings
from pipeline.hashing.base import HashingError, SignalValue

# Pillow's own bomb check is replaced by ours (the limit comes from the settings).
Image.MAX_IMAGE_PIXELS = None


def decode_image(data: bytes, max_pixels: int) -> Image.Image:
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
    """The array pdqhash is given, as python-threatexchange prepares it."""
    if image.mode in ("LA", "I;16"):
        image = image.convert("RGB")
    array = np.asarray(image)
    if array.ndim == 2:
        array = np.repeat(array[..., np.newaxis], 3, axis=2)
    return array


class PdqHasher:
    """The PDQ plug-in's hasher (pipeline/plugins/pdq.py)."""

    def __init__(self, max_pixels: int | None = None) -> None:
        self.max_pixels = max_pixels or load_settings().max_image_pixels

    def hash_bytes(self, data: bytes) -> SignalValue:
        image = decode_image(data, self.max_pixels)
        try:
            bits, quality = pdqhash.compute(pixel_array(image))
        except Exception as exc:
            raise HashingError(f"PDQ could not hash this image ({image.mode}, {image.size}): {exc}") from None
        return SignalValue(np.packbits(np.asarray(bits, dtype=np.uint8)).tobytes().hex(), int(quality))
