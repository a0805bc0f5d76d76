"""Running the real pipeline in tests: settings on the test broker, a worker process, topic readers."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import requests

from pipeline.client import Client
from pipeline.config import Settings, load_settings
from pipeline.topics import TopicSpec

REPO = Path(__file__).resolve().parents[1]
TESTDATA = REPO.parent / "shared" / "testdata" / "threatexchange"


def expected_pdq() -> dict[str, tuple[str, int]]:
    """PDQ_EXPECTED.csv: path relative to TESTDATA -> (pdq hex, quality)."""
    with open(TESTDATA / "PDQ_EXPECTED.csv", newline="") as fh:
        return {row["path"]: (row["pdq_hex"], int(row["quality"])) for row in csv.DictReader(fh)}


def hamming(a: str, b: str) -> int:
    return bin(int(a, 16) ^ int(b, 16)).count("1")


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
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()

    def kill(self) -> None:
        """SIGKILL, as a crash: no shutdown, no offsets committed, no goodbye to the consumer group."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._log.close()

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


class WorkerProcess(HmasProcess):
    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        super().__init__(env, log_path, "worker")


class ApiProcess(HmasProcess):
    """`hmas api` on a free loopback port; started once /status answers 200."""

    def __init__(self, env: dict[str, str], log_path: Path, port: int, *extra: str) -> None:
        super().__init__({**env, "HMAS_API_PORT": str(port)}, log_path, "api", *extra)
        self.base = f"http://127.0.0.1:{port}"

    def start(self, wait_s: float = 60) -> "ApiProcess":
        super().start()
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"hmas api exited:\n{self.log_tail()}")
            try:
                if requests.get(f"{self.base}/status", timeout=5).status_code == 200:
                    return self
            except requests.ConnectionError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"hmas api not ready in {wait_s}s:\n{self.log_tail()}")


def collect_until(settings: Settings, spec: TopicSpec, keys: set[str], timeout_s: float = 90) -> dict[str, list[Any]]:
    """Records of a topic by key until every key in `keys` has at least one (or the time is up)."""
    found: dict[str, list[Any]] = {}
    for key, value in Client(settings).read(spec, timeout_s=timeout_s):
        found.setdefault(key, []).append(value)
        if keys <= found.keys():
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
