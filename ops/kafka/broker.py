"""The local single-node Kafka broker (KRaft combined mode) that `hmas kafka`, `hmas up` and the
test session run: jars from Maven Central via ops/kafka/pom.xml, data in a project-local folder.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from confluent_kafka.admin import AdminClient

log = logging.getLogger(__name__)

KAFKA_DIR = Path(__file__).resolve().parent
LIB_DIR = KAFKA_DIR / "lib"
MAIN_JAR_GLOB = "kafka_2.13-*.jar"
HEAP = "-Xmx512m"


class BrokerError(RuntimeError):
    """The broker could not be assembled or started; the message holds the log's tail."""


def ensure_jars(quiet: bool = False) -> Path:
    """Copy the broker's jars from Maven Central into ops/kafka/lib, unless they are there."""
    stamp = LIB_DIR / ".complete"
    if stamp.exists() and any(LIB_DIR.glob(MAIN_JAR_GLOB)):
        return LIB_DIR
    if shutil.which("mvn") is None or shutil.which("java") is None:
        raise BrokerError("the local broker needs Java 17+ and Maven (make setup installs them)")
    if not quiet:
        print("assembling Kafka from Maven Central into ops/kafka/lib ...", flush=True)
    result = subprocess.run(
        ["mvn", "-q", "-B", "-f", str(KAFKA_DIR / "pom.xml"), "dependency:copy-dependencies",
         f"-DoutputDirectory={LIB_DIR}"],
        capture_output=True, text=True,
    )
    if result.returncode != 0 or not any(LIB_DIR.glob(MAIN_JAR_GLOB)):
        raise BrokerError(f"mvn failed:\n{(result.stdout + result.stderr)[-3000:]}")
    stamp.write_text("ok\n")
    return LIB_DIR


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LocalBroker:
    def __init__(self, data_dir: Path, port: int = 9092, controller_port: int = 9093) -> None:
        self.data_dir = Path(data_dir)
        self.port = port
        self.controller_port = controller_port
        self.log_file = self.data_dir / "broker.log"
        self.pid_file = self.data_dir / "broker.pid"
        self.config_file = self.data_dir / "server.properties"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _java(self, *args: str) -> list[str]:
        classpath = f"{LIB_DIR}/*{os.pathsep}{KAFKA_DIR}"
        return ["java", HEAP, "-cp", classpath, *args]

    def _pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
            os.kill(pid, 0)
            return pid
        except (FileNotFoundError, ValueError, ProcessLookupError):
            return None

    def is_running(self) -> bool:
        return self._pid() is not None

    def answers(self, timeout_s: float = 2.0) -> bool:
        try:
            probe = AdminClient({
                "bootstrap.servers": self.bootstrap,
                "socket.timeout.ms": int(timeout_s * 1000),
                "log_level": 0,  # refused connections are expected while the broker starts
            })
            probe.list_topics(timeout=timeout_s)
            return True
        except Exception:  # the client raises KafkaException, sometimes others, while the broker starts
            return False

    def status(self) -> str:
        pid = self._pid()
        if pid is None:
            return "stopped"
        return f"running (pid {pid}) on {self.bootstrap}" + ("" if self.answers() else ", not answering yet")

    def _format(self) -> None:
        template = (KAFKA_DIR / "server.properties.template").read_text()
        self.config_file.write_text(template.format(
            port=self.port, controller_port=self.controller_port, log_dir=self.data_dir / "logs"
        ))
        if (self.data_dir / "logs" / "meta.properties").exists():
            return
        cluster_id = subprocess.run(
            self._java("kafka.tools.StorageTool", "random-uuid"), capture_output=True, text=True, check=True
        ).stdout.strip().splitlines()[-1]
        result = subprocess.run(
            self._java("kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(self.config_file)),
            capture_output=True, text=True,
        )
        if result.returncode != 0:
            raise BrokerError(f"formatting the broker's storage failed:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")

    def start(self, wait_s: float = 90.0) -> None:
        """Start the broker detached and wait until it answers; a no-op if it is running already."""
        if self.is_running():
            log.info("broker already running", extra={"bootstrap": self.bootstrap})
            return
        ensure_jars()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._format()
        with open(self.log_file, "ab") as out:
            proc = subprocess.Popen(
                self._java("kafka.Kafka", str(self.config_file)),
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            )
        self.pid_file.write_text(f"{proc.pid}\n")
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                self.pid_file.unlink(missing_ok=True)
                raise BrokerError(f"the broker exited with {proc.returncode}:\n{self.log_tail()}")
            if self.answers():
                log.info("broker started", extra={"bootstrap": self.bootstrap, "pid": proc.pid})
                return
            time.sleep(0.5)
        self.stop()
        raise BrokerError(f"the broker did not answer within {wait_s:.0f}s:\n{self.log_tail()}")

    def stop(self, wait_s: float = 30.0) -> None:
        pid = self._pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline and self._alive(pid):
            time.sleep(0.2)
        if self._alive(pid):
            os.kill(pid, signal.SIGKILL)
        self.pid_file.unlink(missing_ok=True)

    @staticmethod
    def _alive(pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        try:  # a zombie of ours counts as gone
            waited, _ = os.waitpid(pid, os.WNOHANG)
            return waited == 0
        except ChildProcessError:
            return True

    def log_tail(self, lines: int = 30) -> str:
        if not self.log_file.exists():
            return "(no log)"
        return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
