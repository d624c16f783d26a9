"""Where fiat comes from and goes to: the payment-provider interface and the test provider.

A real provider (a card acquirer, SEPA) captures a payment the driver authorised in the app and
pays out to the driver's account; the wallet only ever sees references and amounts. Both calls
must be idempotent by reference, as the wallet retries them after a crash.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Protocol


class PaymentError(Exception):
    """The provider refused; the message is safe to show the driver."""


@dataclass(frozen=True)
class Capture:
    reference: str
    amount: int  # token base units (the currency's value at 6 decimals)
    currency: str


class PaymentProvider(Protocol):
    def capture(self, reference: str, amount: int, currency: str) -> Capture:
        """Take the money of an authorised payment; the same reference captures once."""
        ...

    def pay_out(self, reference: str, driver_id: str, amount: int, currency: str) -> None:
        """Send ``amount`` to the driver's bank account; the same reference pays once."""
        ...


class TestPaymentProvider:
    """In-process provider: every reference is authorised for the amount first asked.

    It enforces what a real provider does: a reference is captured once, for one amount; a
    second capture of it returns the first one, and a different amount is refused.
    """

    __test__ = False  # not a pytest class, despite the name

    def __init__(self) -> None:
        self._captures: dict[str, Capture] = {}
        self._payouts: dict[str, tuple[str, int]] = {}
        self._lock = threading.Lock()

    def capture(self, reference: str, amount: int, currency: str) -> Capture:
        with self._lock:
            existing = self._captures.get(reference)
            if existing is None:
                existing = Capture(reference, amount, currency)
                self._captures[reference] = existing
        if existing.amount != amount or existing.currency != currency:
            raise PaymentError(
                f"payment {reference} was captured for {existing.amount} {existing.currency}"
            )
        return existing

    def pay_out(self, reference: str, driver_id: str, amount: int, currency: str) -> None:
        with self._lock:
            existing = self._payouts.setdefault(reference, (driver_id, amount))
        if existing != (driver_id, amount):
            raise PaymentError(f"payout {reference} was made for another amount or driver")

    @property
    def captured(self) -> dict[str, Capture]:
        with self._lock:
            return dict(self._captures)

    @property
    def paid_out(self) -> dict[str, tuple[str, int]]:
        with self._lock:
            return dict(self._payouts)
