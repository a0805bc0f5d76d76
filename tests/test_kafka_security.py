"""Kafka over TLS and SASL: a local broker with a SASL_SSL listener (certificates made here with
openssl and keytool, SCRAM users stored when its storage is formatted), reached by the CLI, the
Python clients of each kind, and a worker and an API in their own processes."""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from pathlib import Path

import pytest
import requests
from confluent_kafka import KafkaException

from pipeline import kafka_clients
from pipeline import topics as T
from pipeline.admin import ensure_topics
from pipeline.client import Client
from pipeline.config import Settings
from tests.pipeline_env import PipelineStack, collect_until, hmas, pipeline_env, random_pdq, settings_from

pytestmark = pytest.mark.kafka

STORE_PASSWORD = "store-" + uuid.uuid4().hex[:8]
USER, PASSWORD = "hmas", "pw-" + uuid.uuid4().hex


def _run(*command: str, cwd: Path) -> None:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    assert result.returncode == 0, f"{command[0]} {command[1]} failed: {result.stderr[-1500:]}"


def _signed(cwd: Path, name: str, subject: str, extensions: str) -> None:
    """<name>.key and <name>.pem, signed by ca.pem."""
    (cwd / f"{name}.ext").write_text(extensions + "\n")
    _run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
         "-subj", subject, cwd=cwd)
    _run("openssl", "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
         "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext", cwd=cwd)


def make_certificates(cwd: Path) -> None:
    """A CA; the broker's certificate for 127.0.0.1 in a PKCS12 keystore; a client certificate and
    key (PEM); a PKCS12 truststore of the CA for the broker to check client certificates with."""
    _run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
         "-days", "2", "-subj", "/CN=hmas-test-ca", cwd=cwd)
    _signed(cwd, "broker", "/CN=127.0.0.1", "subjectAltName=IP:127.0.0.1,DNS:localhost")
    _signed(cwd, "client", "/CN=hmas-client", "extendedKeyUsage=clientAuth")
    _run("openssl", "pkcs12", "-export", "-in", "broker.pem", "-inkey", "broker.key", "-certfile", "ca.pem",
         "-name", "broker", "-out", "broker.p12", "-passout", f"pass:{STORE_PASSWORD}", cwd=cwd)
    _run("keytool", "-importcert", "-noprompt", "-alias", "ca", "-file", "ca.pem", "-keystore", "truststore.p12",
         "-storetype", "PKCS12", "-storepass", STORE_PASSWORD, cwd=cwd)


@pytest.fixture(scope="module")
def secure_broker(tmp_path_factory):
    """A broker of its own whose SASL_SSL port is the only one the tests' clients are given."""
    from ops.kafka.broker import LocalBroker, SecureListener, free_ports

    tmp = tmp_path_factory.mktemp("secure-kafka")
    make_certificates(tmp)
    port, controller_port, secure_port, tls_port = free_ports(4)
    listener = SecureListener(secure_port, tmp / "broker.p12", STORE_PASSWORD, {USER: PASSWORD},
                              truststore=tmp / "truststore.p12", truststore_password=STORE_PASSWORD, tls_port=tls_port)
    broker = LocalBroker(tmp / "kafka", port=port, controller_port=controller_port, secure=listener)
    try:
        broker.start()
        yield broker, tmp
    finally:
        broker.stop()


def secure_env(secure_broker, data_dir: Path, mechanism: str = "SCRAM-SHA-512", password: str = PASSWORD,
               client_certificate: bool = False) -> dict[str, str]:
    broker, certs = secure_broker
    env = pipeline_env(f"127.0.0.1:{broker.secure.port}", data_dir, KAFKA_SECURITY_PROTOCOL="SASL_SSL",
                       KAFKA_SASL_MECHANISM=mechanism, KAFKA_SASL_USERNAME=USER, KAFKA_SASL_PASSWORD=password,
                       KAFKA_SSL_CAFILE=str(certs / "ca.pem"))
    if client_certificate:
        env.update(KAFKA_SSL_CERTFILE=str(certs / "client.pem"), KAFKA_SSL_KEYFILE=str(certs / "client.key"))
    return env


