"""The signer's settings. Environment variables: ``CHARGENET_SIGNER_<FIELD>``.

Everything that can unlock a key or impersonate a caller is a ``SecretStr``, so it never shows in
a repr, a log line or a validation error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Self

from pydantic import Field, SecretStr, model_validator

from chargenet.core.settings import DEVELOPMENT_SECRET, CoreSettings, Mode

#: Hardhat's and Foundry's public test mnemonic: funded on every development chain, worthless.
DEVELOPMENT_MNEMONIC = "test test test test test test test test test test test junk"


class SignerSettings(CoreSettings):
    service_name: str = "signer"
    database_url: str = "sqlite:///./signer.db"

    #: host:port the gRPC server listens on.
    signer_listen: str = "127.0.0.1:50051"
    #: TLS: the signer's certificate (chain) and key (PEM). Unset: plaintext, which production
    #: mode refuses (its callers carry bearer tokens and ask for signatures).
    signer_tls_cert_file: Path | None = None
    signer_tls_key_file: Path | None = None
    #: Mutual TLS: the CA (PEM) whose certificates callers must present; unset, any caller with
    #: a valid token is served.
    signer_tls_client_ca_file: Path | None = None

    #: Keys given directly: ``alias=0x<64 hex>`` pairs separated by commas.
    signer_keys: SecretStr = SecretStr("")
    #: A folder of encrypted keystore files (``<alias>.json``), all under one password.
    signer_keystore_dir: Path | None = None
    signer_keystore_password: SecretStr = SecretStr("")
    #: BIP-39 mnemonic for HD keys; alias ``hd/<index>`` derives ``signer_hd_path`` with the index.
    signer_hd_mnemonic: SecretStr = SecretStr(DEVELOPMENT_MNEMONIC)
    signer_hd_path: str = "m/44'/60'/0'/0/{index}"
    #: HD aliases loaded at start (``hd/0`` .. ``hd/<n-1>``); others are derived on first use.
    signer_hd_preload: int = Field(default=0, ge=0, le=10_000)
    #: Other HD keys derived on demand and kept at once, least recently used evicted (and derived
    #: again when asked for): what callers allowed ``hd/*`` make the signer hold stays bounded.
    signer_hd_cache_size: int = Field(default=1024, ge=1, le=100_000)

    #: Callers as JSON: ``{"<service>": {"token": "...", "keys": ["operator", "hd/*"],
    #: "functions": ["ChargeToken.transfer", "*.settle"], "sign_typed_data": true}}``.
    #: Patterns are shell-style; a function is named ``<contract name or address>.<function>``.
    signer_callers: SecretStr = SecretStr(
        '{"dev": {"token": "' + DEVELOPMENT_SECRET + '", "keys": ["*"], "functions": ["*"], '
        '"sign_typed_data": true}}'
    )
    #: Contracts callable by name, as JSON: ``{"<name>": {"address": "0x..", "abi": [...]}}`` or
    #: ``{"<name>": {"address": "0x..", "artifact": "<path to a JSON with an abi key>"}}``.
    signer_contracts: str = "{}"

    #: Blocks on top of (and including) a transaction's block before it is FINAL.
    signer_confirmations: int = Field(default=2, ge=1, le=1000)
    #: Chain id to sign for; 0 asks the node at start.
    signer_chain_id: int = Field(default=0, ge=0)
    #: Tip per gas in wei; 0 asks the node (eth_maxPriorityFeePerGas) at start.
    signer_priority_fee_wei: int = Field(default=0, ge=0)
    #: Refuse to pay more than this per gas (wei), whatever the base fee does.
    signer_max_fee_cap_wei: int = Field(default=500 * 10**9, gt=0)
    #: A pending transaction at the head of its account's queue for this long is re-sent with a
    #: higher fee.
    signer_stuck_after_seconds: float = Field(default=60.0, gt=0)
    #: How much a re-send raises both fees, in percent (nodes require at least 10).
    signer_fee_bump_percent: int = Field(default=25, ge=11, le=1000)
    #: Gas estimate multiplier in percent (state can move between estimate and inclusion).
    signer_gas_margin_percent: int = Field(default=125, ge=100, le=400)
    #: A transaction's call data, at most (bytes). Nodes refuse larger transactions (geth's pool
    #: takes 128 KiB at most, signature and fields included), so a larger one is refused here
    #: before it is stored, signed and sent for nothing.
    signer_max_data_bytes: int = Field(default=120_000, ge=1_000, le=16 * 1024 * 1024)
    #: The tracker's poll interval.
    signer_poll_seconds: float = Field(default=0.2, gt=0)
    #: Requests signed and stored in one database transaction per account, at most.
    signer_batch_size: int = Field(default=64, ge=1, le=1000)
    #: Pending transactions per account; senders wait beyond that.
    signer_max_in_flight: int = Field(default=512, ge=1)
    #: An account's lane (its send queue) with nothing queued or open for this long is dropped,
    #: and started again, its nonce read from the chain, at its next send: with on-demand HD
    #: keys the accounts sent for are unbounded, the lanes held at once must not be.
    signer_lane_idle_seconds: float = Field(default=60.0, ge=0)
    #: In development, on the in-process chain: fund every loaded key from the chain's accounts.
    signer_fund_dev_keys: bool = True

    @model_validator(mode="after")
    def _production_refuses_development_keys(self) -> Self:
        if self.mode is Mode.PRODUCTION and (
            self.signer_hd_mnemonic.get_secret_value() == DEVELOPMENT_MNEMONIC
        ):
            raise ValueError(
                "signer_hd_mnemonic: the public development mnemonic is refused in production"
            )
        if (self.signer_tls_cert_file is None) != (self.signer_tls_key_file is None):
            raise ValueError("signer_tls_cert_file and signer_tls_key_file go together")
        if self.signer_tls_client_ca_file is not None and self.signer_tls_cert_file is None:
            raise ValueError("signer_tls_client_ca_file: mutual TLS needs signer_tls_cert_file")
        if self.mode is Mode.PRODUCTION and DEVELOPMENT_SECRET in (
            self.signer_callers.get_secret_value()
        ):
            raise ValueError("signer_callers: the development token is refused in production")
        if self.mode is Mode.PRODUCTION and self.signer_tls_cert_file is None:
            raise ValueError(
                "signer_tls_cert_file: production mode serves the signer over TLS only; give "
                "its certificate and key (CHARGENET_SIGNER_TLS_CERT_FILE, _KEY_FILE)"
            )
        return self
