"""A real settled session (priced by the engine, CDR built from meter samples) and databases."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from chargenet.core.db import Database
from chargenet.core.envelope import Envelope, make_envelope
from chargenet.core.pricing import (
    AuthMethod,
    CdrLocation,
    CdrToken,
    MeterSample,
    Tariff,
    TokenType,
    build_cdr,
    cdr_hash,
    price_samples,
)
from chargenet.core.pricing.cap import capped, settleable_maximum
from chargenet.core.pricing.cdr import GeoLocation
from chargenet.escrow.settlement import CAP_REMARK
from chargenet.invoicing.document import Party
from chargenet.invoicing.events import SessionSettled
from chargenet.invoicing.main import migrate

START = datetime(2024, 6, 3, 16, 40, tzinfo=UTC)

TARIFF = {
    "country_code": "DE",
    "party_id": "CHN",
    "id": "ac-22",
    "currency": "EUR",
    "elements": [
        {
            "price_components": [
                {"type": "FLAT", "price": "0.50", "vat": "19", "step_size": 1},
                {"type": "ENERGY", "price": "0.39", "vat": "19", "step_size": 1},
                {"type": "PARKING_TIME", "price": "6.00", "vat": "19", "step_size": 300},
            ],
            "restrictions": {"end_time": "17:00"},
        },
        {
            "price_components": [
                {"type": "FLAT", "price": "0.50", "vat": "19", "step_size": 1},
                {"type": "ENERGY", "price": "0.49", "vat": "19", "step_size": 1},
                {"type": "TIME", "price": "1.20", "vat": "19", "step_size": 60},
                {"type": "PARKING_TIME", "price": "6.00", "vat": "19", "step_size": 300},
            ]
        },
    ],
    "last_updated": "2024-01-01T00:00:00Z",
}

SettledFactory = Callable[..., SessionSettled]


def supplier(name: str, vat_id: str) -> Party:
    return Party(
        name=name,
        street="Invalidenstr. 117",
        postcode="10115",
        city="Berlin",
        country="DE",
        vat_id=vat_id,
    )


#: The CPOs the tests settle for, each a VAT-registered supplier with its address.
SUPPLIERS = {
    cpo: supplier(f"{cpo} Ladestrom GmbH", f"DE{123456780 + n}")
    for n, cpo in enumerate(("CPO1", "CPO2", "CPO-A", "CPO-B"))
}


def settled_event(
    session_id: str = "s-1",
    *,
    cpo_id: str = "CPO1",
    driver_id: str = "driver-1",
    tariff: dict[str, Any] | None = None,
    kwh: str = "18.5",
    park_minutes: int = 12,
    amount_delta: int = 0,
    locked: int | None = None,
) -> SessionSettled:
    """Charge ``kwh`` from 16:40 over 50 minutes (crossing 17:00), then park. A price above
    ``locked`` (when given; else 50_000_000 are locked and nothing is capped) is capped the
    escrow's way, with its own functions: what a late budget stop settles."""
    model = Tariff.model_validate(tariff or TARIFF)
    samples = [
        MeterSample(timestamp=START, energy_wh=Decimal(0)),
        MeterSample(timestamp=START + timedelta(minutes=50), energy_wh=Decimal(kwh) * 1000),
    ]
    end = START + timedelta(minutes=50 + park_minutes)
    result = price_samples(model, samples, end=end)
    price, remark = result.total_incl_vat_units, None
    if locked is not None and price > settleable_maximum(locked, model.currency):
        result = capped(result, settleable_maximum(locked, model.currency), limit="max_price")
        remark = CAP_REMARK.format(price=price, currency=model.currency, amount=locked)
    cdr = build_cdr(
        # the escrow names a CDR by its session id (OCPI allows 36 characters)
        cdr_id=f"cdr-{session_id}" if len(session_id) <= 32 else session_id,
        country_code="DE",
        party_id="CHN",
        session_id=session_id,
        token=CdrToken(
            country_code="DE",
            party_id="CHN",
            uid=driver_id,
            type=TokenType.APP_USER,
            contract_id=f"DE-CHN-{driver_id}"[:36],  # OCPI caps it at 36
        ),
        auth_method=AuthMethod.COMMAND,
        location=CdrLocation(
            id="LOC1",
            name="Alexanderplatz",
            address="Alexanderplatz 1",
            city="Berlin",
            postal_code="10178",
            country="DEU",
            coordinates=GeoLocation(latitude="52.521918", longitude="13.413215"),
            evse_uid="E1",
            evse_id="DE*CHN*E0001*1",
            connector_id="1",
            connector_standard="IEC_62196_T2",
            connector_format="SOCKET",
            connector_power_type="AC_3_PHASE",
        ),
        tariff=model,
        result=result,
        last_updated=end,
        remark=remark,
    )
    return SessionSettled(
        session_id=session_id,
        cpo_id=cpo_id,
        driver_id=driver_id,
        station_id="station-7",
        evse_id="DE*CHN*E0001*1",
        amount_locked=50_000_000 if locked is None else locked,
        amount_settled=result.total_incl_vat_units + amount_delta,
        price_before_cap=price if price != result.total_incl_vat_units else None,
        cdr=json.loads(cdr.model_dump_json()),
        cdr_hash="0x" + cdr_hash(cdr).hex(),
        tariff=json.loads(model.model_dump_json()),
        settlement_tx_hash="0x" + "ab" * 32,
        meter_verified=True,
        signed_meter_data=['OCMF|{"FV":"1.0","PG":"T1","RD":[]}|{"SD":"00"}'],
    )


def envelope_of(settled: SessionSettled, event_id: str | None = None) -> Envelope:
    return make_envelope(
        settled, subject=settled.session_id, source="chargenet/escrow", event_id=event_id
    )


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Iterator[Database]:
    db = Database(f"sqlite:///{tmp_path}/invoicing.db")
    migrate(db)
    yield db
    db.dispose()


@pytest.fixture
def postgres_db(postgres_database: str) -> Iterator[Database]:
    db = Database(postgres_database, pool_size=10)
    migrate(db)
    yield db
    db.dispose()


@pytest.fixture
def make_settled() -> SettledFactory:
    return settled_event


@pytest.fixture
def wrap() -> Callable[..., Envelope]:
    return envelope_of
