"""The invoice as UN/CEFACT Cross Industry Invoice XML, Factur-X / ZUGFeRD profile EN 16931.

Element order follows the CII D16B schema (a sequence: the XSD check rejects any other order).
Amounts are written with the currency's decimals (``14.13``; EN 16931 allows at most two), and
they are exactly the settled amounts: the engine rounded them once, to the minor unit, before
anything was paid on chain, so nothing is rounded here.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import date
from decimal import Decimal

from chargenet.core.pricing.money import plain
from chargenet.invoicing.document import InvoiceDocument, Party, money

RSM = "urn:un:unece:uncefact:data:standard:CrossIndustryInvoice:100"
RAM = "urn:un:unece:uncefact:data:standard:ReusableAggregateBusinessInformationEntity:100"
UDT = "urn:un:unece:uncefact:data:standard:UnqualifiedDataType:100"
QDT = "urn:un:unece:uncefact:data:standard:QualifiedDataType:100"
NSMAP = {"rsm": RSM, "ram": RAM, "udt": UDT, "qdt": QDT}
EN16931 = "urn:cen.eu:en16931:2017"
for _prefix, _uri in NSMAP.items():
    ET.register_namespace(_prefix, _uri)
COMMERCIAL_INVOICE = "380"


def _el(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    prefix, name = tag.split(":")
    element = ET.SubElement(parent, f"{{{NSMAP[prefix]}}}{name}", attrs)
    if text is not None:
        element.text = text
    return element


def _amount(units: int, currency: str) -> str:
    return str(money(units, currency))


def _date(parent: ET.Element, tag: str, day: date) -> None:
    _el(_el(parent, tag), "udt:DateTimeString", day.strftime("%Y%m%d"), format="102")


def cii_xml(doc: InvoiceDocument) -> bytes:
    root = ET.Element(f"{{{RSM}}}CrossIndustryInvoice")
    context = _el(root, "rsm:ExchangedDocumentContext")
    _el(_el(context, "ram:GuidelineSpecifiedDocumentContextParameter"), "ram:ID", EN16931)
    header = _el(root, "rsm:ExchangedDocument")
    _el(header, "ram:ID", doc.number)
    _el(header, "ram:TypeCode", COMMERCIAL_INVOICE)
    _date(header, "ram:IssueDateTime", doc.issue_date)
    for note in _notes(doc):
        _el(_el(header, "ram:IncludedNote"), "ram:Content", note)
    transaction = _el(root, "rsm:SupplyChainTradeTransaction")
    for line in doc.lines:
        item = _el(transaction, "ram:IncludedSupplyChainTradeLineItem")
        _el(_el(item, "ram:AssociatedDocumentLineDocument"), "ram:LineID", str(line.line))
        _el(_el(item, "ram:SpecifiedTradeProduct"), "ram:Name", line.description)
        agreement = _el(item, "ram:SpecifiedLineTradeAgreement")
        price = _el(agreement, "ram:NetPriceProductTradePrice")
        _el(price, "ram:ChargeAmount", plain(line.unit_price))
        delivery = _el(item, "ram:SpecifiedLineTradeDelivery")
        _el(delivery, "ram:BilledQuantity", plain(line.quantity), unitCode=line.unit_code)
        settlement = _el(item, "ram:SpecifiedLineTradeSettlement")
        _tax(settlement, "ram:ApplicableTradeTax", line.vat_category, line.vat_rate)
        summation = _el(settlement, "ram:SpecifiedTradeSettlementLineMonetarySummation")
        _el(summation, "ram:LineTotalAmount", _amount(line.net, doc.currency))
    agreement = _el(transaction, "ram:ApplicableHeaderTradeAgreement")
    _el(agreement, "ram:BuyerReference", doc.driver_id)
    _party(agreement, "ram:SellerTradeParty", doc.supplier)
    _party(agreement, "ram:BuyerTradeParty", doc.customer)
    delivery = _el(transaction, "ram:ApplicableHeaderTradeDelivery")
    _date(
        _el(delivery, "ram:ActualDeliverySupplyChainEvent"),
        "ram:OccurrenceDateTime",
        doc.supply_date,
    )
    _settlement(_el(transaction, "ram:ApplicableHeaderTradeSettlement"), doc)
    ET.indent(root)
    return bytes(ET.tostring(root, encoding="UTF-8", xml_declaration=True))


def _notes(doc: InvoiceDocument) -> list[str]:
    verified = "verified" if doc.meter_verified else "FAILED verification"
    return [
        f"Charging session {doc.session_id} at EVSE {doc.evse_id or '-'}"
        f" (station {doc.station_id}).",
        f"Paid on chain: settlement transaction {doc.settlement_tx_hash}.",
        f"CDR {doc.cdr_id}, keccak-256 {doc.cdr_hash}; tariff {doc.tariff_id}.",
        f"Signed meter values (OCMF, {verified}): {doc.meter_data_url}",
    ]


def _party(parent: ET.Element, tag: str, party: Party) -> None:
    element = _el(parent, tag)
    _el(element, "ram:Name", party.name)
    if party.country:
        address = _el(element, "ram:PostalTradeAddress")
        if party.postcode:
            _el(address, "ram:PostcodeCode", party.postcode)
        if party.street:
            _el(address, "ram:LineOne", party.street)
        if party.city:
            _el(address, "ram:CityName", party.city)
        _el(address, "ram:CountryID", party.country)
    if party.email:
        uri = _el(element, "ram:URIUniversalCommunication")
        _el(uri, "ram:URIID", party.email, schemeID="EM")
    if party.vat_id:
        _el(_el(element, "ram:SpecifiedTaxRegistration"), "ram:ID", party.vat_id, schemeID="VA")


NO_VAT_REASON = "No VAT applies to this tariff component"


def _tax(parent: ET.Element, tag: str, category: str, rate: Decimal | None) -> None:
    tax = _el(parent, tag)
    _el(tax, "ram:TypeCode", "VAT")
    _el(tax, "ram:CategoryCode", category)
    _rate(tax, category, rate)


def _rate(tax: ET.Element, category: str, rate: Decimal | None) -> None:
    # an exempt item (E) states 0 % (BR-E-05); one not subject to VAT (O) states no rate
    if rate is not None or category == "E":
        _el(tax, "ram:RateApplicablePercent", plain(rate or Decimal(0)))


def _settlement(settlement: ET.Element, doc: InvoiceDocument) -> None:
    _el(settlement, "ram:InvoiceCurrencyCode", doc.currency)
    for subtotal in doc.vat_subtotals:
        tax = _el(settlement, "ram:ApplicableTradeTax")
        _el(tax, "ram:CalculatedAmount", _amount(subtotal.vat, doc.currency))
        _el(tax, "ram:TypeCode", "VAT")
        if subtotal.vat_category in ("O", "E"):
            _el(tax, "ram:ExemptionReason", NO_VAT_REASON)
        _el(tax, "ram:BasisAmount", _amount(subtotal.basis, doc.currency))
        _el(tax, "ram:CategoryCode", subtotal.vat_category)
        _rate(tax, subtotal.vat_category, subtotal.vat_rate)
    period = _el(settlement, "ram:BillingSpecifiedPeriod")
    _date(period, "ram:StartDateTime", doc.supply_start.date())
    _date(period, "ram:EndDateTime", doc.supply_end.date())
    for adjustment in doc.adjustments:
        charge = _el(settlement, "ram:SpecifiedTradeAllowanceCharge")
        indicator = _el(charge, "ram:ChargeIndicator")
        _el(indicator, "udt:Indicator", "true" if adjustment.charge else "false")
        _el(charge, "ram:ActualAmount", _amount(adjustment.amount, doc.currency))
        _el(charge, "ram:Reason", adjustment.reason)
        _tax(charge, "ram:CategoryTradeTax", adjustment.vat_category, adjustment.vat_rate)
    terms = _el(settlement, "ram:SpecifiedTradePaymentTerms")
    _el(terms, "ram:Description", "Paid in full from the driver's on-chain escrow at settlement.")
    charges = sum(a.amount for a in doc.adjustments if a.charge)
    allowances = sum(a.amount for a in doc.adjustments if not a.charge)
    summation = _el(settlement, "ram:SpecifiedTradeSettlementHeaderMonetarySummation")
    _el(
        summation, "ram:LineTotalAmount", _amount(sum(line.net for line in doc.lines), doc.currency)
    )
    _el(summation, "ram:ChargeTotalAmount", _amount(charges, doc.currency))
    _el(summation, "ram:AllowanceTotalAmount", _amount(allowances, doc.currency))
    _el(summation, "ram:TaxBasisTotalAmount", _amount(doc.total_excl_vat, doc.currency))
    _el(
        summation,
        "ram:TaxTotalAmount",
        _amount(doc.total_vat, doc.currency),
        currencyID=doc.currency,
    )
    _el(summation, "ram:GrandTotalAmount", _amount(doc.total_incl_vat, doc.currency))
    _el(summation, "ram:TotalPrepaidAmount", _amount(doc.total_incl_vat, doc.currency))
    _el(summation, "ram:DuePayableAmount", _amount(0, doc.currency))
