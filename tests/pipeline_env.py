"""What the test modules share: the media sets, waiting with a deadline, checked setup requests,
the real pipeline in subprocesses on the test broker, topic readers, and bank view models.

Test modules import from here, never from one another.
"""

from __future__ import annotations

import csv
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytest
import requests

from pipeline.banks import bank_record, bank_signal_record
from pipeline.client import Client
from pipeline.config import Settings, load_settings
from pipeline.index.codes import code_to_hex
from pipeline.state.bank_view import BankView
from pipeline.topics import BANKS as BANKS_TOPIC, TopicSpec

REPO = Path(__file__).resolve().parents[1]
Value = TypeVar("Value")


# -- media ---------------------------------------------------------------------------------------
REFERENCE_MEDIA_VAR = "HMAS_REFERENCE_MEDIA"
EXPECTED_PDQ_FILE = "PDQ_EXPECTED.csv"
BRIDGE_MODS = "pdq/data/bridge-mods"
BRIDGE_ORIGINAL = f"{BRIDGE_MODS}/aaa-orig.jpg"


@dataclass(frozen=True)
class ExpectedPdq:
    """One image of a media set and the PDQ hash and quality python-threatexchange gives it."""

    rel: str
    path: Path
    pdq: str
    quality: int


@dataclass(frozen=True)
class MediaSet:
    """Photos and videos laid out as in facebook/ThreatExchange, with their reference hashes.

    The shipped set (tests/media, see its README) is always there; the larger reference set is
    wherever HMAS_REFERENCE_MEDIA points. Paths inside both are the same, so is the code reading them.
    """

    name: str
    root: Path

    def path(self, rel: str) -> Path:
        return self.root / rel

    def expected_pdq(self) -> dict[str, ExpectedPdq]:
        """Every image of the set by its relative path, from the set's PDQ_EXPECTED.csv."""
        with open(self.root / EXPECTED_PDQ_FILE, newline="") as fh:
            return {row["path"]: ExpectedPdq(row["path"], self.root / row["path"], row["pdq_hex"], int(row["quality"]))
                    for row in csv.DictReader(fh)}

    def videos(self) -> list[tuple[Path, Path]]:
        """(video, the reference implementation's vPDQ frame hashes of it) for every video that has them."""
        hashes = sorted((self.root / "vpdq/sample-hashes").glob("*.txt"))
        return [(self.root / "tmk/sample-videos" / f"{h.stem}.mp4", h) for h in hashes]


SHIPPED_MEDIA = MediaSet("shipped", REPO / "tests" / "media")
BRIDGE = SHIPPED_MEDIA.path(BRIDGE_MODS)  # the shipped bridge photo and its edits


def reference_media() -> MediaSet:
    """The larger set HMAS_REFERENCE_MEDIA names; skips the calling test, saying why, when it is not there."""
    value = os.environ.get(REFERENCE_MEDIA_VAR, "")
    if not value:
        pytest.skip(f"{REFERENCE_MEDIA_VAR} is not set: the checks on the larger reference media set do not run")
    root = Path(value).expanduser()
    if not (root / EXPECTED_PDQ_FILE).is_file():
        pytest.skip(f"{REFERENCE_MEDIA_VAR}={value} has no {EXPECTED_PDQ_FILE}: not a reference media set")
    return MediaSet("reference", root)


def media_set(name: str) -> MediaSet:
    """A media set by name: "shipped" or "reference" (skips the test when the reference set is absent)."""
    return SHIPPED_MEDIA if name == "shipped" else reference_media()


def hamming(a: str, b: str) -> int:
    return bin(int(a, 16) ^ int(b, 16)).count("1")


