"""CPU per invoice of the invoicing consumer, on PostgreSQL: settlements that come one at a time
and in batches (the bus hands a consumer what it fetched together, as after a burst of stops).

    eval "$(scripts/components/components.sh env)"
    uv run python bench/invoicing.py            # CHARGENET_TEST_POSTGRES_URL names the server

Creates a scratch database, records each session's buyer (its request event), issues the
invoices through ``SessionsConsumer.batch``, and prints this process's CPU milliseconds per
invoice (the server's share is not counted).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from scratch import scratch_database

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from chargenet.core.events import BillingDetails
from chargenet.invoicing.consumer import SessionsConsumer
from chargenet.invoicing.main import migrate

# The tests' settlement (a priced OCPI CDR and its tariff), request and suppliers: defined once.
from tests.invoicing.conftest import SUPPLIERS, envelope_of, settled_event
from tests.invoicing.test_buyers import requested

INVOICES = 600
BATCHES = (1, 20)
BUYER = BillingDetails(
    name="A Driver", street="Street 1", postcode="10115", city="Berlin", country="DE"
)


def main() -> int:
    with scratch_database("bench_invoicing") as db:
        migrate(db)
        consumer = SessionsConsumer(db, SUPPLIERS, "https://meter.example/{session_id}")
        for batch in BATCHES:
            ids = [f"b{batch}-{n}" for n in range(INVOICES)]
            consumer.batch([requested(i, billing=BUYER) for i in ids])
            events = [
                envelope_of(settled_event(i, cpo_id=("CPO1", "CPO2")[n % 2]))
                for n, i in enumerate(ids)
            ]
            spent = 0.0
            for start in range(0, INVOICES, batch):
                chunk = events[start : start + batch]
                began = time.process_time()
                consumer.batch(chunk)
                spent += time.process_time() - began
            print(
                f"settlements {batch:>2} at a time: {spent / INVOICES * 1000:.2f} CPU ms an invoice"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
