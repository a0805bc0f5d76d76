"""Hashing: identical PDQ bits to python-threatexchange on the reference media; bad content refused."""

import hashlib
import io
import json
import subprocess
import sys

import pytest
from PIL import Image

from pipeline.hashing import HashingError, detect_content_type, hash_content, hash_files
from tests.pipeline_env import REPO, TESTDATA, bomb_png, expected_pdq, hamming

EXPECTED = expected_pdq()
BRIDGE = TESTDATA / "pdq/data/bridge-mods/aaa-orig.jpg"


def test_hmas_hash_reproduces_the_reference_csv():
    """`hmas hash` over every image of the reference media: identical pdq_hex and quality."""
    paths = [str(TESTDATA / p) for p in EXPECTED]
    out = subprocess.run([sys.executable, "-m", "pipeline", "hash", *paths], cwd=REPO, capture_output=True, text=True)
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert len(lines) == len(EXPECTED)
    for rel, line in zip(EXPECTED, lines):
        assert line["content_type"] == "photo", line
        assert (line["signals"]["pdq"]["value"], line["signals"]["pdq"]["quality"]) == EXPECTED[rel], rel


def test_video_md5_is_the_files_md5():
    video = sorted((TESTDATA / "tmk/sample-videos").glob("*.mp4"))[0]
    data = video.read_bytes()
    assert detect_content_type(data, video.name) == "video"
    assert hash_content("video", data)["video_md5"].value == hashlib.md5(data).hexdigest()


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"just some text, not a picture", "not an image"),
        (BRIDGE.read_bytes()[:20000], "truncated"),
        (bomb_png(), "decompression bomb: 30000x30000"),
        (b"", "empty content"),
    ],
)
def test_bad_content_is_refused_with_a_reason(data, reason):
    with pytest.raises(HashingError) as info:
        hash_content("photo", data)
    assert reason in str(info.value)


def test_image_modes_hash_without_error():
    for mode in ("1", "L", "LA", "P", "RGBA", "CMYK", "I;16"):
        buf = io.BytesIO()
        Image.open(BRIDGE).convert("RGB").resize((128, 96)).convert(mode).save(buf, "PNG" if mode != "CMYK" else "JPEG")
        assert len(hash_content("photo", buf.getvalue())["pdq"].value) == 64


def test_hash_files_reports_errors_per_file(tmp_path):
    bad = tmp_path / "notes.txt"
    bad.write_text("hello")
    good, failed, missing = hash_files([str(BRIDGE), str(bad), str(tmp_path / "missing.jpg")])
    assert good["signals"]["pdq"]["quality"] == 100
    assert "not an image" in failed["error"] and "missing.jpg" in missing["error"]


def test_vpdq_matches_the_reference_frame_hashes():
    pytest.importorskip("vpdq", reason="vpdq is installed by make setup (needs FFmpeg dev packages)")
    video = TESTDATA / "tmk/sample-videos/chair-19-sd-bar.mp4"
    signals = hash_content("video", video.read_bytes())
    reference = (TESTDATA / "vpdq/sample-hashes/chair-19-sd-bar.txt").read_text().split()
    ours = signals["vpdq"].value.split()
    assert len(ours) == len(reference)
    # FFmpeg versions decode a few pixels differently; PDQ's acceptance rule allows distance 10.
    distances = [hamming(a.split(",")[2], b.split(",")[2]) for a, b in zip(ours, reference)]
    assert max(distances) <= 10
