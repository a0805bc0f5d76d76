"""Hashing: identical PDQ bits to python-threatexchange on the reference media; bad content refused."""

import hashlib
import io
import json
import subprocess
import sys

import pytest
from PIL import Image

from pipeline.hashing import HashingError, detect_content_type, hash_content, hash_files
from tests.pipeline_env import BRIDGE, REPO, bomb_png, hamming

ORIGINAL = BRIDGE / "aaa-orig.jpg"
ACCEPTANCE_QUALITY, ACCEPTANCE_DISTANCE = 80, 10  # PDQ's rule for an implementation against the reference


def test_hmas_hash_reproduces_the_reference_csv(media):
    """`hmas hash` over every image of the media set: identical pdq_hex and quality."""
    expected = media.expected_pdq()
    assert expected, f"no images listed in {media.root}"
    out = subprocess.run([sys.executable, "-m", "pipeline", "hash", *(str(e.path) for e in expected.values())],
                         cwd=REPO, capture_output=True, text=True)
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert len(lines) == len(expected), out.stderr[-2000:]
    for want, line in zip(expected.values(), lines):
        assert line["content_type"] == "photo", line
        assert (line["signals"]["pdq"]["value"], line["signals"]["pdq"]["quality"]) == (want.pdq, want.quality), want.rel


def test_video_md5_is_the_files_md5(media):
    videos = media.videos()
    assert videos, f"no videos in {media.root}"
    for video, _ in videos:
        data = video.read_bytes()
        assert detect_content_type(data, video.name) == "video"
        assert hash_content("video", data)["video_md5"].value == hashlib.md5(data).hexdigest()


BAD_CONTENT = {
    "not an image": lambda: b"just some text, not a picture",
    "truncated": lambda: ORIGINAL.read_bytes()[:20000],
    "decompression bomb: 30000x30000": bomb_png,
    "empty content": lambda: b"",
}


@pytest.mark.parametrize("reason", list(BAD_CONTENT))
def test_bad_content_is_refused_with_a_reason(reason):
    with pytest.raises(HashingError) as info:
        hash_content("photo", BAD_CONTENT[reason]())
    assert reason in str(info.value)


def test_image_modes_hash_without_error():
    for mode in ("1", "L", "LA", "P", "RGBA", "CMYK", "I;16"):
        buf = io.BytesIO()
        Image.open(ORIGINAL).convert("RGB").resize((128, 96)).convert(mode).save(buf, "PNG" if mode != "CMYK" else "JPEG")
        assert len(hash_content("photo", buf.getvalue())["pdq"].value) == 64


def test_hash_files_reports_errors_per_file(tmp_path):
    bad = tmp_path / "photo.jpg"  # named like a photo (a .txt file is hashed as text)
    bad.write_text("hello")
    good, failed, missing = hash_files([str(ORIGINAL), str(bad), str(tmp_path / "missing.jpg")])
    assert good["signals"]["pdq"]["quality"] == 100
    assert "not an image" in failed["error"] and "missing.jpg" in missing["error"]


def test_vpdq_matches_the_reference_frame_hashes(media):
    """PDQ's acceptance rule, frame by frame: the frames of quality >= 80 are the reference's, each within distance 10.

    FFmpeg versions decode a few pixels differently; on frames of low quality (dark, flat) that moves the hash a lot.
    """
    pytest.importorskip("vpdq", reason="vpdq is installed by make setup (needs FFmpeg dev packages)")
    from threatexchange.extensions.vpdq.vpdq_util import json_to_vpdq

    videos = media.videos()
    assert videos, f"no videos in {media.root}"
    for video, reference_file in videos:
        ours = json_to_vpdq(hash_content("video", video.read_bytes())["vpdq"].value)
        reference = [line.split(",") for line in reference_file.read_text().split()]
        assert len(ours) == len(reference), video.name
        usable = [i for i, frame in enumerate(reference) if int(frame[1]) >= ACCEPTANCE_QUALITY]
        assert usable and usable == [i for i, frame in enumerate(ours) if frame.quality >= ACCEPTANCE_QUALITY], video.name
        worst = max(hamming(ours[i].pdq_hex, reference[i][2]) for i in usable)
        assert worst <= ACCEPTANCE_DISTANCE, (video.name, worst)
