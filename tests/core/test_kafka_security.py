"""The services' Kafka security: settings that cannot work are refused by name, and a bus over
TLS with credentials publishes and consumes through the test broker's secured listener, which a
wrong password or an untrusted broker certificate keeps from starting."""

from __future__ import annotations

import queue
import uuid
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin._scram import (  # re-exported by confluent_kafka.admin, untyped there
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)
from pydantic import ValidationError

from chargenet.core.bus.kafka import KafkaBus, security_config
from chargenet.core.envelope import Envelope
from chargenet.core.settings import BusKind, ConfigurationError, CoreSettings
from tests.conftest import SecuredKafka

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


def _secured(kafka: SecuredKafka, topic_prefix: str, **changes: Any) -> CoreSettings:
    settings: dict[str, Any] = {
        "bus": BusKind.KAFKA,
        "kafka_bootstrap_servers": kafka.bootstrap,
        "kafka_topic_prefix": topic_prefix,
        "kafka_connect_timeout_seconds": 5.0,
        "kafka_security_protocol": "SASL_SSL",
        "kafka_ssl_ca_file": kafka.ca_file,
        "kafka_sasl_mechanism": "PLAIN",
        "kafka_sasl_username": kafka.username,
        "kafka_sasl_password": kafka.password,
    }
    return CoreSettings(**(settings | changes))


def scram_user(kafka_bootstrap: str) -> tuple[str, str]:
    """A new SCRAM-SHA-512 user (made through the broker's admin API): name and password."""
    name, password = f"svc-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    credential = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192)
    upsert = UserScramCredentialUpsertion(name, credential, password.encode())
    for future in admin.alter_user_scram_credentials([upsert]).values():
        future.result(timeout=30)
    return name, password


@pytest.mark.kafka
@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-512"])
def test_a_bus_over_tls_with_credentials_publishes_and_consumes(
    secured_kafka: SecuredKafka, kafka_bootstrap: str, topic_prefix: str, mechanism: str
) -> None:
    user: dict[str, Any] = {}
    if mechanism != "PLAIN":
        name, password = scram_user(kafka_bootstrap)
        user = {"kafka_sasl_username": name, "kafka_sasl_password": password}
    bus = KafkaBus.connect(
        _secured(secured_kafka, topic_prefix, kafka_sasl_mechanism=mechanism, **user)
    )
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
@pytest.mark.parametrize(
    "changes",
    [{"kafka_sasl_password": "not-the-password"}, {"kafka_ssl_ca_file": None}],
    ids=["wrong-password", "broker-certificate-not-trusted"],
)
def test_a_refused_connection_stops_the_start_with_the_settings_named(
    secured_kafka: SecuredKafka, topic_prefix: str, changes: dict[str, Any]
) -> None:
    with pytest.raises(ConfigurationError) as refused:
        KafkaBus.connect(_secured(secured_kafka, topic_prefix, **changes))
    assert "over SASL_SSL" in refused.value.message
    assert "CHARGENET_KAFKA_SSL_*, CHARGENET_KAFKA_SASL_*" in refused.value.message