# -- videos: edited copies, and python-threatexchange's vPDQ decision --------------------------------
VIDEO = "tmk/sample-videos/doorknob-hd-no-bar.mp4"
EDITS = {  # ffmpeg arguments making an edited copy of a video
    "reencoded": ["-c:v", "libx264", "-crf", "34"],
    "cropped": ["-vf", "crop=iw*0.85:ih*0.85", "-c:v", "libx264"],
    "trimmed": ["-ss", "1", "-t", "2", "-c:v", "libx264"],
    "resized": ["-vf", "scale=iw/3:-2", "-c:v", "libx264"],
}
UNRELATED = {  # videos from ffmpeg's own sources, unlike any other
    "testsrc": ["-f", "lavfi", "-i", "testsrc2=duration=3:size=640x360:rate=25"],
    "mandelbrot": ["-f", "lavfi", "-i", "mandelbrot=size=640x360:rate=25", "-t", "3"],
}


def ffmpeg(args: list[str], out: Path) -> Path:
    """A video made by the ffmpeg command (skips the test, saying why, without it)."""
    if shutil.which("ffmpeg") is None:
        pytest.skip("the ffmpeg command makes the edited copies of videos: install FFmpeg")
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", *args, "-an", str(out)], check=True, timeout=300)
    return out


def vpdq_decision(query: str, banked: str, frame_distance: int) -> bool:
    """Whether python-threatexchange's vPDQ brute-force matcher matches two vPDQ values at a frame
    distance, with its quality floor and share thresholds. Its per-frame distance (a Python loop
    over 256 characters) is swapped for the same Hamming distance on integers, or a few videos
    of every frame would take the test minutes."""
    from unittest import mock

    from threatexchange.extensions.vpdq import vpdq_brute_matcher
    from threatexchange.extensions.vpdq.vpdq_util import (
        VPDQ_INDEX_MATCH_THRESHOLD_PERCENT, VPDQ_QUALITY_THRESHOLD, VPDQ_QUERY_MATCH_THRESHOLD_PERCENT, json_to_vpdq,
    )

    q, b = json_to_vpdq(query), json_to_vpdq(banked)
    if not any(f.quality >= VPDQ_QUALITY_THRESHOLD for f in q) or not any(f.quality >= VPDQ_QUALITY_THRESHOLD for f in b):
        return False  # its matcher divides by the frames left: a video without any matches nothing
    with mock.patch.object(vpdq_brute_matcher, "simple_distance", hamming):
        result = vpdq_brute_matcher.match_VPDQ_hash_brute(q, b, VPDQ_QUALITY_THRESHOLD, frame_distance)
    return (result.query_match_percent >= VPDQ_QUERY_MATCH_THRESHOLD_PERCENT
            and result.compared_match_percent >= VPDQ_INDEX_MATCH_THRESHOLD_PERCENT)


# -- waiting and setup requests ------------------------------------------------------------------
def wait_until(predicate: Callable[[], Value], timeout_s: float, what: str, *, interval_s: float = 0.2,
               detail: Callable[[], str] | None = None) -> Value:
    """Poll `predicate` until it returns something truthy, and return that; fail naming `what` at the deadline.

    For waits on something observable: a fixed sleep is too short on a loaded machine and wasted on an idle one.
    `detail` adds context to the failure (a process's log, the last value seen).
    """
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"gave up after {timeout_s:g}s waiting for {what}" + (f"\n{detail()}" if detail else ""))
        time.sleep(interval_s)


def checked(response: requests.Response, status: int = 200) -> Any:
    """The body of a request a test sets up with, once its status is the expected one (JSON decoded when it is JSON).

    A failed setup stops the test there, instead of showing up as a puzzling failure later."""
    assert response.status_code == status, (
        f"{response.request.method} {response.url}: {response.status_code}, expected {status}: {response.text[:300]}")
    return response.json() if response.headers.get("Content-Type", "").startswith("application/json") else response.text


# -- the pipeline in subprocesses ----------------------------------------------------------------
def pipeline_env(bootstrap: str, data_dir: Path, **extra: str) -> dict[str, str]:
    """Environment for hmas processes of one test: its own topic prefix and state folder."""
    return {
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "HMAS_TOPIC_PREFIX": f"t{uuid.uuid4().hex[:8]}.",
        "HMAS_DATA_DIR": str(data_dir),
        "HMAS_WORKER_WEB_PORT": "0",
        "HMAS_TOPIC_PARTITIONS": "2",
        **extra,
    }


