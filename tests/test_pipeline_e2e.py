"""Photos in, actions out: the worker on the real broker, from hma.uploads to hma.actions."""

from __future__ import annotations

import base64
import http.server
import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from pipeline import topics as T
from pipeline.client import Client
from pipeline.uploads import new_upload
from tests.pipeline_env import (
    BRIDGE, BRIDGE_ORIGINAL, SHIPPED_MEDIA, ExpectedPdq, MediaSet, WorkerProcess, bomb_png, collect_until, hamming,
    hmas, pipeline_env, settings_from,
)

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

DEFAULT_DISTANCE, MIN_QUALITY = 31, 50  # a bank's default PDQ distance; the quality below which PDQ is not matched
FETCH_HOST = "127.0.0.2"  # allow-listed for the test server; 127.0.0.1 stays refused
SIZE_CAP = 4_000_000  # above the largest photo of the reference media (3.7 MB)


class ContentServer(http.server.ThreadingHTTPServer):
    daemon_threads = True


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's naming)
        if self.path == "/bridge.jpg":
            self._send(200, (BRIDGE / "blur-a-little.jpg").read_bytes())
        elif self.path == "/slow.jpg":
            time.sleep(6)  # a server slower than the worker's 2 s fetch timeout: what the test is about
            self._send(200, b"late")
        elif self.path == "/big.jpg":
            self._send(200, b"\xff" * (SIZE_CAP + 1000))
        else:
            self._send(404, b"not here")

    def _send(self, status: int, body: bytes) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def content_server():
    server = ContentServer((FETCH_HOST, 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://{FETCH_HOST}:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture(scope="module")
def pipeline(kafka_broker, tmp_path_factory):
    """Topics, a bank holding the original bridge photo, and a worker."""
    tmp = tmp_path_factory.mktemp("pipeline")
    env = pipeline_env(
        kafka_broker.bootstrap, tmp / "state",
        HMAS_FETCH_ALLOW_HOSTS=FETCH_HOST, HMAS_FETCH_TIMEOUT_S="2", HMAS_FETCH_MAX_BYTES=str(SIZE_CAP),
    )
    hmas(env, "topics", "create")
    hmas(env, "bank", "create", "BRIDGE", "--action", "remove")
    hmas(env, "bank", "add", "BRIDGE", str(SHIPPED_MEDIA.path(BRIDGE_ORIGINAL)))
    worker = WorkerProcess(env, tmp / "worker.log").start()
    yield settings_from(env)
    worker.stop()


def submit(settings, uploads):
    client = Client(settings)
    for upload in uploads:
        client.produce(T.UPLOADS, upload["content_id"], upload)
    client.flush()


def photo(content_id: str, path: Path) -> dict:
    return new_upload(content_id, "photo", content=path.read_bytes())


Images = dict[str, ExpectedPdq]  # by content id


def by_distance_to_the_original(media: MediaSet) -> tuple[Images, Images, Images]:
    """The set's images by content id, in three groups by their reference hashes: near the banked bridge
    photo (its copies and edits), far from it, and of too low a quality to match."""
    expected = media.expected_pdq()
    original = expected[BRIDGE_ORIGINAL].pdq
    near, far, low = {}, {}, {}
    for image in expected.values():
        group = low if image.quality < MIN_QUALITY else near if hamming(image.pdq, original) <= DEFAULT_DISTANCE else far
        group[f"{media.name}:{image.rel}"] = image
    return near, far, low


def test_copies_and_edits_of_a_banked_photo_produce_actions(pipeline, media):
    near, _, _ = by_distance_to_the_original(media)
    assert len(near) > 1, f"no edits of {BRIDGE_ORIGINAL} in {media.root}"
    original = media.expected_pdq()[BRIDGE_ORIGINAL].pdq
    submit(pipeline, [photo(cid, image.path) for cid, image in near.items()])

    actions = collect_until(pipeline, T.ACTIONS, set(near))
    assert set(actions) >= set(near)
    for cid, image in near.items():
        [action] = actions[cid]
        [hit] = action["matches"]
        want = hamming(image.pdq, original)
        assert (action["action"], hit["bank"], hit["distance"], hit["status"]) == ("remove", "BRIDGE", want, "match"), cid
        assert hit["threshold"] == DEFAULT_DISTANCE and hit["bank_content_id"] == 1


def test_unrelated_and_low_quality_photos_get_an_empty_match_record_and_no_action(pipeline, media):
    _, far, low = by_distance_to_the_original(media)
    assert far and low, f"{media.root} lacks unrelated or low-quality photos"
    uploads = {**far, **low}
    submit(pipeline, [photo(cid, image.path) for cid, image in uploads.items()])
    matches = collect_until(pipeline, T.MATCHES, set(uploads))
    for cid in uploads:
        [record] = matches[cid]
        assert record["matches"] == [], cid
    assert all(f"below {MIN_QUALITY}" in matches[cid][0]["skipped"]["pdq"] for cid in low)
    # A matching upload submitted after them proves the actioner has read past them.
    marker = f"{media.name}:after-unrelated"
    submit(pipeline, [photo(marker, BRIDGE / "blur-a-lot.jpg")])
    actions = collect_until(pipeline, T.ACTIONS, {marker})
    assert marker in actions and not set(actions) & set(uploads)


def bad_uploads(server: str) -> dict[str, tuple[bytes, str]]:
    """content id -> (raw value produced to hma.uploads, part of the dead letter's reason)."""
    truncated = SHIPPED_MEDIA.path(BRIDGE_ORIGINAL).read_bytes()[:20000]

    def up(cid: str, **fields) -> bytes:
        return json.dumps({"content_id": cid, "content_type": "photo", **fields}).encode()

    def inline(data: bytes) -> str:
        return base64.b64encode(data).decode()

    return {
        "bad-bytes": (b"\x00\x01\x02 not json, not avro", "neither a JSON object nor Avro"),
        "bad-no-id": (json.dumps({"content_type": "photo", "url": f"{server}/bridge.jpg"}).encode(), "content_id: missing"),
        "bad-type": (up("bad-type", content_type="gif", url=f"{server}/bridge.jpg"), "content_type"),
        "bad-no-source": (up("bad-no-source"), "got none"),
        "bad-two-sources": (up("bad-two-sources", url=f"{server}/bridge.jpg", signals={"pdq": "0" * 64}), "got url, signals"),
        "bad-pdq": (up("bad-pdq", signals={"pdq": "12345"}), "64 hex characters"),
        "bad-base64": (up("bad-base64", content_b64="%%%not-base64%%%"), "invalid base64"),
        "bad-not-image": (up("bad-not-image", content_b64=inline(b"just some text, not a picture")), "not an image"),
        "bad-truncated": (up("bad-truncated", content_b64=inline(truncated)), "truncated"),
        "bad-bomb": (up("bad-bomb", content_b64=inline(bomb_png())), "decompression bomb"),
        "bad-timeout": (up("bad-timeout", url=f"{server}/slow.jpg"), "timed out"),
        "bad-404": (up("bad-404", url=f"{server}/missing.jpg"), "404"),
        "bad-loopback": (up("bad-loopback", url="http://127.0.0.1:9/x.jpg"), "127.0.0.1"),
        "bad-private": (up("bad-private", url="http://10.1.2.3/x.jpg"), "10.1.2.3"),
        "bad-metadata-ip": (up("bad-metadata-ip", url="http://169.254.169.254/latest/meta-data"), "169.254.169.254"),
        "bad-too-big": (up("bad-too-big", url=f"{server}/big.jpg"), "cap"),
        "bad-avro-schema": (b"\xc3\x01" + b"\x01" * 8 + b"\x00", "fingerprint"),
    }


def test_bad_input_goes_to_dead_letters_with_its_bytes_and_the_worker_goes_on(pipeline, content_server):
    bad = bad_uploads(content_server)
    client = Client(pipeline)
    for cid, (raw, _) in bad.items():
        client.produce_raw(T.UPLOADS, cid, raw)
    good = new_upload("good-after-bad", "photo", url=f"{content_server}/bridge.jpg")
    client.produce(T.UPLOADS, good["content_id"], good)
    client.flush()

    letters = collect_until(pipeline, T.DEAD_LETTERS, set(bad), timeout_s=120)
    for cid, (raw, reason) in bad.items():
        assert cid in letters, f"no dead letter for {cid}"
        [letter] = letters[cid]
        assert reason.lower() in letter["reason"].lower(), (cid, letter["reason"])
        assert base64.b64decode(letter["original_value_b64"]) == raw
        assert base64.b64decode(letter["original_key_b64"]) == cid.encode()
        assert letter["topic"] == T.UPLOADS.name(pipeline) and letter["stage"] == "hasher"
        assert letter["offset"] >= 0 and letter["partition"] in (0, 1)
    hashed = collect_until(pipeline, T.HASHES, {"good-after-bad"})
    assert hashed["good-after-bad"][0]["source"] == "url"


def test_every_upload_is_accounted_for(pipeline, content_server):
    """200 uploads in: each one comes out once, as a hashes record or as a dead letter."""
    rng = np.random.default_rng(3)
    bad = list(bad_uploads(content_server).values())
    photos = sorted(BRIDGE.glob("*.jpg"))
    assert photos
    client = Client(pipeline)
    sent: dict[str, str] = {}
    for i in range(200):
        cid = f"mix-{i:03d}"
        if i % 10 == 0:
            client.produce_raw(T.UPLOADS, cid, bad[(i // 10) % len(bad)][0])
            sent[cid] = "dead"
        elif i % 10 == 1:
            client.produce(T.UPLOADS, cid, photo(cid, photos[i % len(photos)]))
            sent[cid] = "hashed"
        else:
            pdq = rng.integers(0, 256, 32, dtype=np.uint8).tobytes().hex()
            client.produce(T.UPLOADS, cid, new_upload(cid, "photo", signals={"pdq": pdq}))
            sent[cid] = "hashed"
    client.flush()

    deadline = time.monotonic() + 150
    out: dict[str, list[str]] = {}
    while time.monotonic() < deadline and len(out) < len(sent):
        out = {}
        for spec, kind in ((T.HASHES, "hashed"), (T.DEAD_LETTERS, "dead")):
            for key, _ in Client(pipeline).read(spec, to_end=True, raw=True):
                if key in sent:
                    out.setdefault(key, []).append(kind)
    assert {cid: [kind] for cid, kind in sent.items()} == out
    hashed = {c for c, k in sent.items() if k == "hashed"}
    matched = {c: records for c, records in collect_until(pipeline, T.MATCHES, hashed).items() if c in sent}
    assert sorted(matched) == sorted(hashed)
    assert all(len(records) == 1 for records in matched.values())
