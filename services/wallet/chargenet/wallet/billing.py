"""A driver's billing details: whom the invoices of their sessions are made out to.

EN 16931 wants the buyer's postal address with at least its country on every invoice (BR-10,
BR-11). The driver may give a name and an address; only the country is required. A driver who
gave nothing is billed in the wallet's default billing country
(``CHARGENET_WALLET_DEFAULT_BILLING_COUNTRY``, the MSP's own country by default), so every
invoice still names a country. Invoicing learns them from ``SessionRequested.billing``: the
details as they were when the session was requested, so a later change does not rewrite the
buyer of an earlier session.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.exc import IntegrityError

from chargenet.core.countries import is_country
from chargenet.core.db import Database
from chargenet.core.db.tables import utcnow
from chargenet.core.errors import Unprocessable
from chargenet.core.events import BillingDetails as BillingEvent
from chargenet.wallet.models import BillingDetails

#: Column widths; the API refuses longer values with the field's name.
LIMITS = {"name": 200, "street": 200, "postcode": 20, "city": 100}


class BillingBody(BaseModel):
    """``PUT /v1/me/billing``: country required, the rest optional (empty means not given)."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, max_length=1000)
    street: str | None = Field(default=None, max_length=1000)
    postcode: str | None = Field(default=None, max_length=1000)
    city: str | None = Field(default=None, max_length=1000)
    country: str = Field(max_length=1000)

    def checked(self) -> dict[str, str | None]:
        """The fields trimmed, empty ones as None, each within its limit; a reason otherwise."""
        values: dict[str, str | None] = {}
        for field, limit in LIMITS.items():
            text = (getattr(self, field) or "").strip()
            if any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
                raise Unprocessable(
                    f"{field}: control characters (such as line breaks) are not allowed"
                )
            if len(text) > limit:
                raise Unprocessable(f"{field}: at most {limit} characters")
            values[field] = text or None
        country = self.country.strip().upper()
        if not country:
            raise Unprocessable("country: required (an ISO 3166-1 alpha-2 code, e.g. DE)")
        if not is_country(country):
            raise Unprocessable(
                f"country: {self.country.strip()!r} is not an ISO 3166-1 alpha-2 country code "
                "(two letters, e.g. DE, FR, NL)"
            )
        values["country"] = country
        return values


class Billing:
    def __init__(self, db: Database, default_country: str) -> None:
        self.db = db
        self.default_country = default_country

    def get(self, driver_id: str) -> dict[str, Any]:
        with self.db.session() as session:
            row = session.get(BillingDetails, driver_id)
            return self._view(row)

    def set(self, driver_id: str, body: BillingBody) -> dict[str, Any]:
        values = body.checked()
        try:
            return self._store(driver_id, values)
        except IntegrityError:
            # A concurrent first save of the same driver inserted the row: update it instead.
            return self._store(driver_id, values)

    def _store(self, driver_id: str, values: dict[str, str | None]) -> dict[str, Any]:
        with self.db.session() as session:
            row = session.get(BillingDetails, driver_id, with_for_update=self.db.is_postgres)
            if row is None:
                row = BillingDetails(driver_id=driver_id)
                session.add(row)
            for field, value in values.items():
                setattr(row, field, value)
            row.updated_at = utcnow()
            session.flush()
            return self._view(row)

    def event_of(self, row: BillingDetails | None) -> BillingEvent:
        """The details a session request carries, from the driver's row (None: not given); the
        request reads the row in its own transaction."""
        if row is None:
            return BillingEvent(country=self.default_country)
        return BillingEvent(
            name=row.name,
            street=row.street,
            postcode=row.postcode,
            city=row.city,
            country=row.country,
        )

    def _view(self, row: BillingDetails | None) -> dict[str, Any]:
        if row is None:
            return {
                "name": None,
                "street": None,
                "postcode": None,
                "city": None,
                "country": self.default_country,
                "default": True,
            }
        return {
            "name": row.name,
            "street": row.street,
            "postcode": row.postcode,
            "city": row.city,
            "country": row.country,
            "default": False,
        }
