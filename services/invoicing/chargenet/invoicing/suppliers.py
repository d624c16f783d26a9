"""The CPOs' supplier details (``CHARGENET_INVOICING_SUPPLIERS_FILE``), checked at start-up.

An EN 16931 invoice names the seller with a postal address and its country (BR-08, BR-09) and,
when it charges VAT, the seller's VAT identifier (BR-S-02 and the other categories' rules). So
each supplier needs a name, a street, a city and a country, and a VAT id of the form a VAT
registration has (two-letter prefix, 2-13 letters or digits) unless it is explicitly marked
``"vat_registered": false``; such a supplier may only invoice tariffs without VAT
(:func:`chargenet.invoicing.document.build_document` refuses the others). A file that breaks
this stops the service at start-up with every problem named by supplier, instead of issuing
invoices that are not compliant.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from chargenet.core.countries import is_country
from chargenet.core.settings import fail
from chargenet.invoicing.document import Party

VAT_ID = re.compile(r"^[A-Z]{2}[0-9A-Z]{2,13}$")
VARIABLE = "CHARGENET_INVOICING_SUPPLIERS_FILE"


class Supplier(BaseModel):
    """One CPO's entry in the suppliers file."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    street: str = Field(min_length=1, max_length=200)
    postcode: str | None = Field(default=None, max_length=20)
    city: str = Field(min_length=1, max_length=100)
    country: str
    vat_id: str | None = None
    #: False only for a seller without a VAT registration (e.g. a small business exemption).
    vat_registered: bool = True
    email: str | None = None

    @model_validator(mode="after")
    def _check(self) -> Self:
        if not is_country(self.country):
            raise ValueError(
                f"country: {self.country!r} is not an ISO 3166-1 alpha-2 code (e.g. DE)"
            )
        if self.vat_registered:
            if not self.vat_id:
                raise ValueError(
                    "vat_id: required for an invoice with VAT (EN 16931 BR-S-02); set "
                    '"vat_registered": false for a seller without a VAT registration'
                )
            if not VAT_ID.match(self.vat_id):
                raise ValueError(
                    f"vat_id: {self.vat_id!r} is not a VAT identifier (a two-letter country "
                    "prefix and 2-13 capital letters or digits, e.g. DE123456789)"
                )
        elif self.vat_id:
            raise ValueError('vat_id: given, but "vat_registered" is false')
        return self

    def party(self) -> Party:
        return Party(
            name=self.name,
            street=self.street,
            postcode=self.postcode,
            city=self.city,
            country=self.country,
            vat_id=self.vat_id,
            email=self.email,
        )


def parse_suppliers(data: object) -> dict[str, Party]:
    """The suppliers by CPO id; ValueError naming every supplier that is not valid and why."""
    if not isinstance(data, dict):
        raise ValueError('expected {"<cpo_id>": {"name": ..., "country": ..., ...}}')
    suppliers: dict[str, Party] = {}
    problems: list[str] = []
    for cpo_id, entry in data.items():
        try:
            suppliers[cpo_id] = Supplier.model_validate(entry).party()
        except ValidationError as error:
            for item in error.errors():
                where = ".".join(str(part) for part in item["loc"])
                message = str(item["msg"]).removeprefix("Value error, ")
                problems.append(f"supplier {cpo_id!r}: {where + ': ' if where else ''}{message}")
    if problems:
        raise ValueError("; ".join(problems))
    return suppliers


def load_suppliers(path: Path | None) -> dict[str, Party]:
    """The suppliers file, validated; a configuration error names the supplier and the problem.

    Without a file there are no suppliers, and every settlement is refused (and recorded) until
    one names its CPO.
    """
    if path is None:
        return {}
    try:
        data = json.loads(path.read_bytes())
    except OSError as error:
        raise fail(f"{VARIABLE}: cannot read {path}: {error.strerror}") from None
    except ValueError as error:
        raise fail(f"{VARIABLE}: {path} is not JSON: {error}") from None
    try:
        return parse_suppliers(data)
    except ValueError as error:
        raise fail(f"{VARIABLE}: {path}: {error}") from None