def settings_from(env: dict[str, str]) -> Settings:
    return load_settings(env=env, config_file=os.devnull)


def create_topics(env: dict[str, str]) -> None:
    """The topics of `env`'s prefix, created in this process as `hmas topics create` creates them
    (the command itself runs in tests/test_pipeline_e2e.py, tests/test_up.py and over SASL in
    tests/test_kafka_security.py): a subprocess less for every fixture that only needs them."""
    from pipeline.admin import ensure_topics

    settings = settings_from(env)
    ensure_topics(settings.bootstrap_servers, settings)


def hmas(env: dict[str, str], *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run one `hmas` command as a user would, in its own process."""
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args],
        env={**os.environ, **env}, cwd=REPO, capture_output=True, text=True, check=check, timeout=timeout,
    )


class HmasProcess:
    """An `hmas` role in a subprocess, its log in a file; stopped with SIGTERM as a deployment would."""

    def __init__(self, env: dict[str, str], log_path: Path, *args: str) -> None:
        self.env = env
        self.log_path = log_path
        self.args = args
        self.proc: subprocess.Popen | None = None

    def start(self) -> "HmasProcess":
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pipeline", *self.args],
            env={**os.environ, **self.env}, cwd=REPO, stdout=self._log, stderr=subprocess.STDOUT,
        )
        return self

    def stop(self, timeout_s: float = 30) -> None:
        stop_all(self, timeout_s=timeout_s)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL, as a crash: no shutdown, no offsets committed, no goodbye to the consumer group."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._log.close()

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def stop_all(*processes: HmasProcess, timeout_s: float = 30) -> None:
    """SIGTERM to every running process at once, then each waited for (killed once `timeout_s` has
    passed): their shutdowns (a worker closing its tables, an API saving its snapshot) overlap
    instead of adding up."""
    running = [p for p in processes if p.running]
    for process in running:
        process.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    for process in running:
        try:
            process.proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.proc.kill()
            process.proc.wait()
        process._log.close()


class WorkerProcess(HmasProcess):
    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        super().__init__(env, log_path, "worker")


class ApiProcess(HmasProcess):
    """`hmas api` on a free loopback port; started once /status answers 200."""

    def __init__(self, env: dict[str, str], log_path: Path, port: int, *extra: str) -> None:
        super().__init__({**env, "HMAS_API_PORT": str(port)}, log_path, "api", *extra)
        self.base = f"http://127.0.0.1:{port}"

    def start(self, wait_s: float = 120) -> "ApiProcess":
        """Started once it answers; one that never does is stopped (not left running) before the failure."""
        super().start()
        try:
            wait_until(self._ready, wait_s, "hmas api to answer /status with 200", interval_s=0.3, detail=self.log_tail)
        except BaseException:
            self.stop()
            raise
        return self

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"hmas api exited:\n{self.log_tail()}")
        try:
            return requests.get(f"{self.base}/status", timeout=5).status_code == 200
        except requests.ConnectionError:
            return False


class PipelineStack:
    """A worker and an API of one test's pipeline (one topic prefix); both can be restarted, and
    `call` sends a request with the test's API token, checking the status."""

    def __init__(self, env: dict[str, str], tmp: Path, token: str = "") -> None:
        from ops.kafka.broker import free_port

        self.env, self.tmp, self.token = env, tmp, token
        self.settings = settings_from(env)
        self.port = free_port()
        self.start()

    def start(self) -> None:
        self.worker = WorkerProcess(self.env, self.tmp / "worker.log").start()
        try:
            self.api = ApiProcess(self.env, self.tmp / "api.log", self.port).start()
        except BaseException:
            self.worker.stop()  # no stack to stop later: leave no worker behind
            raise

    def stop(self) -> None:
        stop_all(self.api, self.worker)

    def call(self, method: str, path: str, expect: int = 200, **kwargs: Any) -> Any:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        return checked(requests.request(method, self.api.base + path, headers=headers, timeout=30, **kwargs), expect)


def running_stack(make: Callable[[dict[str, str], Path], PipelineStack], bootstrap: str, tmp: Path,
                  **extra: str) -> Iterator[PipelineStack]:
    """A module's stack (`make(env, tmp)`) on its own topics, stopped once the module is done: the
    body of a module-scoped `stack` fixture (`yield from running_stack(...)`)."""
    env = pipeline_env(bootstrap, tmp / "state", **extra)
    create_topics(env)
    stack = make(env, tmp)
    yield stack
    stack.stop()


def collect_until(
    settings: Settings, spec: TopicSpec, keys: set[str], timeout_s: float = 90, at_least: int = 1
) -> dict[str, list[Any]]:
    """Records of a topic by key until every key in `keys` has `at_least` of them (or the time is up)."""
    found: dict[str, list[Any]] = {}
    missing = set(keys)
    for key, value in Client(settings).read(spec, timeout_s=timeout_s):
        found.setdefault(key, []).append(value)
        if key in missing and len(found[key]) >= at_least:
            missing.discard(key)
            if not missing:
                break
    return found


def bomb_png(side: int = 30000) -> bytes:
    """A valid 1-bit PNG of side x side pixels that compresses to about 100 KB: a decompression bomb."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    row = b"\x00" * (1 + (side + 7) // 8)
    comp = zlib.compressobj(9)
    body = b"".join(comp.compress(row) for _ in range(side)) + comp.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


# -- bank views in memory ------------------------------------------------------------------------
_pdq_rng = np.random.default_rng(7)


def random_pdq() -> str:
    return _pdq_rng.integers(0, 256, 32, dtype=np.uint8).tobytes().hex()


def flip(hex_code: str, bits: int) -> str:
    """The PDQ hash with its first `bits` bits inverted: exactly `bits` away."""
    code = bytearray(bytes.fromhex(hex_code))
    for b in range(bits):
        code[b // 8] ^= 1 << (b % 8)
    return code.hex()


def hashed(content_id: str, pdq: str, quality: int | None = 100) -> dict:
    """A hma.hashes record of one PDQ signal."""
    return {"content_id": content_id, "content_type": "photo", "signals": {"pdq": {"value": pdq, "quality": quality}},
            "source": "signals", "metadata": {}, "submitted_at": None, "hashed_at": 0}


def conformed_bank(name: str, **config: Any) -> dict:
    """A bank record as it reads back from hma.banks (defaults filled in)."""
    return BANKS_TOPIC.codec.conform(bank_record(name, **config))


def view_with(*banks: tuple[dict, list[str]]) -> BankView:
    """A bank view holding each bank with its PDQ codes as content ids 1, 2, ..."""
    view = BankView()
    for bank, codes in banks:
        view.apply_bank(bank["name"], bank)
        view.apply_signals(bank_signal_record(bank["name"], i + 1, "pdq", code) for i, code in enumerate(codes))
    return view


VIEW_MODEL_BANKS = ("ALPHA", "BETA", "GAMMA")
_pool_rng = np.random.default_rng(5)
_POOL_BASE = _pool_rng.integers(0, 256, 32, dtype=np.uint8)


def _clustered_pool(n: int) -> list[str]:
    """Codes a few bits from one base code, so that searches find several at once."""
    pool = []
    for i in range(n):
        code = _POOL_BASE.copy()
        for bit in _pool_rng.choice(256, i % 9, replace=False):
            code[bit // 8] ^= 1 << (bit % 8)
        pool.append(code_to_hex(code))
    return pool


VIEW_MODEL_POOL = _clustered_pool(24)
VIEW_MODEL_MD5S = ["0" * 31 + str(i) for i in range(4)]


def run_ops(view: BankView, batches: Iterable[Iterable[tuple]], model: dict[str, dict] | None = None) -> dict[str, dict]:
    """Apply batches of ("add", bank, pool index, content id, disable_until_ts, has metadata), ("md5", bank,
    index) and ("remove", n) to the view and to a dict model of it, checking the view after each batch."""
    model = {} if model is None else model
    for batch in batches:
        changes = []
        for item in batch:
            if item[0] == "add":
                _, bank, i, cid, disabled, meta = item
                key, record = bank_signal_record(bank, cid, "pdq", VIEW_MODEL_POOL[i], {"m": str(cid)} if meta else None)
                record["disable_until_ts"] = disabled
                changes.append((key, record))
                model[key] = record
            elif item[0] == "md5":
                _, bank, i = item
                key, record = bank_signal_record(bank, 900 + i, "video_md5", VIEW_MODEL_MD5S[i])
                changes.append((key, record))
                model[key] = record
            elif model:
                key = sorted(model)[item[1] % len(model)]
                changes.append((key, None))
                del model[key]
        view.apply_signals(changes)
        check_view(view, model)
    return model


def check_searches(view: BankView, model: dict[str, dict]) -> None:
    """The view's searches find what a scan of the model finds."""
    probe = VIEW_MODEL_POOL[0]
    for distance in (0, 3, 8):
        [found] = view.search("pdq", [probe], distance)
        assert sorted(c.entry.key for c in found) == sorted(
            k for k, r in model.items() if r["signal_type"] == "pdq" and hamming(r["value"], probe) <= distance)
    [md5_hits] = view.search("video_md5", [VIEW_MODEL_MD5S[0]], 0)
    assert sorted(c.entry.key for c in md5_hits) == sorted(
        k for k, r in model.items() if r["signal_type"] == "video_md5" and r["value"] == VIEW_MODEL_MD5S[0])


def check_view(view: BankView, model: dict[str, dict]) -> None:
    """The view holds exactly the model's signals, and (if it can search) its searches find what a
    scan of the model finds."""
    got = {e.key: (e.bank, e.bank_content_id, e.signal_type, e.signal_id, e.value, e.disable_until_ts, e.metadata)
           for e in view.entries()}
    want = {k: (r["bank"], r["bank_content_id"], r["signal_type"], r["signal_id"], r["value"], r["disable_until_ts"],
                r["metadata"]) for k, r in model.items()}
    assert got == want
    assert view.signal_count() == len(model)
    assert view.signal_count("pdq") == sum(r["signal_type"] == "pdq" for r in model.values())
    if view.searchable:
        check_searches(view, model)
    for record in list(model.values())[:3]:
        assert sorted(e.key for e in view.entries_with_signal(record["signal_id"])) == sorted(
            k for k, r in model.items() if r["signal_id"] == record["signal_id"])
    for bank in VIEW_MODEL_BANKS:
        assert sorted(e.key for e in view.entries(bank)) == sorted(k for k, r in model.items() if r["bank"] == bank)


# -- the API app in this process -----------------------------------------------------------------
@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        import json

        return json.loads(self.body)


class InProcessApi:
    """The real aiohttp app of `hmas api` on a loopback port of this process, on the test broker,
    driven synchronously (for property tests that send it thousands of requests)."""

    def __init__(self, settings: Settings) -> None:
        import asyncio

        self.settings = settings
        self.loop = asyncio.new_event_loop()

    def __enter__(self) -> "InProcessApi":
        from aiohttp.test_utils import TestClient, TestServer

        from pipeline.api.app import create_api

        self.client = TestClient(TestServer(create_api(self.settings), host="127.0.0.1"), loop=self.loop)
        self.loop.run_until_complete(self.client.start_server())
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.run_until_complete(self.client.close())
        self.loop.close()

    def request(self, method: str, path: str, token: str = "", **kwargs: Any) -> Answer:
        headers = {**kwargs.pop("headers", {}), **({"Authorization": f"Bearer {token}"} if token else {})}

        async def send() -> Answer:
            async with self.client.request(method, path, headers=headers, allow_redirects=False, **kwargs) as r:
                return Answer(r.status, dict(r.headers), await r.read())
        return self.loop.run_until_complete(send())
