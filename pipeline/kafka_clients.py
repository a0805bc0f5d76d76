"""Every Kafka client the project makes, made here: each one reaches the cluster the settings name
over the security they name (TLS, SASL PLAIN or SCRAM, a client certificate).

The same settings take three forms: librdkafka's config keys (confluent_kafka producers,
consumers and admin clients of the CLI and the readers), aiokafka's keyword arguments (the API's
producer, the log readers, the exchange fetcher), and Faust's broker credentials (the worker).
"""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from confluent_kafka import Consumer, Producer
    from confluent_kafka.admin import AdminClient
    from faust.types.auth import CredentialsT

    from pipeline.config import Settings

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


def check_security(settings: "Settings") -> None:
    """Refuse security settings that cannot work, naming the setting (at load, not at first connect)."""
    protocol, mechanism = settings.kafka_security_protocol, settings.kafka_sasl_mechanism
    if protocol not in PROTOCOLS:
        raise ValueError(f"KAFKA_SECURITY_PROTOCOL {protocol!r}: expected one of {', '.join(PROTOCOLS)}")
    if uses_sasl(settings):
        if mechanism not in MECHANISMS:
            raise ValueError(f"KAFKA_SASL_MECHANISM {mechanism!r}: expected one of {', '.join(MECHANISMS)}")
        if not settings.kafka_sasl_username:
            raise ValueError(f"KAFKA_SECURITY_PROTOCOL {protocol} needs KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD")
    elif mechanism:
        raise ValueError(f"KAFKA_SASL_MECHANISM is set but KAFKA_SECURITY_PROTOCOL {protocol} does not use SASL")
    if bool(settings.kafka_ssl_certfile) != bool(settings.kafka_ssl_keyfile):
        raise ValueError("KAFKA_SSL_CERTFILE and KAFKA_SSL_KEYFILE go together")


def uses_sasl(settings: "Settings") -> bool:
    return settings.kafka_security_protocol.startswith("SASL_")


def uses_tls(settings: "Settings") -> bool:
    return settings.kafka_security_protocol in ("SSL", "SASL_SSL")


def ssl_context(settings: "Settings") -> ssl.SSLContext | None:
    """The TLS context of the Python clients: the brokers' CA (the system's when none is named),
    host names checked, the client certificate when one is configured."""
    if not uses_tls(settings):
        return None
    context = ssl.create_default_context(cafile=settings.kafka_ssl_cafile or None)
    if settings.kafka_ssl_certfile:
        context.load_cert_chain(settings.kafka_ssl_certfile, settings.kafka_ssl_keyfile)
    return context


# -- librdkafka (confluent_kafka) -----------------------------------------------------------------
def librdkafka_config(settings: "Settings", bootstrap: str | None = None) -> dict[str, Any]:
    """bootstrap.servers and the security keys, for a confluent_kafka client's config."""
    config: dict[str, Any] = {"bootstrap.servers": bootstrap or settings.bootstrap_servers,
                              "security.protocol": settings.kafka_security_protocol}
    if uses_sasl(settings):
        config.update({"sasl.mechanism": settings.kafka_sasl_mechanism, "sasl.username": settings.kafka_sasl_username,
                       "sasl.password": settings.kafka_sasl_password})
    if uses_tls(settings):
        config.update({key: value for key, value in (
            ("ssl.ca.location", settings.kafka_ssl_cafile), ("ssl.certificate.location", settings.kafka_ssl_certfile),
            ("ssl.key.location", settings.kafka_ssl_keyfile)) if value})
    return config


def consumer(settings: "Settings", config: dict[str, Any]) -> "Consumer":
    """A confluent_kafka Consumer with `config` (librdkafka's keys) on top of the connection's."""
    from confluent_kafka import Consumer

    return Consumer({**librdkafka_config(settings), **config})


def producer(settings: "Settings", config: dict[str, Any]) -> "Producer":
    from confluent_kafka import Producer

    return Producer({**librdkafka_config(settings), **config})


def admin(settings: "Settings", bootstrap: str | None = None, config: dict[str, Any] | None = None) -> "AdminClient":
    from confluent_kafka.admin import AdminClient

    return AdminClient({**librdkafka_config(settings, bootstrap), **(config or {})})


# -- aiokafka -------------------------------------------------------------------------------------
def aiokafka_options(settings: "Settings") -> dict[str, Any]:
    """bootstrap_servers and the security keyword arguments of an aiokafka client."""
    options: dict[str, Any] = {"bootstrap_servers": settings.bootstrap_servers,
                               "security_protocol": settings.kafka_security_protocol}
    if uses_sasl(settings):
        options.update(sasl_mechanism=settings.kafka_sasl_mechanism, sasl_plain_username=settings.kafka_sasl_username,
                       sasl_plain_password=settings.kafka_sasl_password)
    if uses_tls(settings):
        options["ssl_context"] = ssl_context(settings)
    return options


def aio_consumer(settings: "Settings", *topics: str, **options: Any) -> "AIOKafkaConsumer":
    from aiokafka import AIOKafkaConsumer

    return AIOKafkaConsumer(*topics, **aiokafka_options(settings), **options)


def aio_producer(settings: "Settings", **options: Any) -> "AIOKafkaProducer":
    from aiokafka import AIOKafkaProducer

    return AIOKafkaProducer(**aiokafka_options(settings), **options)


# -- Faust ----------------------------------------------------------------------------------------
def faust_credentials(settings: "Settings") -> "CredentialsT | None":
    """The worker app's broker_credentials (None: plaintext)."""
    import faust

    context = ssl_context(settings)
    if uses_sasl(settings):
        return faust.SASLCredentials(username=settings.kafka_sasl_username, password=settings.kafka_sasl_password,
                                     ssl_context=context, mechanism=settings.kafka_sasl_mechanism)
    if context is not None:
        return faust.SSLCredentials(context)
    return None
