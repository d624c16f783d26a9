"""The whole network as configuration: CPOs, stations, keys, callers, ports and each service's
settings.

One :class:`Plan` feeds both ways to run: the embedded default builds each service's settings
object from :meth:`Plan.settings`, the distributed stack turns the same fields into
``CHARGENET_*`` environment variables (:meth:`Plan.environment`). That is the architecture's rule
made concrete: the two differ by configuration only.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from eth_account import Account

from chargenet.cli.network.fleet import meter_for
from chargenet.core.chain.artifacts import ARTIFACTS_DIR
from chargenet.core.settings import DEVELOPMENT_SECRET
from chargenet.core.signer_client.permissions import (
    callers_json,
    escrow_caller,
    registry_caller,
    wallet_caller,
)

CONTRACTS = ("ChargeToken", "ChargingEscrow", "StationRegistry")
HTTP_SERVICES = ("wallet", "registry", "escrow", "invoicing")
#: The demo's charge points share one Basic auth password (16-40 characters, OCPP 1.6 security).
CP_PASSWORD = "chargenet-sim-password"  # noqa: S105 - a development simulator's password


def _tariff(party: str, tariff_id: str, elements: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "country_code": "DE",
        "party_id": party,
        "id": tariff_id,
        "currency": "EUR",
        "type": "REGULAR",
        "elements": elements,
        "last_updated": "2026-01-01T00:00:00Z",
    }


@dataclass(frozen=True)
class Cpo:
    """A charge point operator: its gateway, tariff and charge points (one station each)."""

    cpo_id: str
    party_id: str
    name: str
    city: str
    ocpp_version: str
    tariff: dict[str, Any]
    charge_points: tuple[str, ...]
    power_w: int = 11_000

    @property
    def key_alias(self) -> str:
        return f"cpo.{self.cpo_id}"

    def station_id(self, charge_point_id: str) -> str:
        return f"DE*{self.party_id}*S{charge_point_id.rsplit('-', 1)[-1]}"

    def location(self, charge_point_id: str, index: int) -> dict[str, Any]:
        """The OCPI location document of the station behind ``charge_point_id``."""
        station_id = self.station_id(charge_point_id)
        evse: dict[str, Any] = {
            "uid": "E1",
            "evse_id": f"DE*{self.party_id}*E{charge_point_id.rsplit('-', 1)[-1]}*1",
            "connectors": [
                {
                    "id": "1",
                    "standard": "IEC_62196_T2" if self.power_w <= 22_000 else "IEC_62196_T2_COMBO",
                    "format": "SOCKET" if self.power_w <= 22_000 else "CABLE",
                    "power_type": "AC_3_PHASE" if self.power_w <= 22_000 else "DC",
                    "max_voltage": 400 if self.power_w <= 22_000 else 920,
                    "max_amperage": 32 if self.power_w <= 22_000 else 200,
                    "max_electric_power": self.power_w,
                }
            ],
        }
        if self.ocpp_version == "2.0.1":
            evse["ocpp_evse_id"] = 1
        return {
            "id": station_id,
            "name": f"{self.name} {self.city} {index + 1}",
            "coordinates": {
                "latitude": str(Decimal("52.520008") + Decimal(index) / 1000),
                "longitude": str(Decimal("13.404954") + Decimal(len(self.cpo_id)) / 1000),
            },
            "time_zone": "Europe/Berlin",
            "charge_point_id": charge_point_id,
            "evses": [evse],
        }


def demo_cpos(stations: int = 3, spare: int = 0) -> tuple[Cpo, ...]:
    """Two CPOs: an AC operator on OCPP 1.6J and a fast-charging one on OCPP 2.0.1."""
    return (
        Cpo(
            cpo_id="cpo-a",
            party_id="CNA",
            name="Amperio",
            city="Berlin",
            ocpp_version="1.6",
            tariff=_tariff(
                "CNA",
                "AC-STANDARD",
                [
                    {
                        "price_components": [
                            {"type": "FLAT", "price": "0.50", "vat": "19", "step_size": 1},
                            {"type": "ENERGY", "price": "0.39", "vat": "19", "step_size": 1},
                        ]
                    }
                ],
            ),
            charge_points=tuple(f"CP-A{n}" for n in range(1, stations + spare + 1)),
            power_w=22_000,
        ),
        Cpo(
            cpo_id="cpo-b",
            party_id="CNB",
            name="Boltway",
            city="Potsdam",
            ocpp_version="2.0.1",
            tariff=_tariff(
                "CNB",
                "DC-FAST",
                [
                    {
                        "price_components": [
                            {"type": "ENERGY", "price": "0.59", "vat": "19", "step_size": 1},
                        ]
                    }
                ],
            ),
            charge_points=tuple(f"CP-B{n}" for n in range(1, stations + spare + 1)),
            power_w=50_000,
        ),
    )


#: The signer's 50051 is the highest default port; shifted, it must stay a valid port.
MAX_PORT_OFFSET = 65_535 - 50_051


@dataclass(frozen=True)
class Ports:
    """Where everything listens (0: any free port, for the embedded default without --serve)."""

    wallet: int = 8001
    registry: int = 8002
    escrow: int = 8003
    invoicing: int = 8005
    signer: int = 50051
    signer_ops: int = 8006
    gateway_base: int = 9100  # CPO n, replica r: ws base + 100 n + r; ops base + 100 n + 50 + r

    def gateway(self, cpo_index: int, replica: int) -> tuple[int, int]:
        if self.gateway_base == 0:
            return 0, 0
        ws = self.gateway_base + 100 * cpo_index + replica
        return ws, ws + 50

    def shifted(self, delta: int) -> Ports:
        """Every port moved by ``delta`` (to run beside another stack or a clash)."""
        if not 0 <= delta <= MAX_PORT_OFFSET:
            raise ValueError(f"a port offset is 0-{MAX_PORT_OFFSET}")
        return Ports(
            self.wallet + delta,
            self.registry + delta,
            self.escrow + delta,
            self.invoicing + delta,
            self.signer + delta,
            self.signer_ops + delta,
            self.gateway_base + delta,
        )

    @classmethod
    def ephemeral(cls) -> Ports:
        return cls(0, 0, 0, 0, 0, 0, 0)


def fresh_keys(cpos: tuple[Cpo, ...]) -> dict[str, str]:
    """New secp256k1 keys for the signer: the MSP's minter, the relayer and each CPO."""
    aliases = ["minter", "relayer", *(cpo.key_alias for cpo in cpos)]
    return {alias: "0x" + secrets.token_hex(32) for alias in aliases}


