"""Registry settings (``CHARGENET_REGISTRY_*`` plus the core ones)."""

from __future__ import annotations

import json
import re
from typing import Self

from pydantic import Field, SecretStr, model_validator

from chargenet.core.settings import DEVELOPMENT_SECRET, CoreSettings

_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")


class RegistrySettings(CoreSettings):
    service_name: str = "registry"
    http_port: int = Field(default=8002, ge=0, le=65535)

    #: The StationRegistry contract the index follows (required).
    registry_address: str = ""
    #: The ChargingEscrow contract, for on-chain occupancy (empty: not followed).
    registry_escrow_address: str = ""
    #: First block to index (the block the contracts were deployed in; earlier ones hold nothing).
    registry_start_block: int = Field(default=0, ge=0)
    #: Blocks on top of a block before it is indexed; deeper reorgs are still undone, but rarer.
    registry_confirmations: int = Field(default=2, ge=0, le=10_000)
    #: Blocks fetched with one eth_getLogs, at most. A catch-up whose writes fall behind its
    #: reads applies the ranges that wait in one database transaction (about 5,000 logs).
    registry_batch_blocks: int = Field(default=2_000, ge=1, le=100_000)
    registry_poll_seconds: float = Field(default=1.0, gt=0)

    #: HS256 secret of the bearer tokens the wallet service issues (claims ``sub``, ``role``).
    registry_jwt_secret: SecretStr = SecretStr(DEVELOPMENT_SECRET)
    registry_consumer_group: str = "registry"
    #: The name the signer knows the StationRegistry by (its ``signer_contracts``).
    registry_signer_contract: str = "StationRegistry"
    #: JSON ``{"<cpo id>": "<signer key alias>"}``: the key a CPO's changes are sent from. A CPO
    #: (the token's ``sub``) missing here cannot change stations through this service.
    registry_cpo_keys: str = "{}"

    @model_validator(mode="after")
    def _check(self) -> Self:
        for name in ("registry_address", "registry_escrow_address"):
            value = getattr(self, name)
            if value and not _ADDRESS.match(value):
                raise ValueError(
                    f"CHARGENET_{name.upper()}: {value!r} is not a 0x-prefixed 20-byte address"
                )
        try:
            keys = json.loads(self.registry_cpo_keys)
        except json.JSONDecodeError as error:
            raise ValueError(f"CHARGENET_REGISTRY_CPO_KEYS: not JSON ({error})") from None
        if not isinstance(keys, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and v for k, v in keys.items()
        ):
            raise ValueError(
                'CHARGENET_REGISTRY_CPO_KEYS: expected {"<cpo id>": "<signer key alias>"}'
            )
        return self

    def cpo_keys(self) -> dict[str, str]:
        keys: dict[str, str] = json.loads(self.registry_cpo_keys)
        return keys
