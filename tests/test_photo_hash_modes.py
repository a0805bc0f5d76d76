"""The photo hasher's two modes: "exact" is python-threatexchange's PDQ bit for bit on any image
(modes, tiny and exactly-64x64 sizes included), "fast" stays within a small distance of it."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from threatexchange.signal_type.pdq.pdq_hasher import pdq_from_bytes

from pipeline.config import Settings
from pipeline.hashing.photo import PdqHasher
from tests.pipeline_env import BRIDGE, hamming

FAST_MAX_DISTANCE = 16  # measured: at most 12 over the shipped and reference sets (BENCHMARKS.md)
MAX_PIXELS = 50_000_000


def encoded(image: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt)
    return buf.getvalue()


def variants() -> dict[str, bytes]:
    """Odd images made from the bridge photo and from noise: every mode, sizes at PDQ's edges."""
    photo = Image.open(BRIDGE / "aaa-orig.jpg").convert("RGB")
    noise = Image.fromarray(np.random.default_rng(3).integers(0, 256, (301, 517, 3), dtype=np.uint8))
    out = {}
    for mode in ("1", "L", "LA", "P", "RGBA", "I;16", "RGB"):
        out[f"mode {mode}"] = encoded(photo.resize((160, 120)).convert(mode), "PNG")
    out["mode CMYK"] = encoded(photo.resize((160, 120)).convert("CMYK"), "JPEG")
    for w, h in ((64, 64), (4, 300), (5, 5), (1, 1), (65, 63), (3000, 7), (128, 129)):
        out[f"{w}x{h}"] = encoded(photo.resize((w, h)), "PNG")
    out["noise"] = encoded(noise, "PNG")
    out["noise grey"] = encoded(noise.convert("L"), "JPEG")
    return out


VARIANTS = variants()


@pytest.mark.parametrize("name", list(VARIANTS))
def test_exact_mode_is_python_threatexchanges_pdq(name):
    data = VARIANTS[name]
    want_hex, want_quality = pdq_from_bytes(data)
    got = PdqHasher(MAX_PIXELS, "exact").hash_bytes(data)
    assert (got.value, got.quality) == (want_hex, want_quality)


def test_fast_mode_stays_near_the_exact_hash(media):
    """Within FAST_MAX_DISTANCE for photos whose hash the pipeline matches on (quality at or above
    pdq_min_quality); a near-flat photo's hash (quality 3-4) is noise that any decode moves."""
    exact, fast = PdqHasher(MAX_PIXELS, "exact"), PdqHasher(MAX_PIXELS, "fast")
    floor = Settings().pdq_min_quality
    distances = {}
    for rel, expected in media.expected_pdq().items():
        data = expected.path.read_bytes()
        want = exact.hash_bytes(data)
        distance = hamming(fast.hash_bytes(data).value, want.value)
        if not rel.lower().endswith((".jpg", ".jpeg")):
            assert distance == 0, rel  # only JPEGs are decoded differently
        if want.quality >= floor:
            distances[rel] = distance
    assert len(distances) >= 10
    assert max(distances.values()) <= FAST_MAX_DISTANCE, distances
    assert any(d > 0 for d in distances.values())  # the reduced decode did happen


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="photo_hash"):
        PdqHasher(MAX_PIXELS, "approximate")


def test_without_pdqhashs_exported_routine_the_reference_path_hashes(monkeypatch):
    from pipeline.hashing import pdq_native

    monkeypatch.setattr(pdq_native, "AVAILABLE", False)
    for name in ("mode L", "mode RGB", "noise grey"):
        got = PdqHasher(MAX_PIXELS, "exact").hash_bytes(VARIANTS[name])
        assert (got.value, got.quality) == pdq_from_bytes(VARIANTS[name]), name
