"""Escrow settings (``CHARGENET_ESCROW_*`` plus the core ones)."""

from __future__ import annotations

import functools
import json
import re
from typing import Self

from pydantic import Field, model_validator

from chargenet.core.settings import CoreSettings

_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
_ALIAS = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class EscrowSettings(CoreSettings):
    service_name: str = "escrow"
    http_port: int = Field(default=8003, ge=0, le=65535)

    #: The ChargingEscrow contract (the StationRegistry is read from it). Empty: the service runs
    #: but is not ready, and every request is rejected with that reason.
    escrow_address: str = ""
    #: The name under which the signer knows the ChargingEscrow contract (its contracts config).
    escrow_contract_name: str = "ChargingEscrow"
    #: Signer key that relays the drivers' open authorisations and expiry refunds (pays gas only).
    escrow_relayer_key: str = "relayer"
    #: Signer key that settles and cancels a CPO's sessions: the CPO or one of its operator keys
    #: (the contract allows nobody else). ``{cpo_id}`` is replaced; ``escrow_settler_keys``
    #: (JSON ``{"<cpo id>": "<alias>"}``) overrides it per CPO.
    escrow_settler_key_template: str = "operator.{cpo_id}"
    escrow_settler_keys: str = "{}"

    escrow_consumer_group: str = "escrow"
    #: At most this many consumed events per database transaction: the bus hands over up to 500
    #: at once under load, and a request among them is seen by the worker only at the commit.
    escrow_consumer_batch: int = Field(default=100, ge=1, le=500)
    #: Opens (settlements) arriving within this window go out as one openBatch (settleBatch).
    escrow_open_window_seconds: float = Field(default=0.2, ge=0, le=60)
    escrow_settle_delay_seconds: float = Field(default=0.5, ge=0, le=3600)
    escrow_max_batch: int = Field(default=50, ge=1, le=500)
    #: Threads that hand staged operations to the signer. A send (gas estimate, signature,
    #: broadcast) takes 100-200 ms on an automining node; one sender made opens and settlements
    #: queue behind each other. The signer orders each key's nonces, whatever the callers.
    escrow_senders: int = Field(default=4, ge=1, le=32)
    #: How long the charge point has to start once the escrow is open.
    escrow_start_timeout_seconds: float = Field(default=60.0, gt=0)
    #: The budget stop fires when the cost so far reaches the locked maximum minus this margin
    #: (the larger of the percentage and the absolute amount in token base units).
    escrow_budget_margin_percent: int = Field(default=5, ge=0, le=90)
    escrow_budget_margin_units: int = Field(default=100_000, ge=0)
    #: A charging session without any event from its charge point for this long is settled on
    #: what its last meter value proves (the gateway lost the charge point).
    escrow_session_timeout_seconds: float = Field(default=900.0, gt=0)
    #: Sessions still open this long before their escrow expiry are stopped and settled, or
    #: cancelled, so nothing is locked past the expiry; past it, the relayer refunds.
    escrow_expiry_margin_seconds: float = Field(default=600.0, ge=0)
    escrow_settle_attempts: int = Field(default=3, ge=1, le=20)
    #: Worker poll interval. The worker is woken by every commit that leaves it work, and a
    #: batch held back schedules its own tick, so this only bounds how late something another
    #: process committed is seen; the sweeper runs every ``escrow_sweep_seconds`` (the worker
    #: ticks at least that often). Each tick is a few queries: idle, a short one costs CPU.
    escrow_tick_seconds: float = Field(default=1.0, gt=0, le=5)
    #: What the sweeper acts on is late by a minute at least (a start deadline, a silent charge
    #: point, an expiry near) or rare (an outcome the stream missed while it reconnected): a
    #: few seconds more change nothing, and every sweep is four transactions, idle or not.
    escrow_sweep_seconds: float = Field(default=5.0, gt=0, le=600)
    #: A FAILED session's escrow still open on chain past its expiry is refunded by the sweeper.
    #: While it stays open (the refund did not land), it is read again after this long, doubling
    #: with each refund sent, up to ``escrow_refund_retry_max_seconds``; one the chain closed is
    #: not read again. A sweep reads at most ``escrow_refund_checks_per_sweep``, longest due first.
    escrow_refund_retry_seconds: float = Field(default=60.0, gt=0)
    escrow_refund_retry_max_seconds: float = Field(default=3600.0, gt=0)
    escrow_refund_checks_per_sweep: int = Field(default=50, ge=1, le=1000)

    #: The MSP's OCPI identity on the CDR token (country code, party id).
    escrow_msp_country_code: str = Field(default="DE", pattern=r"^[A-Z]{2}$")
    escrow_msp_party_id: str = Field(default="CNT", pattern=r"^[A-Z0-9]{3}$")
    #: Meter public keys (hex DER) by station id, JSON ``{"0x<station>": "<hex>"}``; a key is only
    #: used when its keccak-256 equals the station's on-chain meter key hash.
    escrow_meter_keys: str = "{}"

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.escrow_address and not _ADDRESS.match(self.escrow_address):
            raise ValueError("escrow_address: a 0x-prefixed 20-byte hex address")
        if not _ALIAS.match(self.escrow_relayer_key):
            raise ValueError("escrow_relayer_key: 1-64 characters of A-Z a-z 0-9 _ . -")
        if "{cpo_id}" not in self.escrow_settler_key_template:
            raise ValueError("escrow_settler_key_template: must contain {cpo_id}")
        for name in ("escrow_settler_keys", "escrow_meter_keys"):
            try:
                value = json.loads(getattr(self, name))
            except json.JSONDecodeError as error:
                raise ValueError(f"{name}: not valid JSON ({error.msg})") from None
            if not isinstance(value, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in value.items()
            ):
                raise ValueError(f"{name}: a JSON object of strings")
        return self

    def settler_key(self, cpo_id: str) -> str:
        overrides: dict[str, str] = json.loads(self.escrow_settler_keys)
        return overrides.get(cpo_id) or self.escrow_settler_key_template.format(cpo_id=cpo_id)

    def meter_keys(self) -> dict[str, str]:
        """Station id (lower case) -> meter key; not to be changed (read at every settlement,
        parsed once)."""
        return _meter_keys(self.escrow_meter_keys)


@functools.lru_cache(maxsize=4)
def _meter_keys(configured: str) -> dict[str, str]:
    keys: dict[str, str] = json.loads(configured)
    return {k.lower(): v for k, v in keys.items()}
