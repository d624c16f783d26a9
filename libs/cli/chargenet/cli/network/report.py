"""The demo's closing report and the checks behind its exit code.

Every figure comes from the services' APIs (sessions, invoices) or straight from the chain
(balances, locks, gas); the checks compare the two and fail loudly when they disagree.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from web3 import Web3

from chargenet.cli.network.ledger import GasLine, Ledger, gas_by_call, read_ledger, token_holders
from chargenet.cli.network.scenario import TOP_UP, ScenarioResult, eur, summary


@dataclass
class Checks:
    failures: list[str] = field(default_factory=list)

    def expect(self, condition: bool, failure: str) -> None:
        if not condition:
            self.failures.append(failure)

    @property
    def ok(self) -> bool:
        return not self.failures


def check(
    result: ScenarioResult,
    ledger: Ledger,
    cpo_addresses: dict[str, str],
    before: Ledger | None = None,
) -> Checks:
    """Every session ended as planned; money adds up per session, driver, CPO and on chain.
    ``before`` is the ledger before the run, for a network that already had sessions."""
    checks = Checks()
    paid_by_driver: dict[str, int] = defaultdict(int)
    paid_to_cpo: dict[str, int] = defaultdict(int)
    for s in result.sessions:
        final = s.final
        state = final.get("state")
        checks.expect(
            state == s.expect, f"{s.label} at {s.charge_point_id}: {state}, expected {s.expect}"
        )
        settled = int(final.get("amount_settled") or 0)
        refunded = int(final.get("amount_refunded") or 0)
        checks.expect(
            settled + refunded == s.max_amount,
            f"{s.session_id}: settled {settled} + refunded {refunded} != locked {s.max_amount}",
        )
        checks.expect(settled <= s.max_amount, f"{s.session_id}: settled above the lock")
        paid_by_driver[s.driver.address] += settled
        paid_to_cpo[s.cpo.cpo_id] += settled
    for driver in result.drivers:
        wallet, deposit = ledger.by_holder.get(_checksum(driver.address), (0, 0))
        expected = TOP_UP - paid_by_driver[driver.address]
        checks.expect(
            wallet + deposit == expected,
            f"driver {driver.email}: {wallet + deposit} on chain, expected {expected}",
        )
    for cpo_id, address in cpo_addresses.items():
        _wallet, deposit = ledger.by_holder.get(_checksum(address), (0, 0))
        if before is not None:
            deposit -= before.by_holder.get(_checksum(address), (0, 0))[1]
        checks.expect(
            deposit == paid_to_cpo[cpo_id],
            f"{cpo_id}: {deposit} credited on chain, {paid_to_cpo[cpo_id]} settled",
        )
    checks.expect(ledger.locked == 0, f"{eur(ledger.locked)} still locked in open sessions")
    checks.expect(ledger.conserved, "tokens not conserved (see the ledger above)")
    minted = ledger.supply - (before.supply if before is not None else 0)
    checks.expect(
        minted == TOP_UP * len(result.drivers),
        f"{minted} minted during the run != the top-ups {TOP_UP * len(result.drivers)}",
    )
    settled_count = sum(1 for s in result.sessions if s.final.get("state") == "settled")
    checks.expect(
        len(result.invoices) == settled_count,
        f"{len(result.invoices)} invoices for {settled_count} settled sessions",
    )
    return checks


def _checksum(address: str) -> str:
    return str(Web3.to_checksum_address(address))


def ledger_now(
    w3: Web3,
    contracts: dict[str, str],
    first_block: int,
    cpo_addresses: dict[str, str],
    result: ScenarioResult | None = None,
) -> Ledger:
    """The chain's ledger over every token holder since the deployment, plus the CPOs."""
    holders = [*token_holders(w3, contracts, first_block), *cpo_addresses.values()]
    sessions = [s.final["chain_session_id"] for s in result.sessions if s.final] if result else []
    return read_ledger(w3, contracts, holders, sessions)


def audit(
    w3: Web3,
    contracts: dict[str, str],
    first_block: int,
    cpo_addresses: dict[str, str],
    result: ScenarioResult,
    before: Ledger | None = None,
) -> tuple[Ledger, list[GasLine], Checks]:
    """Read the chain after a run and check it against what the APIs said."""
    ledger = ledger_now(w3, contracts, first_block, cpo_addresses, result)
    gas = gas_by_call(w3, contracts, first_block)
    return ledger, gas, check(result, ledger, cpo_addresses, before)


def print_report(
    result: ScenarioResult,
    ledger: Ledger,
    gas: list[GasLine],
    checks: Checks,
    cpo_addresses: dict[str, str],
    verified: tuple[int, int] | None,
    seconds: float,
    out: Callable[[str], None] = print,
) -> None:
    sessions = result.sessions
    states = Counter(s.final.get("state") for s in sessions)
    kinds = Counter((s.label, s.final.get("state")) for s in sessions)
    kwh = sum(int(s.final.get("energy_wh") or 0) for s in sessions) / 1000
    locked = sum(s.max_amount for s in sessions)
    paid = sum(int(s.final.get("amount_settled") or 0) for s in sessions)
    refunded = sum(int(s.final.get("amount_refunded") or 0) for s in sessions)
    out("")
    out("== report ==")
    out(
        f"sessions   {len(sessions)}: "
        + ", ".join(f"{n} {state}" for state, n in sorted(states.items(), key=str))
        + " ("
        + ", ".join(f"{label}: {n} {state}" for (label, state), n in sorted(kinds.items(), key=str))
        + ")"
    )
    out(f"energy     {kwh:,.3f} kWh")
    out(f"tokens     locked {eur(locked)} = paid to CPOs {eur(paid)} + refunded {eur(refunded)}")
    for cpo_id, address in cpo_addresses.items():
        _wallet, deposit = ledger.by_holder.get(_checksum(address), (0, 0))
        out(f"           {cpo_id}: {eur(deposit)} credited in the escrow (withdrawable)")
    if verified is not None:
        out(
            f"meters     signed OCMF values verified for {verified[0]} of {verified[1]} settlements"
        )
    out(f"gas        {sum(line.gas for line in gas):,} in {sum(line.count for line in gas)} tx:")
    for line in gas:
        out(f"           {line.call:<40} {line.count:>4} tx {line.gas:>12,} gas")
    out(f"invoices   {len(result.invoices)} PDF (Factur-X) files:")
    for number, path in result.invoices:
        out(f"           {number}  {path}")
    out(f"latency    session start (REST request -> RemoteStart at the charge point): "
        f"{summary(result.start_latencies())}")  # fmt: skip
    out(f"           request -> settled in the wallet: {summary(result.settle_latencies())}")
    final = all(s.final.get("state") in ("settled", "refunded") for s in sessions)
    out(f"every session settled or refunded: {final}")
    out(
        f"tokens conserved: {ledger.conserved and ledger.locked == 0} (supply {eur(ledger.supply)}"
        f" = wallets {eur(ledger.wallets)} + escrow {eur(ledger.escrow_holds)}; escrow = "
        f"deposits {eur(ledger.deposits)} + locked {eur(ledger.locked)})"
    )
    if checks.failures:
        out("CHECKS FAILED:")
        for failure in checks.failures:
            out(f"  - {failure}")
    else:
        out("all checks passed: sessions as planned, each lock = paid + refunded, chain = API")
    out(f"finished in {seconds:.1f} s")
