"""The interim demo, kept as ``chargenet demo --chain-only``: one charging session on chain, end
to end through the core library and no service. The contracts deployed, a station registered with
the keccak hash of its OCPI tariff, a driver topped up, the session's maximum locked by the driver's
EIP-712 authorisation and an EIP-2612 permit (a relayer pays the gas), the session priced from its
meter samples by the tariff engine, and the escrow settled with the CDR's hash.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from eth_account import Account
from eth_utils.crypto import keccak
from web3 import Web3

from chargenet.core.chain import (
    IN_PROCESS,
    StationInfo,
    connect,
    deploy_chargenet,
    send,
    sign_open_session,
    sign_permit,
)
from chargenet.core.chain.deploy import DEFAULT_TOKEN_NAME
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
    tariff_hash,
)
from chargenet.core.pricing.money import units_to_decimal

TARIFF = {
    "country_code": "DE",
    "party_id": "CPO",
    "id": "AC-STANDARD",
    "currency": "EUR",
    "type": "REGULAR",
    "elements": [
        {"price_components": [{"type": "FLAT", "price": 0.50, "vat": 19.0, "step_size": 1}]},
        {"price_components": [{"type": "ENERGY", "price": 0.39, "vat": 19.0, "step_size": 1}]},
        {"price_components": [{"type": "TIME", "price": 0.60, "vat": 19.0, "step_size": 60}]},
    ],
    "last_updated": "2026-11-01T00:00:00Z",
}
TOP_UP = 50_000_000  # 50.00 EUR in token base units
MAXIMUM = 30_000_000  # the most this session may cost: 30.00 EUR


def eur(units: int) -> str:
    return f"{units_to_decimal(units):.2f} EUR"


def run(rpc_url: str = IN_PROCESS) -> int:
    started = time.perf_counter()
    w3 = connect(rpc_url)
    msp, cpo, relayer = (w3.eth.accounts[i] for i in range(3))
    driver = Account.create()
    gas: dict[str, int] = {}

    def step(label: str, call: Any, sender: Any) -> Any:
        receipt = send(w3, call, sender)
        gas[label] = int(receipt["gasUsed"])
        return receipt

    chain = deploy_chargenet(w3, admin=msp, minter=msp)
    print(f"contracts on chain {w3.eth.chain_id}: {chain.addresses()}")

    tariff = Tariff.model_validate(TARIFF)
    station_id = keccak(text="DE*CPO*S0001")
    info = StationInfo(
        latitude_e6=52_520_008,
        longitude_e6=13_404_954,
        connector_count=2,
        max_power_w=22_000,
        tariff_id=keccak(text=tariff.id),
        tariff_hash=tariff_hash(TARIFF),
        meter_key_hash=keccak(text="demo meter key"),
    )
    step(
        "register station", chain.registry.functions.register(station_id, info.as_tuple(), []), cpo
    )
    print(f"station DE*CPO*S0001 registered by the CPO, tariff hash 0x{info.tariff_hash.hex()}")

    step("top-up (mint)", chain.token.functions.mint(driver.address, TOP_UP), msp)
    print(f"driver {driver.address} topped up with {eur(TOP_UP)}")

    now = int(w3.eth.get_block("latest")["timestamp"])
    auth = sign_open_session(
        driver,
        chain_id=w3.eth.chain_id,
        escrow=chain.escrow.address,
        nonce=1,
        station_id=station_id,
        maximum=MAXIMUM,
        expiry=now + 4 * 3600,
    )
    permit = sign_permit(
        driver,
        chain_id=w3.eth.chain_id,
        token=chain.token.address,
        token_name=DEFAULT_TOKEN_NAME,
        spender=chain.escrow.address,
        value=MAXIMUM,
        nonce=0,
        deadline=now + 600,
    )
    step(
        "open by permit",
        chain.escrow.functions.openWithPermit(auth.as_request(), *permit.as_args()),
        relayer,
    )
    print(
        f"session 0x{auth.session_id.hex()[:16]}… opened: {eur(MAXIMUM)} locked (relayer paid gas)"
    )

    start = datetime(2026, 11, 29, 18, 0, tzinfo=UTC)
    samples = [
        MeterSample(timestamp=start + timedelta(minutes=m), energy_wh=Decimal(m * 183))
        for m in range(0, 61, 5)
    ]
    result = price_samples(tariff, samples, time_zone="Europe/Berlin")
    cdr = build_cdr(
        cdr_id="CDR-DEMO-1",
        country_code="DE",
        party_id="CPO",
        session_id="DEMO-SESSION-1",
        token=CdrToken(
            country_code="DE",
            party_id="MSP",
            uid="DRIVER-1",
            type=TokenType.APP_USER,
            contract_id="DE-MSP-C1",
        ),
        auth_method=AuthMethod.COMMAND,
        location=_location(),
        tariff=tariff,
        result=result,
        last_updated=samples[-1].timestamp,
    )
    cost = result.total_incl_vat_units
    print(f"charged {samples[-1].energy_wh / 1000} kWh in 60 min: {eur(cost)} incl. VAT")
    receipt = step(
        "settle",
        chain.escrow.functions.settle(auth.session_id, cost, cdr_hash(cdr)),
        cpo,
    )
    settled = chain.escrow.events.SessionSettled().process_receipt(receipt)[0]["args"]
    print(f"settled: CPO paid {eur(settled['amount'])}, CDR hash 0x{settled['cdrHash'].hex()}")

    _report(w3, chain, driver.address, cpo, cost, gas, time.perf_counter() - started)
    return 0


def _location() -> CdrLocation:
    return CdrLocation.model_validate(
        {
            "id": "S0001",
            "name": "Alexanderplatz",
            "address": "Alexanderplatz 1",
            "city": "Berlin",
            "country": "DEU",
            "coordinates": {"latitude": "52.520008", "longitude": "13.404954"},
            "evse_uid": "DE*CPO*E0001*1",
            "evse_id": "DE*CPO*E0001*1",
            "connector_id": "1",
            "connector_standard": "IEC_62196_T2",
            "connector_format": "SOCKET",
            "connector_power_type": "AC_3_PHASE",
        }
    )


def _report(
    w3: Web3, chain: Any, driver: str, cpo: str, cost: int, gas: dict[str, int], seconds: float
) -> None:
    token, escrow = chain.token.functions, chain.escrow.functions
    driver_wallet = int(token.balanceOf(driver).call())
    driver_deposit = int(escrow.depositOf(driver).call())
    cpo_earned = int(escrow.depositOf(cpo).call())
    supply = int(token.totalSupply().call())
    held = int(token.balanceOf(chain.escrow.address).call())
    print("\n== report ==")
    print(f"driver: {eur(driver_wallet)} in wallet + {eur(driver_deposit)} refunded to deposit")
    print(f"CPO:    {eur(cpo_earned)} earned (withdrawable)")
    for label, used in gas.items():
        print(f"gas     {label:<18} {used:>9,}")
    print(f"gas     {'open + settle':<18} {gas['open by permit'] + gas['settle']:>9,}")
    conserved = supply == driver_wallet + held and held == driver_deposit + cpo_earned
    assert driver_wallet + driver_deposit + cpo_earned == TOP_UP and cpo_earned == cost
    print(f"tokens conserved: {conserved} (supply {eur(supply)}); finished in {seconds:.1f} s")
