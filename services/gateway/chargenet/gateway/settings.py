"""Gateway configuration: one deployment per CPO (``CHARGENET_CPO_ID``)."""

from __future__ import annotations

import socket
from enum import IntEnum
from pathlib import Path
from typing import ClassVar, Self

from pydantic import Field, model_validator

from chargenet.core.settings import CoreSettings, Mode


class SecurityProfile(IntEnum):
    """OCPP security profiles; 0 (no authentication) exists for development and benchmarks."""

    NONE = 0
    BASIC = 1
    TLS_BASIC = 2
    MUTUAL_TLS = 3


class GatewaySettings(CoreSettings):
    #: No tables: credentials come from a file, the transaction id map is rebuilt from the
    #: sessions topic and meter values are published. ``database_url`` is never opened.
    uses_database: ClassVar[bool] = False

    service_name: str = "gateway"

    cpo_id: str = Field(default="cpo-dev", pattern=r"^[a-z0-9][a-z0-9_.\-]{0,62}$")
    #: Distinct per replica; it names the replica's own consumer groups.
    replica_id: str = Field(default_factory=socket.gethostname, min_length=1, max_length=64)

    ws_host: str = "127.0.0.1"
    ws_port: int = Field(default=9000, ge=0, le=65535)
    security_profile: SecurityProfile = SecurityProfile.BASIC
    #: Server certificate and key (profiles 2 and 3), and the CPO's CA for client certificates (3).
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    tls_ca_file: Path | None = None

    #: JSON file of charge points and password hashes (see ``chargenet.gateway.credentials``),
    #: or the same JSON inline in ``CHARGENET_CHARGE_POINTS_JSON``.
    charge_points_file: Path | None = None
    charge_points_json: str | None = None

    max_frame_bytes: int = Field(default=64 * 1024, ge=1024)
    #: Per charge point: sustained messages per second and the burst above it before disconnect.
    rate_limit_per_second: float = Field(default=20.0, gt=0)
    rate_limit_burst: int = Field(default=60, ge=1)
    #: Actions whose schema violations are logged, not refused (known non-conformant firmware).
    relaxed_schema_actions: list[str] = Field(default_factory=list)
    heartbeat_interval_seconds: int = Field(default=300, ge=10)
    call_timeout_seconds: float = Field(default=30.0, gt=0)
    #: How long Authorize/Start waits for an escrow_opened event still in flight on the bus, and
    #: a transaction's message for its started event (then it is refused, to be retried).
    authorize_grace_seconds: float = Field(default=2.0, ge=0)
    #: The gateway publishes every meter value and status of a fleet. Each partition's batch is
    #: its own produce request, and the broker's cost is per request: at 3,000 events/s it spent
    #: 94 us of CPU an event at 5 ms, 59 at 20, 43 at 50, 21 at 100 (bench/RESULTS.md, Gateway,
    #: "Fourth round"); librdkafka's threads likewise. A meter value or a status 50 ms later
    #: changes nothing a driver or the escrow can see.
    kafka_linger_ms: int = Field(default=50, ge=0, le=1000)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        profile = self.security_profile
        if profile >= SecurityProfile.TLS_BASIC and not (self.tls_cert_file and self.tls_key_file):
            raise ValueError(
                "tls_cert_file: security profiles 2 and 3 need tls_cert_file and tls_key_file"
            )
        if profile is SecurityProfile.MUTUAL_TLS and not self.tls_ca_file:
            raise ValueError("tls_ca_file: security profile 3 needs the CPO's CA (tls_ca_file)")
        if profile is SecurityProfile.NONE and self.mode is Mode.PRODUCTION:
            raise ValueError("security_profile: 0 (no authentication) is refused in production")
        if self.charge_points_file is None and self.charge_points_json is None:
            raise ValueError(
                "charge_points_file: set CHARGENET_CHARGE_POINTS_FILE "
                "or CHARGENET_CHARGE_POINTS_JSON"
            )
        return self
