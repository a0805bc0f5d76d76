"""The local Kafka broker (KRaft combined mode) that `hmas kafka`, `hmas up` and the test session
run: jars from Maven Central via ops/kafka/pom.xml, data in a project-local folder. A node of a
local cluster is one too (ops/kafka/cluster.py).
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from confluent_kafka.admin import AdminClient

from pipeline.config import Settings

log = logging.getLogger(__name__)

KAFKA_DIR = Path(__file__).resolve().parent
POM = KAFKA_DIR / "pom.xml"
LIB_DIR = KAFKA_DIR / "lib"
MAIN_CLASS = "kafka.Kafka"
# The JVM options of Kafka's own start scripts (kafka-server-start.sh, kafka-run-class.sh), which
# their environment variables override as they do there. With a 512 MB heap, as before, G1's
# concurrent marking ran without pause under a bulk load: more of the broker's CPU went to
# collecting than to requests (BENCHMARKS.md, "Exchange fetch").
HEAP_OPTS = "-Xmx1G -Xms1G"
JVM_PERFORMANCE_OPTS = ("-server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 "
                        "-XX:+ExplicitGCInvokesConcurrent -XX:MaxInlineLevel=15 -Djava.awt.headless=true")


def jvm_options() -> list[str]:
    """The broker JVM's heap and collector options: KAFKA_HEAP_OPTS and KAFKA_JVM_PERFORMANCE_OPTS
    when set, else Kafka's defaults."""
    return [*os.environ.get("KAFKA_HEAP_OPTS", HEAP_OPTS).split(),
            *os.environ.get("KAFKA_JVM_PERFORMANCE_OPTS", JVM_PERFORMANCE_OPTS).split()]


class BrokerError(RuntimeError):
    """The broker could not be assembled or started; the message holds the log's tail."""


@dataclass(frozen=True)
class SecureListener:
    """A SASL_SSL listener next to the plaintext one: TLS with the keystore's certificate, SASL as
    SCRAM-SHA-256, SCRAM-SHA-512 (users stored in the cluster's metadata when storage is formatted)
    or PLAIN (users in the listener's JAAS config). With a truststore, clients may also present a
    certificate it vouches for, and with `tls_port` an SSL listener there requires one (mutual TLS,
    no SASL). The broker's own traffic stays on the plaintext loopback listener.
    """

    port: int
    keystore: Path  # PKCS12
    keystore_password: str = field(repr=False)
    users: dict[str, str] = field(default_factory=dict, repr=False)  # name -> password
    truststore: Path | None = None  # PKCS12, the CA of client certificates
    truststore_password: str = field(default="", repr=False)
    tls_port: int | None = None  # an SSL listener requiring client certificates (needs the truststore)

    NAME = "SASL_SSL"
    MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN")

    def listeners(self) -> dict[str, int]:
        return {self.NAME: self.port, **({"SSL": self.tls_port} if self.tls_port is not None else {})}

    def _tls(self, listener: str, client_auth: str) -> list[str]:
        prefix = f"listener.name.{listener.lower()}"
        lines = [f"{prefix}.ssl.keystore.type=PKCS12", f"{prefix}.ssl.keystore.location={self.keystore}",
                 f"{prefix}.ssl.keystore.password={self.keystore_password}",
                 f"{prefix}.ssl.key.password={self.keystore_password}"]
        if self.truststore is not None:
            lines += [f"{prefix}.ssl.truststore.type=PKCS12", f"{prefix}.ssl.truststore.location={self.truststore}",
                      f"{prefix}.ssl.truststore.password={self.truststore_password}",
                      f"{prefix}.ssl.client.auth={client_auth}"]
        return lines

    def properties(self) -> list[str]:
        prefix = f"listener.name.{self.NAME.lower()}"
        plain_users = " ".join(f'user_{name}="{password}"' for name, password in self.users.items())
        lines = [
            f"sasl.enabled.mechanisms={','.join(self.MECHANISMS)}",
            *self._tls(self.NAME, "requested"),
            f"{prefix}.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;",
            f"{prefix}.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;",
            f"{prefix}.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required {plain_users};",
        ]
        if self.tls_port is not None:
            if self.truststore is None:
                raise ValueError("an SSL listener requiring client certificates needs a truststore")
            lines += self._tls("SSL", "required")
        return lines

    def scram_arguments(self) -> list[str]:
        """`kafka-storage format` arguments that store every user's SCRAM credentials."""
        return [argument for name, password in self.users.items() for mechanism in self.MECHANISMS[:2]
                for argument in ("--add-scram", f"{mechanism}=[name={name},password={password}]")]

    def added_to(self, config: str) -> str:
        """server.properties with this listener added to the listener lines, and its settings."""
        addresses = ",".join(f"{name}://127.0.0.1:{port}" for name, port in self.listeners().items())
        extra = {"listeners=": addresses, "advertised.listeners=": addresses,
                 "listener.security.protocol.map=": ",".join(f"{name}:{name}" for name in self.listeners())}
        lines = [line + "," + extra[key] if (key := next((k for k in extra if line.startswith(k)), None)) else line
                 for line in config.splitlines()]
        return "\n".join(lines + self.properties()) + "\n"


