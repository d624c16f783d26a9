"""Wallet settings (``CHARGENET_WALLET_*`` plus the core ones)."""

from __future__ import annotations

import json
import re
from enum import StrEnum
from typing import Self

from pydantic import Field, SecretStr, model_validator

from chargenet.core.countries import is_country
from chargenet.core.settings import DEVELOPMENT_SECRET, CoreSettings

_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")


class Issuer(StrEnum):
    #: The wallet issues HS256 tokens itself (password flow); invoicing and the registry verify
    #: them with the same shared secret.
    DEVELOPMENT = "development"
    #: An identity provider issues RS256/ES256 tokens; the wallet only verifies them.
    EXTERNAL = "external"


class WalletSettings(CoreSettings):
    service_name: str = "wallet"
    http_port: int = Field(default=8001, ge=0, le=65535)

    # -- authentication --------------------------------------------------------------------------
    wallet_auth_issuer: Issuer = Issuer.DEVELOPMENT
    #: HS256 secret of the tokens the development issuer signs (shared with invoicing, registry).
    wallet_jwt_secret: SecretStr = SecretStr(DEVELOPMENT_SECRET)
    wallet_token_ttl_seconds: int = Field(default=3600, ge=60, le=7 * 24 * 3600)
    #: External issuer: a JWKS URL or a PEM public key (one of them), the algorithms accepted,
    #: and the ``iss``/``aud`` values required (empty: not checked).
    wallet_jwt_jwks_url: str = ""
    wallet_jwt_public_key: SecretStr = SecretStr("")
    wallet_jwt_algorithms: list[str] = ["RS256", "ES256"]
    wallet_jwt_issuer: str = ""
    wallet_jwt_audience: str = ""

    # -- chain and signer ------------------------------------------------------------------------
    wallet_token_address: str = ""
    wallet_escrow_address: str = ""
    #: The names the signer registered the contracts under (its ``signer_contracts``).
    wallet_signer_token_contract: str = "ChargeToken"  # noqa: S105 - a contract name
    wallet_signer_escrow_contract: str = "ChargingEscrow"
    #: Signer aliases: the MSP's minter, the relayer that pays gas for permits, and the driver
    #: keys ``<prefix><offset + account number>`` (HD keys: ``hd/<index>``).
    wallet_minter_key: str = "minter"
    wallet_relayer_key: str = "relayer"
    wallet_driver_key_prefix: str = "hd/"
    #: Development mnemonics fund their first indices on every test chain and deployers use them;
    #: drivers start far above.
    wallet_driver_key_offset: int = Field(default=1000, ge=0, le=2**31 - 1)
    #: Ether the relayer gives a driver's address before a payout withdraw (the only call the
    #: driver's own key must send) when it holds less than half of it: 0.01 ETH pays the
    #: 100,000-gas withdraw at up to 100 gwei.
    wallet_payout_gas_wei: int = Field(default=10**16, ge=0)
    #: First block of the history (the deployment's block).
    #: The currency the token is credit in (top-ups and payouts are in it).
    wallet_currency: str = Field(default="EUR", pattern=r"^[A-Z]{3}$")
    wallet_start_block: int = Field(default=0, ge=0)
    wallet_balance_cache_seconds: float = Field(default=5.0, ge=0)
    wallet_chain_wait_seconds: float = Field(default=120.0, gt=0)

    # -- sessions --------------------------------------------------------------------------------
    wallet_registry_url: str = "http://127.0.0.1:8002"
    wallet_registry_timeout_seconds: float = Field(default=5.0, gt=0)
    #: How long a session's escrow stays locked before the driver may take it back on chain.
    wallet_session_expiry_seconds: int = Field(default=4 * 3600, ge=300, le=30 * 24 * 3600)
    #: JSON ``{"<CPO address>": "<CPO id>"}``: the gateway's CPO id of a station's CPO, used when
    #: the registry does not report it with the charge point (fallback: the address).
    wallet_cpo_ids: str = "{}"
    wallet_consumer_group: str = "wallet"
    #: How often one poller reads the versions of the sessions being streamed, for changes
    #: another replica applied (this process's own changes wake their streams at once).
    wallet_stream_poll_seconds: float = Field(default=0.25, gt=0)
    wallet_stream_keepalive_seconds: float = Field(default=15.0, gt=0)
    #: Sessions a driver may have open at once: the escrow's ring has 8 slots per driver.
    wallet_max_open_sessions: int = Field(default=8, ge=1, le=8)

    # -- invoices --------------------------------------------------------------------------------
    #: The buyer's country (ISO 3166-1 alpha-2) on the invoices of a driver who gave no billing
    #: details: EN 16931 wants a buyer country on every invoice (BR-10/BR-11), and a driver's
    #: place of supply is most often the MSP's own country, so that is the default.
    wallet_default_billing_country: str = "DE"

    @model_validator(mode="after")
    def _check(self) -> Self:
        if not is_country(self.wallet_default_billing_country):
            raise ValueError(
                f"wallet_default_billing_country: {self.wallet_default_billing_country!r} is not "
                "an ISO 3166-1 alpha-2 country code (e.g. DE)"
            )
        for name in ("wallet_token_address", "wallet_escrow_address"):
            value = getattr(self, name)
            if value and not _ADDRESS.match(value):
                raise ValueError(f"{name}: {value!r} is not a 0x-prefixed 20-byte address")
        try:
            cpo_ids = json.loads(self.wallet_cpo_ids)
        except json.JSONDecodeError as error:
            raise ValueError(f"wallet_cpo_ids: not JSON ({error})") from None
        if not isinstance(cpo_ids, dict) or not all(
            isinstance(k, str) and _ADDRESS.match(k) and isinstance(v, str) and v
            for k, v in cpo_ids.items()
        ):
            raise ValueError('wallet_cpo_ids: expected {"<CPO address>": "<CPO id>"}')
        if self.wallet_auth_issuer is Issuer.EXTERNAL:
            has_jwks = bool(self.wallet_jwt_jwks_url)
            has_key = bool(self.wallet_jwt_public_key.get_secret_value())
            if has_jwks == has_key:
                raise ValueError(
                    "wallet_jwt_jwks_url: the external issuer needs exactly one of "
                    "wallet_jwt_jwks_url and wallet_jwt_public_key"
                )
            allowed = {"RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "EdDSA"}
            bad = [a for a in self.wallet_jwt_algorithms if a not in allowed]
            if bad or not self.wallet_jwt_algorithms:
                raise ValueError(
                    f"wallet_jwt_algorithms: asymmetric algorithms only ({sorted(allowed)})"
                )
        return self

    def cpo_ids(self) -> dict[str, str]:
        return {k.lower(): v for k, v in json.loads(self.wallet_cpo_ids).items()}

    def require_contracts(self) -> None:
        """Raise ValueError naming the missing setting (start-up checks call it)."""
        for name in ("wallet_token_address", "wallet_escrow_address"):
            if not getattr(self, name):
                raise ValueError(
                    f"CHARGENET_{name.upper()}: required (the deployed contract's address)"
                )
