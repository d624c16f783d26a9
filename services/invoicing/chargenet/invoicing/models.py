"""Invoicing's own tables: the number series per CPO, the invoices, refused settlements, and
the buyer of each requested session."""

from __future__ import annotations

from datetime import date, datetime

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from chargenet.core.db.tables import utcnow

ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")


class InvoicingBase(DeclarativeBase):
    pass


class InvoiceCounter(InvoicingBase):
    """The last number issued to a CPO; locked (``FOR UPDATE``) for each new invoice."""

    __tablename__ = "invoicing_counters"

    cpo_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    last_number: Mapped[int] = mapped_column(sa.BigInteger, nullable=False)


class Invoice(InvoicingBase):
    __tablename__ = "invoicing_invoices"
    __table_args__ = (sa.UniqueConstraint("cpo_id", "sequence", name="uq_invoice_cpo_sequence"),)

    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    number: Mapped[str] = mapped_column(sa.String(100), unique=True)
    cpo_id: Mapped[str] = mapped_column(sa.String(64), index=True)
    sequence: Mapped[int] = mapped_column(sa.BigInteger)
    driver_id: Mapped[str] = mapped_column(sa.String(64), index=True)
    session_id: Mapped[str] = mapped_column(sa.String(64), unique=True)
    issue_date: Mapped[date] = mapped_column(sa.Date)
    currency: Mapped[str] = mapped_column(sa.String(3))
    total_excl_vat: Mapped[int] = mapped_column(sa.BigInteger)  # token base units
    total_vat: Mapped[int] = mapped_column(sa.BigInteger)
    total_incl_vat: Mapped[int] = mapped_column(sa.BigInteger)
    document: Mapped[str] = mapped_column(sa.Text)  # the InvoiceDocument JSON, immutable
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), default=utcnow)


class RefusedSettlement(InvoicingBase):
    """A settled event no invoice could be issued for, with the reason, for an operator. Tried
    again when the service starts with a supplier for its CPO (``SessionsConsumer.reissue``)."""

    __tablename__ = "invoicing_refused"

    session_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    cpo_id: Mapped[str] = mapped_column(sa.String(64))
    reason: Mapped[str] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), default=utcnow)
    #: The ``SessionSettled`` payload (JSON), to issue from once the cause is fixed
    #: (``invoicing_0003``; None for a refusal recorded before).
    settled: Mapped[str | None] = mapped_column(sa.Text, nullable=True)


class Buyer(InvoicingBase):
    """A session's buyer as the wallet sent it with ``SessionRequested`` (``invoicing_0002``):
    the customer of the session's invoice once it settles."""

    __tablename__ = "invoicing_buyers"

    session_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    driver_id: Mapped[str] = mapped_column(sa.String(200))
    name: Mapped[str | None] = mapped_column(sa.String(200), nullable=True)
    street: Mapped[str | None] = mapped_column(sa.String(200), nullable=True)
    postcode: Mapped[str | None] = mapped_column(sa.String(20), nullable=True)
    city: Mapped[str | None] = mapped_column(sa.String(100), nullable=True)
    country: Mapped[str] = mapped_column(sa.String(2))
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), default=utcnow)
