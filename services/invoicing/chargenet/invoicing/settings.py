"""Invoicing settings (``CHARGENET_INVOICING_*`` plus the core ones)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, field_validator

from chargenet.core.countries import is_country
from chargenet.core.settings import DEVELOPMENT_SECRET, CoreSettings


class InvoicingSettings(CoreSettings):
    service_name: str = "invoicing"
    http_port: int = Field(default=8005, ge=0, le=65535)
    #: HS256 secret of the bearer tokens the wallet service issues (claims ``sub``, ``role``).
    invoicing_jwt_secret: SecretStr = SecretStr(DEVELOPMENT_SECRET)
    #: JSON file: ``{cpo_id: {name, street, postcode, city, country, vat_id, vat_registered,
    #: email}}``, the supplier block of each CPO's invoices, checked at start-up (see
    #: :mod:`chargenet.invoicing.suppliers`). A settlement of a CPO missing there is refused.
    invoicing_suppliers_file: Path | None = None
    #: The buyer's country when a session's request (and with it the driver's billing details)
    #: was never recorded: the wallet's default billing country, the MSP's own.
    invoicing_default_buyer_country: str = "DE"
    invoicing_consumer_group: str = "invoicing"
    #: Where a verifier can fetch a session's signed meter data (``{session_id}`` is replaced).
    invoicing_meter_data_url: str = "https://chargenet.example/sessions/{session_id}/meter-data"

    @field_validator("invoicing_default_buyer_country")
    @classmethod
    def _country(cls, code: str) -> str:
        if not is_country(code):
            raise ValueError(f"{code!r} is not an ISO 3166-1 alpha-2 country code (e.g. DE)")
        return code
