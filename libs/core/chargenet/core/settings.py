"""Settings shared by every service: one place, prefix ``CHARGENET_``, validated at start.

A service subclasses :class:`CoreSettings` for its own fields. ``load_settings`` turns a validation
error into one clear message naming the setting, because an operator reading a pod's log should not
have to parse a pydantic traceback.
"""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar, Self, TypeVar

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

#: Values that only make sense on a developer's machine; production refuses them.
# A marker, refused in production; 32 bytes or more like any HS256 key (RFC 7518, 3.2).
DEVELOPMENT_SECRET = "chargenet-development-only-never-in-production"  # noqa: S105
#: The shortest key production accepts for signing users' tokens (HS256, RFC 7518, 3.2).
MIN_JWT_SECRET_BYTES = 32


class Mode(StrEnum):
    DEVELOPMENT = "development"
    PRODUCTION = "production"


class KafkaSecurity(StrEnum):
    """How the services reach the brokers (librdkafka's ``security.protocol``)."""

    PLAINTEXT = "PLAINTEXT"
    SSL = "SSL"
    SASL_PLAINTEXT = "SASL_PLAINTEXT"
    SASL_SSL = "SASL_SSL"

    @property
    def tls(self) -> bool:
        return self in (KafkaSecurity.SSL, KafkaSecurity.SASL_SSL)

    @property
    def sasl(self) -> bool:
        return self in (KafkaSecurity.SASL_PLAINTEXT, KafkaSecurity.SASL_SSL)


class SaslMechanism(StrEnum):
    PLAIN = "PLAIN"
    SCRAM_SHA_256 = "SCRAM-SHA-256"
    SCRAM_SHA_512 = "SCRAM-SHA-512"


class BusKind(StrEnum):
    MEMORY = "memory"
    KAFKA = "kafka"