def _assembly_stamp(kafka_version: str | None) -> str:
    """What lib/ was assembled from: the pom's digest and any version override."""
    return f"{hashlib.sha256(POM.read_bytes()).hexdigest()} {kafka_version or 'pom'}\n"


def ensure_jars(lib_dir: Path = LIB_DIR, kafka_version: str | None = None, quiet: bool = False) -> Path:
    """Copy the broker's jars from Maven Central into lib_dir, unless that pom assembled them there already.

    A changed pom.xml (another Kafka version) empties the folder first: two versions of a jar on
    one classpath would break the broker. `kafka_version` overrides the pom's version.
    """
    stamp_file = lib_dir / ".complete"
    stamp = _assembly_stamp(kafka_version)
    if stamp_file.is_file() and stamp_file.read_text() == stamp:
        return lib_dir
    if shutil.which("mvn") is None or shutil.which("java") is None:
        raise BrokerError("the local broker needs Java 17+ and Maven (make setup installs them)")
    lib_dir.mkdir(parents=True, exist_ok=True)
    with open(lib_dir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process (a test session, `hmas up`) may be assembling too
        if stamp_file.is_file() and stamp_file.read_text() == stamp:
            return lib_dir
        _assemble(lib_dir, kafka_version, stamp, quiet)
    return lib_dir


def _assemble(lib_dir: Path, kafka_version: str | None, stamp: str, quiet: bool) -> None:
    stamp_file = lib_dir / ".complete"
    stamp_file.unlink(missing_ok=True)
    for stale in lib_dir.glob("*.jar"):
        stale.unlink()
    say = (lambda line: None) if quiet else (lambda line: print(line, flush=True))
    say(f"assembling Kafka from Maven Central into {lib_dir} ...")
    command = ["mvn", "-B", "-ntp", "-f", str(POM), "dependency:copy-dependencies", f"-DoutputDirectory={lib_dir}"]
    if kafka_version:
        command.append(f"-Dkafka.version={kafka_version}")
    output: list[str] = []
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as mvn:
        for line in mvn.stdout:
            output.append(line)
            if "Copying " in line:  # one line a jar: "[INFO] Copying kafka_2.13-4.3.1.jar to ..."
                say("  " + line.split("Copying ", 1)[1].split(" to ", 1)[0])
    if mvn.returncode != 0 or not any(lib_dir.glob("kafka_2.13-*.jar")):
        raise BrokerError("mvn failed:\n" + "".join(output)[-3000:])
    stamp_file.write_text(stamp)
    say(f"Kafka jars ready: {sum(1 for _ in lib_dir.glob('*.jar'))} in {lib_dir}")


def new_cluster_id() -> str:
    """A new KRaft cluster id, as `kafka-storage random-uuid` makes one (a random UUID in URL-safe
    base64 without padding, never starting with "-"): every node of one cluster is formatted with it."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode("ascii").rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def free_ports(count: int) -> list[int]:
    """Distinct free loopback ports: all held open together so that the OS cannot hand one out twice."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) for _ in range(count)]
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in socks]


def free_port() -> int:
    return free_ports(1)[0]


