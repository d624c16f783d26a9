"""Invoicing settings (``CHARGENET_INVOICING_*`` plus the core ones)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr

from chargenet.core.settings import DEVELOPMENT_SECRET, CoreSettings


class InvoicingSettings(CoreSettings):
    service_name: str = "invoicing"
    http_port: int = Field(default=8005, ge=0, le=65535)
    #: HS256 secret of the bearer tokens the wallet service issues (claims ``sub``, ``role``).
    invoicing_jwt_secret: SecretStr = SecretStr(DEVELOPMENT_SECRET)
    #: JSON file: ``{cpo_id: {name, street, postcode, city, country, vat_id, email}}``, the
    #: supplier block of each CPO's invoices. A CPO missing there is invoiced under its id.
    invoicing_suppliers_file: Path | None = None
    invoicing_consumer_group: str = "invoicing"
    #: Where a verifier can fetch a session's signed meter data (``{session_id}`` is replaced).
    invoicing_meter_data_url: str = "https://chargenet.example/sessions/{session_id}/meter-data"