async def aiokafka_round_trip(settings: Settings, key: bytes, expected: int) -> list[bytes]:
    """An aiokafka producer writes one record to hma.feedback; an aiokafka consumer reads the keys
    of the topic until it has `expected` of them."""
    producer = kafka_clients.aio_producer(settings, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(T.FEEDBACK.name(settings), b"{}", key=key, partition=0)
    finally:
        await producer.stop()
    consumer = kafka_clients.aio_consumer(settings, T.FEEDBACK.name(settings), group_id=None,
                                          auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    try:
        keys: list[bytes] = []
        for _ in range(6):
            batch = await consumer.getmany(timeout_ms=10_000)
            keys += [record.key for records in batch.values() for record in records]
            if len(keys) >= expected:
                return keys
        raise AssertionError(f"aiokafka read only {keys} over {settings.kafka_security_protocol}")
    finally:
        await consumer.stop()


def test_settings_that_cannot_work_are_refused_at_load():
    with pytest.raises(ValueError, match="KAFKA_SASL_MECHANISM"):
        Settings(kafka_security_protocol="SASL_SSL", kafka_sasl_mechanism="GSSAPI", kafka_sasl_username="u")
    with pytest.raises(ValueError, match="KAFKA_SASL_USERNAME"):
        Settings(kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_mechanism="PLAIN")
    with pytest.raises(ValueError, match="KAFKA_SECURITY_PROTOCOL"):
        Settings(kafka_security_protocol="TLS")
    with pytest.raises(ValueError, match="go together"):
        Settings(kafka_security_protocol="SSL", kafka_ssl_certfile="c.pem")
    secret = Settings(kafka_security_protocol="SASL_SSL", kafka_sasl_mechanism="PLAIN", kafka_sasl_username="u",
                      kafka_sasl_password="hunter2", api_token="tok", api_tokens="t2:read")
    assert "hunter2" not in repr(secret) and "tok" not in repr(secret) and "t2" not in repr(secret)


def test_a_wrong_password_is_refused(secure_broker, tmp_path):
    settings = settings_from(secure_env(secure_broker, tmp_path, password="not-the-password"))
    with pytest.raises(KafkaException):
        kafka_clients.admin(settings).list_topics(timeout=10)


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"])
def test_every_client_kind_round_trips_over_sasl_ssl(secure_broker, tmp_path, mechanism):
    """Admin (topic creation), librdkafka producer and consumer (the CLI's Client), aiokafka
    producer and consumer (the API's and the readers'), each with the mechanism."""
    settings = settings_from(secure_env(secure_broker, tmp_path, mechanism, client_certificate=mechanism == "PLAIN"))
    assert set(ensure_topics(settings.bootstrap_servers, settings)) == {spec.name(settings) for spec in T.ALL_TOPICS}
    client = Client(settings)
    client.produce(T.FEEDBACK, "by-librdkafka", {"content_id": "c1", "verdict": "harmful", "decided_at": 1})
    client.flush()

    assert sorted(asyncio.run(aiokafka_round_trip(settings, b"by-aiokafka", 2))) == [b"by-aiokafka", b"by-librdkafka"]
    read = [key for key, _ in Client(settings).read(T.FEEDBACK, raw=True, max_records=2, timeout_s=30)]
    assert sorted(read) == ["by-aiokafka", "by-librdkafka"]


@pytest.mark.parametrize("with_certificate", [True, False])
def test_mutual_tls_without_sasl(secure_broker, tmp_path, with_certificate):
    """KAFKA_SECURITY_PROTOCOL=SSL on a listener that requires a client certificate: the
    certificate of KAFKA_SSL_CERTFILE and KAFKA_SSL_KEYFILE gets in, no certificate does not."""
    broker, certs = secure_broker
    env = pipeline_env(f"127.0.0.1:{broker.secure.tls_port}", tmp_path, KAFKA_SECURITY_PROTOCOL="SSL",
                       KAFKA_SSL_CAFILE=str(certs / "ca.pem"))
    if with_certificate:
        env.update(KAFKA_SSL_CERTFILE=str(certs / "client.pem"), KAFKA_SSL_KEYFILE=str(certs / "client.key"))
    settings = settings_from(env)
    if not with_certificate:
        with pytest.raises(KafkaException):
            kafka_clients.admin(settings).list_topics(timeout=10)
        return
    ensure_topics(settings.bootstrap_servers, settings)

    assert asyncio.run(aiokafka_round_trip(settings, b"over-mtls", 1)) == [b"over-mtls"]


def test_cli_worker_and_api_match_over_sasl_ssl_with_a_client_certificate(secure_broker, tmp_path):
    """The CLI creates the topics and a bank, the worker matches, the API looks up: all over SCRAM on TLS."""
    env = secure_env(secure_broker, tmp_path / "state", client_certificate=True)
    hmas(env, "topics", "create")
    pdq = random_pdq()
    hmas(env, "bank", "create", "SECURE", "--action", "remove")
    hmas(env, "bank", "add", "SECURE", "--signal", f"pdq:{pdq}")
    stack = PipelineStack(env, tmp_path)
    try:
        hmas(env, "submit", "--signal", f"pdq:{pdq}", "--content-id", "over-tls")
        matches = collect_until(stack.settings, T.MATCHES, {"over-tls"}, timeout_s=120)
        assert [hit["bank"] for hit in matches["over-tls"][0]["matches"]] == ["SECURE"]
        found = requests.get(f"{stack.api.base}/m/lookup", params={"signal_type": "pdq", "signal": pdq}, timeout=30)
        assert found.status_code == 200 and list(found.json()) == ["SECURE"], found.text
    finally:
        stack.stop()