class LocalBroker:
    """One broker+controller JVM on loopback; its config, storage, log and pid file live in data_dir.

    Alone it is its own quorum (node 1). As a node of a local cluster, `node_id`, the quorum's
    `voters` ("1@127.0.0.1:port,..."), the cluster's shared `cluster_id` and the replication of
    Kafka's own topics (and the default of topics created without their own) are the cluster's.
    """

    def __init__(
        self, data_dir: Path, port: int = 9092, controller_port: int = 9093,
        lib_dir: Path = LIB_DIR, kafka_version: str | None = None, message_max_bytes: int | None = None,
        secure: SecureListener | None = None, node_id: int = 1, voters: str | None = None,
        replication: int = 1, min_isr: int = 1, cluster_id: str | None = None,
    ) -> None:
        self.data_dir = Path(data_dir).resolve()  # the pid check matches the config path in the command line
        self.port = port
        self.controller_port = controller_port
        self.lib_dir = lib_dir
        self.kafka_version = kafka_version  # None: the version pom.xml names
        # None: what the default settings' producers may send (Settings.max_request_bytes)
        self.message_max_bytes = Settings().max_request_bytes if message_max_bytes is None else message_max_bytes
        self.log_file = self.data_dir / "broker.log"
        self.pid_file = self.data_dir / "broker.pid"
        self.config_file = self.data_dir / "server.properties"
        self.storage_dir = self.data_dir / "logs"
        self.secure = secure  # a SASL_SSL listener besides the plaintext one
        self.node_id = node_id
        self.voters = voters or f"{node_id}@127.0.0.1:{controller_port}"
        self.replication = replication
        self.min_isr = min_isr
        self.cluster_id = cluster_id  # None: a random one when the storage is formatted

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def ensure_jars(self) -> Path:
        return ensure_jars(self.lib_dir, self.kafka_version)

    def _java(self, *args: str, options: Sequence[str] = ()) -> list[str]:
        """A java command line: `options` for the broker itself; its short-lived tools (the
        storage format) run with the JVM's defaults, not the broker's 1 GB heap."""
        # KAFKA_DIR on the classpath holds simplelogger.properties (the broker's log levels).
        return ["java", *options, "-cp", f"{self.lib_dir}/*{os.pathsep}{KAFKA_DIR}", *args]

    def pid(self) -> int | None:
        """The broker's pid from the pid file, if that process is alive and is a Kafka broker."""
        try:
            pid = int(self.pid_file.read_text().strip())
            os.kill(pid, 0)
        except (FileNotFoundError, ValueError, ProcessLookupError):
            return None
        try:  # a stale pid file (after a reboot) can name an unrelated process
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return pid  # no /proc: trust the pid file
        return pid if MAIN_CLASS.encode() in cmdline and str(self.config_file).encode() in cmdline else None

    def is_running(self) -> bool:
        return self.pid() is not None

    def answers(self, timeout_s: float = 2.0) -> bool:
        """Whether the broker answers a metadata request."""
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
        pid = self.pid()
        if pid is None:
            return "stopped"
        return f"running (pid {pid}) on {self.bootstrap}" + ("" if self.answers() else ", not answering yet")

    def _write_config(self) -> None:
        """server.properties from the template, rewritten on every start so that changed ports apply."""
        template = (KAFKA_DIR / "server.properties.template").read_text()
        config = template.format(
            port=self.port, controller_port=self.controller_port, log_dir=self.storage_dir,
            message_max_bytes=self.message_max_bytes, node_id=self.node_id, voters=self.voters,
            replication=self.replication, min_isr=self.min_isr,
        )
        self.config_file.write_text(config if self.secure is None else self.secure.added_to(config))

    def _format_storage(self) -> None:
        """Give a fresh storage folder a cluster id (once; later starts keep their data)."""
        if (self.storage_dir / "meta.properties").exists():
            return
        storage_tool = "kafka.tools.StorageTool"
        cluster_id = self.cluster_id or new_cluster_id()
        scram = self.secure.scram_arguments() if self.secure is not None else []
        self._run(storage_tool, "format", "-t", cluster_id, "-c", str(self.config_file), *scram)
        log.info("broker storage formatted", extra={"cluster_id": cluster_id, "dir": str(self.storage_dir)})

    def _run(self, *args: str) -> str:
        result = subprocess.run(self._java(*args), capture_output=True, text=True)
        if result.returncode != 0:
            raise BrokerError(f"{' '.join(args[:2])} failed:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
        return result.stdout

    def start(self, wait_s: float = 90.0) -> None:
        """Start the broker detached and wait until it answers; a no-op if it is running already."""
        if self.is_running():
            log.info("broker already running", extra={"bootstrap": self.bootstrap})
            return
        self.wait_answering(self.launch(), wait_s)

    def launch(self) -> subprocess.Popen:
        """Start the broker's JVM detached, without waiting: a cluster's nodes answer only once a
        quorum of them runs, so a cluster launches them all before it waits.

        The JVM gets its own session, so a Ctrl-C in the terminal that started it does not reach
        it: whoever started it decides when to stop it.
        """
        self.ensure_jars()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._write_config()
        self._format_storage()
        with open(self.log_file, "ab") as out:
            proc = subprocess.Popen(
                self._java(MAIN_CLASS, str(self.config_file), options=jvm_options()),
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            )
        self.pid_file.write_text(f"{proc.pid}\n")
        return proc

    def wait_answering(self, proc: subprocess.Popen, wait_s: float = 90.0) -> None:
        """Wait until the launched broker answers; stop it and raise if it exits or stays silent."""
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
        """SIGTERM (a clean shutdown), SIGKILL if it has not exited within wait_s."""
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline and self._alive(pid):
            time.sleep(0.2)
        if self._alive(pid):
            log.warning("broker ignored SIGTERM, killing it", extra={"pid": pid})
            os.kill(pid, signal.SIGKILL)
        self.pid_file.unlink(missing_ok=True)
        log.info("broker stopped", extra={"bootstrap": self.bootstrap, "pid": pid})

    def kill(self) -> None:
        """SIGKILL: the broker dies without a clean shutdown (what a crash or power loss does)."""
        pid = self.pid()
        if pid is None:
            return
        os.kill(pid, signal.SIGKILL)
        while self._alive(pid):
            time.sleep(0.1)
        self.pid_file.unlink(missing_ok=True)
        log.info("broker killed", extra={"bootstrap": self.bootstrap, "pid": pid})

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