def fresh_tokens() -> dict[str, str]:
    return {caller: secrets.token_urlsafe(24) for caller in ("wallet", "registry", "escrow")}


@dataclass
class Plan:
    cpos: tuple[Cpo, ...]
    keys: dict[str, str]  # signer alias -> 0x private key
    tokens: dict[str, str]  # signer caller -> bearer token
    ports: Ports
    rpc_url: str
    databases: dict[str, str]  # service -> database URL
    kafka: str | None = None  # bootstrap servers; None: the in-process bus
    topic_prefix: str = ""
    contracts: dict[str, str] = field(default_factory=dict)  # name -> address
    first_block: int = 0
    meter_seed: str = "chargenet-demo"
    replicas: int = 1
    suppliers_file: str | None = None
    jwt_secret: str = DEVELOPMENT_SECRET
    log_level: str = "WARNING"
    #: A folder with ca.crt and signer.crt/.key (``tls.issue_certificates``): the signer serves
    #: TLS and its clients trust that CA. None: plaintext (the embedded default, one process).
    signer_tls: Path | None = None

    def address_of(self, alias: str) -> str:
        return str(Account.from_key(self.keys[alias]).address)

    def station_chain_id(self, station_id: str) -> str:
        """The registry contract's bytes32 id of a text station id (ASCII, zero-padded)."""
        return "0x" + station_id.encode("ascii").ljust(32, b"\0").hex()

    # -- per-service settings --------------------------------------------------------------------
    def _core(self, service: str, http_port: int) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "service_name": service,
            "database_url": self.databases.get(service, "sqlite:///:memory:"),
            "chain_rpc_url": self.rpc_url,
            "log_level": self.log_level,
            "http_host": "127.0.0.1",
            "http_port": http_port,
        }
        if self.kafka is not None:
            fields.update(
                bus="kafka",
                kafka_bootstrap_servers=self.kafka,
                kafka_topic_prefix=self.topic_prefix,
                kafka_partitions=4,
            )
            # The bus prefixes topics but not consumer groups. With bare names ("escrow",
            # "gateway-cpo-a-r1") every stack on the broker - tests, benchmarks, another
            # `chargenet up` - joins the same groups, and each join or leave stalls all of them
            # for a rebalance. The stack's topic prefix keeps its groups apart.
            if service in GROUP_FIELDS:
                fields[GROUP_FIELDS[service]] = f"{self.topic_prefix}{service}"
        return fields

    def _signer_client(self, service: str, signer_url: str) -> dict[str, Any]:
        fields: dict[str, Any] = {"signer_url": signer_url, "signer_token": self.tokens[service]}
        if self.signer_tls is not None:
            fields["signer_ca_file"] = str(self.signer_tls / "ca.crt")
        return fields

    def signer(self, signer_url: str) -> dict[str, Any]:
        tls: dict[str, Any] = {}
        if self.signer_tls is not None:
            tls["signer_tls_cert_file"] = str(self.signer_tls / "signer.crt")
            tls["signer_tls_key_file"] = str(self.signer_tls / "signer.key")
        return {
            **self._core("signer", self.ports.signer_ops),
            **tls,
            "signer_listen": f"127.0.0.1:{self.ports.signer}",
            "signer_keys": ",".join(f"{a}={k}" for a, k in self.keys.items()),
            "signer_callers": self.callers(),
            "signer_contracts": json.dumps(
                {
                    name: {"address": address, "artifact": str(ARTIFACTS_DIR / f"{name}.json")}
                    for name, address in self.contracts.items()
                }
            ),
            # Both networks run on an automine chain (Hardhat, eth-tester): every transaction is
            # its own block and nothing reorganises, so its own block is final. The signer's
            # default of 2 would hold each transaction until an unrelated one makes the next
            # block, and the escrow starts a charge point only once its open is FINAL.
            "signer_confirmations": 1,
            # The signer learns a transaction's fate by polling the node; on automine it is
            # decided within milliseconds, so a long poll is pure start latency.
            "signer_poll_seconds": 0.05,
        }

    def registry(self, signer_url: str) -> dict[str, Any]:
        return {
            **self._core("registry", self.ports.registry),
            **self._signer_client("registry", signer_url),
            "registry_address": self.contracts["StationRegistry"],
            "registry_escrow_address": self.contracts["ChargingEscrow"],
            "registry_start_block": self.first_block,
            "registry_confirmations": 0,
            "registry_cpo_keys": json.dumps({c.cpo_id: c.key_alias for c in self.cpos}),
            "registry_jwt_secret": self.jwt_secret,
        }

    def wallet(self, signer_url: str, registry_url: str) -> dict[str, Any]:
        return {
            **self._core("wallet", self.ports.wallet),
            **self._signer_client("wallet", signer_url),
            "wallet_token_address": self.contracts["ChargeToken"],
            "wallet_escrow_address": self.contracts["ChargingEscrow"],
            "wallet_start_block": self.first_block,
            "wallet_balance_cache_seconds": 0,
            "wallet_registry_url": registry_url,
            "wallet_cpo_ids": json.dumps(
                {self.address_of(c.key_alias): c.cpo_id for c in self.cpos}
            ),
            "wallet_jwt_secret": self.jwt_secret,
        }

    def escrow(self, signer_url: str) -> dict[str, Any]:
        meter_keys = {
            self.station_chain_id(cpo.station_id(cp)): meter_for(self.meter_seed, cp).public_key_hex
            for cpo in self.cpos
            for cp in cpo.charge_points
        }
        return {
            **self._core("escrow", self.ports.escrow),
            **self._signer_client("escrow", signer_url),
            "escrow_address": self.contracts["ChargingEscrow"],
            "escrow_settler_keys": json.dumps({c.cpo_id: c.key_alias for c in self.cpos}),
            # A lone open or settlement goes at once; these bound how long what arrives while
            # one is on its way (on automine, well under 0.1 s) waits to join the next batch.
            "escrow_open_window_seconds": 0.1,
            "escrow_settle_delay_seconds": 0.5,
            "escrow_start_timeout_seconds": 20.0,
            "escrow_meter_keys": json.dumps(meter_keys),
        }

    def invoicing(self) -> dict[str, Any]:
        fields = {
            **self._core("invoicing", self.ports.invoicing),
            "invoicing_jwt_secret": self.jwt_secret,
        }
        if self.suppliers_file is not None:
            fields["invoicing_suppliers_file"] = self.suppliers_file
        return fields

    def gateway(self, cpo_index: int, replica: int, credentials: str) -> dict[str, Any]:
        cpo = self.cpos[cpo_index]
        ws_port, ops_port = self.ports.gateway(cpo_index, replica)
        fields = self._core(f"gateway-{cpo.cpo_id}", ops_port)
        fields.pop("database_url")
        return {
            **fields,
            "cpo_id": cpo.cpo_id,
            # The replica id names the replica's consumer groups: prefixed like every group of
            # the stack (see ``_core``).
            "replica_id": f"{self.topic_prefix}r{replica + 1}",
            "ws_host": "127.0.0.1",
            "ws_port": ws_port,
            "security_profile": 1,
            "charge_points_json": credentials,
            "authorize_grace_seconds": 2.0,
        }

    def callers(self) -> str:
        """The signer's callers: each service may use only its own keys and functions."""
        cpo_aliases = [c.key_alias for c in self.cpos]
        return callers_json(
            {
                "wallet": wallet_caller(self.tokens["wallet"]),
                "registry": registry_caller(self.tokens["registry"], cpo_aliases),
                "escrow": escrow_caller(self.tokens["escrow"], cpo_aliases),
            }
        )

    def suppliers(self) -> dict[str, Any]:
        return {
            cpo.cpo_id: {
                "name": f"{cpo.name} GmbH",
                "street": "Energiestraße 1",
                "postcode": "10115",
                "city": cpo.city,
                "country": "DE",
                "vat_id": "DE" + str(int(hashlib.sha256(cpo.cpo_id.encode()).hexdigest(), 16))[:9],
                "email": f"billing@{cpo.name.lower()}.example",
            }
            for cpo in self.cpos
        }


#: Services whose consumer group is a setting (the gateway's follow its ``replica_id``).
GROUP_FIELDS = {
    "registry": "registry_consumer_group",
    "wallet": "wallet_consumer_group",
    "escrow": "escrow_consumer_group",
    "invoicing": "invoicing_consumer_group",
}


def environment(fields: dict[str, Any]) -> dict[str, str]:
    """Settings fields as ``CHARGENET_<FIELD>`` environment variables."""
    env = {}
    for name, value in fields.items():
        text = value if isinstance(value, str) else json.dumps(value)
        env[f"CHARGENET_{name.upper()}"] = text
    return env
