"""The services' Kafka credentials: settings that cannot work are refused by name, and a bus with
credentials publishes and consumes through the test broker's SASL listener, which refuses a
wrong password."""

from __future__ import annotations

import queue
from pathlib import Path

import pytest
from pydantic import ValidationError

from chargenet.core.bus.kafka import KafkaBus, security_config
from chargenet.core.envelope import Envelope
from chargenet.core.settings import BusKind, ConfigurationError, CoreSettings

TOPIC = "secured"


def test_a_sasl_protocol_without_credentials_is_refused() -> None:
    with pytest.raises(ValidationError, match="needs kafka_sasl_username and kafka_sasl_password"):
        CoreSettings(kafka_security_protocol="SASL_SSL", kafka_sasl_username="svc")


def test_tls_files_without_tls_are_refused() -> None:
    with pytest.raises(ValidationError, match="TLS files need kafka_security_protocol SSL"):
        CoreSettings(kafka_ssl_ca_file=Path("ca.pem"))
    with pytest.raises(ValidationError, match="kafka_ssl_cert_file and kafka_ssl_key_file go"):
        CoreSettings(
            kafka_security_protocol="SSL",
            kafka_ssl_cert_file=Path("client.pem"),
        )


def test_production_refuses_a_plain_password_without_tls() -> None:
    with pytest.raises(ValidationError, match="PLAIN without TLS is refused in production"):
        CoreSettings(
            mode="production",
            kafka_security_protocol="SASL_PLAINTEXT",
            kafka_sasl_mechanism="PLAIN",
            kafka_sasl_username="svc",
            kafka_sasl_password="pw",
        )


def test_the_settings_become_librdkafka_properties() -> None:
    assert security_config(CoreSettings()) == {}
    settings = CoreSettings(
        kafka_security_protocol="SASL_SSL",
        kafka_ssl_ca_file=Path("/etc/kafka/ca.crt"),
        kafka_ssl_cert_file=Path("/etc/kafka/tls.crt"),
        kafka_ssl_key_file=Path("/etc/kafka/tls.key"),
        kafka_sasl_username="wallet",
        kafka_sasl_password="s3cret",
    )
    assert security_config(settings) == {
        "security.protocol": "SASL_SSL",
        "ssl.ca.location": "/etc/kafka/ca.crt",
        "ssl.certificate.location": "/etc/kafka/tls.crt",
        "ssl.key.location": "/etc/kafka/tls.key",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "wallet",
        "sasl.password": "s3cret",
    }
    assert "s3cret" not in repr(settings)


def _sasl_settings(sasl: tuple[str, str, str], topic_prefix: str, password: str) -> CoreSettings:
    bootstrap, username, _password = sasl
    return CoreSettings(
        bus=BusKind.KAFKA,
        kafka_bootstrap_servers=bootstrap,
        kafka_topic_prefix=topic_prefix,
        kafka_connect_timeout_seconds=5.0,
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_mechanism="PLAIN",
        kafka_sasl_username=username,
        kafka_sasl_password=password,
    )


@pytest.mark.kafka
def test_a_bus_with_credentials_publishes_and_consumes(
    kafka_sasl: tuple[str, str, str], topic_prefix: str
) -> None:
    bus = KafkaBus.connect(_sasl_settings(kafka_sasl, topic_prefix, kafka_sasl[2]))
    try:
        bus.ensure_topics([TOPIC])
        received: queue.Queue[Envelope] = queue.Queue()
        subscription = bus.subscribe([TOPIC], "secured-group", received.put)
        assert subscription.wait_assigned(30)
        sent = Envelope(type="chargenet.test.secured.v1", source="tests", subject="k", data={})
        bus.publish(TOPIC, sent)
        bus.flush()
        assert received.get(timeout=30).id == sent.id
    finally:
        bus.close()


@pytest.mark.kafka
def test_a_wrong_password_is_refused_at_start_with_the_settings_named(
    kafka_sasl: tuple[str, str, str], topic_prefix: str
) -> None:
    with pytest.raises(ConfigurationError) as refused:
        KafkaBus.connect(_sasl_settings(kafka_sasl, topic_prefix, "not-the-password"))
    assert "over SASL_PLAINTEXT" in refused.value.message
    assert "CHARGENET_KAFKA_SASL_*" in refused.value.message
