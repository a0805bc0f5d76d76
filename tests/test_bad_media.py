"""Images and videos as they arrive from users: odd formats hash, hostile ones are refused with a
reason (HashingError), none crashes or holds a hashing process for long."""

from __future__ import annotations

import io
import json
import shutil
import struct
import subprocess
import zlib

import numpy as np
import pytest
from PIL import Image

from pipeline.hashing import HashingError, hash_content
from pipeline.hashing.photo import PdqHasher
from tests.pipeline_env import BRIDGE, bomb_png

PHOTO = Image.open(BRIDGE / "aaa-orig.jpg").convert("RGB").resize((160, 120))


def encoded(image: Image.Image, fmt: str, **options) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def pdq(data: bytes) -> str:
    return hash_content("photo", data)["pdq"].value


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def text_bomb_png() -> bytes:
    """A small valid PNG carrying a zTXt chunk that inflates to 200 MB."""
    small = encoded(PHOTO.resize((8, 8)), "PNG")
    bomb = png_chunk(b"zTXt", b"comment\x00\x00" + zlib.compress(b"\x00" * 200_000_000, 9))
    return small[:33] + bomb + small[33:]  # after the signature and IHDR


def sixteen_bit_png() -> bytes:
    gradient = (np.arange(120 * 160, dtype=np.uint32).reshape(120, 160) * 3).astype(np.uint16)
    return encoded(Image.fromarray(gradient), "PNG")


ODD_BUT_FINE = {
    "CMYK JPEG": lambda: encoded(PHOTO.convert("CMYK"), "JPEG"),
    "CMYK TIFF": lambda: encoded(PHOTO.convert("CMYK"), "TIFF"),
    "16-bit grey PNG": sixteen_bit_png,
    "16-bit TIFF": lambda: encoded(Image.open(io.BytesIO(sixteen_bit_png())), "TIFF"),
    "palette PNG with transparency": lambda: encoded(PHOTO.convert("P"), "PNG", transparency=0),
    "1-bit BMP": lambda: encoded(PHOTO.convert("1"), "BMP"),
    "WebP": lambda: encoded(PHOTO, "WEBP"),
    "progressive JPEG": lambda: encoded(PHOTO, "JPEG", progressive=True),
    "very wide strip 200000x1": lambda: encoded(Image.new("L", (200_000, 1), 128), "PNG"),
    "very tall strip 1x200000": lambda: encoded(Image.new("L", (1, 200_000), 128), "PNG"),
}


@pytest.mark.parametrize("kind", list(ODD_BUT_FINE))
def test_odd_images_hash(kind):
    assert len(pdq(ODD_BUT_FINE[kind]())) == 64


@pytest.mark.parametrize("fmt", ["GIF", "PNG", "WEBP"])
def test_animated_images_hash_their_first_frame(fmt):
    frames = [PHOTO, PHOTO.rotate(90), PHOTO.transpose(Image.Transpose.FLIP_TOP_BOTTOM)]
    animated = encoded(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert Image.open(io.BytesIO(animated)).n_frames == 3
    assert pdq(animated) == pdq(encoded(frames[0], fmt))


def png_chunk_image(width: int, height: int) -> bytes:
    """A PNG header claiming width x height, with a few bytes of data."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))
            + png_chunk(b"IEND", b""))


HOSTILE_CASES = [
    ("decompression bomb", bomb_png), ("decompression bomb", lambda: bomb_png(side=8000)),
    ("decompression bomb", lambda: png_chunk_image(50_000_001, 1)),
    ("truncated", lambda: encoded(PHOTO, "PNG")[:400]), ("truncated", lambda: encoded(PHOTO, "JPEG")[:300]),
    ("not an image", lambda: encoded(PHOTO, "GIF")[:200]), ("not an image", lambda: png_chunk_image(0, 10)),
    ("not an image", lambda: b"GIF89a" + b"\xff" * 10), ("image", lambda: b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", b"\x00" * 3)),
    ("image", text_bomb_png),
]


@pytest.mark.parametrize("reason, make", HOSTILE_CASES)
def test_hostile_images_are_refused_with_a_reason(reason, make):
    with pytest.raises(HashingError) as info:
        PdqHasher(max_pixels=50_000_000).hash_bytes(make())
    assert reason in str(info.value).lower()


# -- videos ---------------------------------------------------------------------------------------
needs_vpdq = pytest.mark.skipif(
    not (shutil.which("ffmpeg") and __import__("importlib").util.find_spec("vpdq")),
    reason="vPDQ and FFmpeg are installed by make setup")


def ffmpeg_video(tmp_path, seconds: int, fps: int = 1) -> bytes:
    out = tmp_path / f"v{seconds}.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc=size=32x32:rate={fps}", "-t", str(seconds),
                    "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(out)], check=True)
    return out.read_bytes()


@needs_vpdq
def test_a_video_too_long_to_hash_is_refused_before_decoding(tmp_path):
    from pipeline.hashing.video import vpdq_signal

    endless = ffmpeg_video(tmp_path, seconds=7200)  # two hours of frames in about 100 KB
    with pytest.raises(HashingError, match="video of 7200s is over the limit of 60s"):
        vpdq_signal(endless, max_seconds=60)
    short = vpdq_signal(ffmpeg_video(tmp_path, seconds=3), max_seconds=60)
    assert len(json.loads(short.value)) == 3


@needs_vpdq
@pytest.mark.parametrize("damage", ["random bytes", "truncated", "header only", "stream without a duration"])
def test_corrupt_videos_are_refused_with_a_reason(tmp_path, damage):
    from pipeline.hashing.video import vpdq_signal

    video = ffmpeg_video(tmp_path, seconds=5)
    data = {
        "random bytes": b"\x00\x00\x00\x18ftypmp42" + np.random.default_rng(3).bytes(5000),
        "truncated": video[: len(video) // 3],
        "header only": video[:32],
        "stream without a duration": raw_h264(tmp_path),
    }[damage]
    with pytest.raises(HashingError) as info:
        vpdq_signal(data, max_seconds=60)
    assert str(info.value)


def raw_h264(tmp_path) -> bytes:
    """An elementary H.264 stream: no container, so no stated duration (as a live stream)."""
    out = tmp_path / "raw.h264"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=32x32:rate=5", "-t", "2",
                    "-c:v", "libx264", "-preset", "ultrafast", "-f", "h264", str(out)], check=True)
    return out.read_bytes()