class CoreSettings(BaseSettings):
    """Settings every service has. Environment variables: ``CHARGENET_<FIELD>``."""

    model_config = SettingsConfigDict(
        env_prefix="CHARGENET_",
        env_file=None,
        extra="ignore",
        validate_default=True,
    )

    #: Whether the service keeps a database. One that keeps none (the gateway) overrides this, and
    #: production mode then does not ask it for a PostgreSQL ``database_url`` it would never open.
    uses_database: ClassVar[bool] = True

    mode: Mode = Mode.DEVELOPMENT
    service_name: str = "chargenet"
    log_level: str = Field(default="INFO", pattern=r"^(DEBUG|INFO|WARNING|ERROR)$")
    log_json: bool = True

    bus: BusKind = BusKind.MEMORY
    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    kafka_topic_prefix: str = ""
    kafka_partitions: int = Field(default=8, ge=1, le=1024)
    kafka_connect_timeout_seconds: float = Field(default=15.0, gt=0)
    #: How long the producer waits to batch events per partition. Short by default: a session
    #: crosses several hops and each waits this long at most. A high-volume publisher trades a
    #: little latency for much less CPU (librdkafka's cost per event falls with the batch size).
    kafka_linger_ms: int = Field(default=2, ge=0, le=1000)
    #: librdkafka's debug contexts for every client of the bus (e.g. "cgrp,fetch" to see a
    #: consumer's group and fetch positions), logged at DEBUG by the "kafka" logger. Empty: off.
    kafka_debug: str = Field(default="", pattern=r"^[a-z,]*$")
    #: TLS (SSL), authentication (SASL_PLAINTEXT) or both (SASL_SSL) to the brokers.
    kafka_security_protocol: KafkaSecurity = KafkaSecurity.PLAINTEXT
    #: The CA certificate (PEM) that signed the brokers'; unset: the system's CAs.
    kafka_ssl_ca_file: Path | None = None
    #: Mutual TLS: this service's certificate and key (PEM), for brokers that ask for one.
    kafka_ssl_cert_file: Path | None = None
    kafka_ssl_key_file: Path | None = None
    kafka_sasl_mechanism: SaslMechanism = SaslMechanism.SCRAM_SHA_512
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None

    database_url: str = "sqlite:///:memory:"
    #: Connections a process keeps open to a database server, and how many more it may open for
    #: a moment. One beyond the kept ones is closed when it comes back, so a load that needs more
    #: at once than are kept pays a new connection (a server process forked, a login) per
    #: transaction: keep at least as many as the process's threads that use the database at once.
    database_pool_size: int = Field(default=20, ge=1, le=500)
    database_max_overflow: int = Field(default=20, ge=0, le=500)
    #: How often the outbox relay looks for events without being woken. A commit that stages
    #: events wakes its own process's relay at once, so this only catches what another process
    #: committed (an operator's tool, a relay that failed a batch); each look is a locking query.
    outbox_poll_seconds: float = Field(default=1.0, gt=0, le=60)
    #: How long a published event stays in the outbox, and an applied event's id in the inbox
    #: (which must outlive the bus's topic retention: see ``core.db.retention``).
    outbox_retention_hours: float = Field(default=7 * 24, gt=0)
    inbox_retention_hours: float = Field(default=14 * 24, gt=0)
    chain_rpc_url: str = "inprocess://eth-tester"

    signer_url: str = "127.0.0.1:50051"
    signer_token: SecretStr = SecretStr(DEVELOPMENT_SECRET)
    #: TLS to the signer: the CA certificate (PEM) that signed the signer's. Unset: plaintext,
    #: which production mode refuses for a service that calls the signer (``signer_client``).
    signer_ca_file: Path | None = None
    #: Mutual TLS: this service's own certificate and key (PEM), for a signer that asks for one.
    signer_client_cert_file: Path | None = None
    signer_client_key_file: Path | None = None

    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8000, ge=0, le=65535)

    @model_validator(mode="after")
    def _signer_tls_files_complete(self) -> Self:
        if (self.signer_client_cert_file is None) != (self.signer_client_key_file is None):
            raise ValueError("signer_client_cert_file and signer_client_key_file go together")
        if self.signer_client_cert_file is not None and self.signer_ca_file is None:
            raise ValueError("signer_client_cert_file: mutual TLS needs signer_ca_file as well")
        return self

    @model_validator(mode="after")
    def _kafka_security_complete(self) -> Self:
        protocol = self.kafka_security_protocol
        if (self.kafka_ssl_cert_file is None) != (self.kafka_ssl_key_file is None):
            raise ValueError("kafka_ssl_cert_file and kafka_ssl_key_file go together")
        files = (self.kafka_ssl_ca_file, self.kafka_ssl_cert_file)
        if not protocol.tls and any(f is not None for f in files):
            raise ValueError(
                f"kafka_ssl_*_file: TLS files need kafka_security_protocol SSL or SASL_SSL, "
                f"not {protocol}"
            )
        if protocol.sasl and (self.kafka_sasl_username is None or self.kafka_sasl_password is None):
            raise ValueError(
                f"kafka_security_protocol {protocol} needs kafka_sasl_username and "
                "kafka_sasl_password"
            )
        if (
            self.mode is Mode.PRODUCTION
            and protocol is KafkaSecurity.SASL_PLAINTEXT
            and self.kafka_sasl_mechanism is SaslMechanism.PLAIN
        ):
            # PLAIN sends the password itself; without TLS anyone on the path reads it.
            raise ValueError(
                "kafka_sasl_mechanism PLAIN without TLS is refused in production mode; use "
                "SASL_SSL or a SCRAM mechanism"
            )
        return self

    @model_validator(mode="after")
    def _production_refuses_development_defaults(self) -> Self:
        if self.mode is not Mode.PRODUCTION:
            return self
        for name, value in self:
            if not isinstance(value, SecretStr):
                continue
            if value.get_secret_value() == DEVELOPMENT_SECRET:
                raise ValueError(
                    f"{name}: the development default is refused in production mode; "
                    f"set CHARGENET_{name.upper()}"
                )
            if name.endswith("_jwt_secret") and (
                len(value.get_secret_value().encode()) < MIN_JWT_SECRET_BYTES
            ):
                raise ValueError(
                    f"{name}: a token-signing key needs at least {MIN_JWT_SECRET_BYTES} bytes; "
                    f"set CHARGENET_{name.upper()}"
                )
        if self.bus is BusKind.MEMORY:
            raise ValueError("bus: the in-process bus is refused in production mode; use kafka")
        if self.uses_database and self.database_url.startswith("sqlite"):
            raise ValueError("database_url: SQLite is refused in production mode; use PostgreSQL")
        if self.chain_rpc_url.startswith("inprocess"):
            raise ValueError("chain_rpc_url: the in-process chain is refused in production mode")
        return self


class ConfigurationError(SystemExit):
    """Raised (as an exit) when configuration is missing, malformed or unusable."""

    def __init__(self, message: str) -> None:
        super().__init__(2)
        self.message = message

    def __str__(self) -> str:
        return self.message


def describe_validation_error(error: ValidationError, prefix: str = "CHARGENET_") -> str:
    """One line per bad setting, naming the environment variable an operator has to fix."""
    lines = []
    for item in error.errors():
        location = [str(part) for part in item["loc"] if part != "__root__"]
        name = location[0] if location else ""
        message = item["msg"].removeprefix("Value error, ")
        if name:
            lines.append(f"{prefix}{name.upper()}: {message}")
        else:
            lines.append(message)
    return "configuration error: " + "; ".join(lines)


S = TypeVar("S", bound=CoreSettings)


def load_settings(cls: type[S], **overrides: Any) -> S:
    """Build settings from the environment or exit with one clear message (exit code 2)."""
    try:
        return cls(**overrides)
    except ValidationError as error:
        raise ConfigurationError(describe_validation_error(error)) from None


def fail(message: str) -> ConfigurationError:
    """A configuration error for problems found after parsing (e.g. an unreachable broker)."""
    return ConfigurationError(f"configuration error: {message}")


def exit_on_configuration_error(error: ConfigurationError) -> None:
    print(error.message, file=sys.stderr)
    raise SystemExit(2)
