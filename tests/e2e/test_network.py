"""The demo scenario against the distributed stack: each service its own process (``chargenet up``'s
supervisor) on Kafka, PostgreSQL and the Hardhat node, the gateway as two replicas per CPO.

One round of the demo (driver stop, car full, budget, rejected start on OCPP 1.6J and 2.0.1), then
every figure that should move is checked against an independent source: balances and locks on
chain, each settlement's amount and CDR hash on chain against the invoice, the invoice numbers,
and the services' own metrics.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from chargenet.cli.network.client import NetworkClient, metric_value
from chargenet.cli.network.plan import Ports
from chargenet.cli.network.report import audit, ledger_now
from chargenet.cli.network.scenario import DemoScenario, ScenarioResult
from chargenet.cli.network.supervisor import (
    SERVICES,
    Components,
    PortsBusy,
    Stack,
    down,
    up,
)
from chargenet.core.chain import connect, contract_at

pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.hardhat, pytest.mark.slow]


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, kafka_bootstrap: str, postgres_url: str, rpc_url: str
) -> Iterator[Stack]:
    run_dir = tmp_path_factory.mktemp("network")
    prefix = f"e2e_{uuid.uuid4().hex[:8]}"
    try:
        yield start_beside_others(
            Components(kafka_bootstrap, postgres_url, rpc_url), run_dir, prefix
        )
    finally:
        down(run_dir)
        admin = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            for service in SERVICES:
                name = f"{prefix}_{service}"
                connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def start_beside_others(components: Components, run_dir: Path, prefix: str) -> Stack:
    """The stack on a block of ports of its own, beside a developer's `chargenet up` (offset 0)
    and other test runs or benchmarks on this machine."""
    blocks = 30  # offsets 12000-14900: every shifted port stays below 65536
    first = os.getpid() % blocks
    for block in range(blocks):
        try:
            return up(
                components,
                run_dir=run_dir,
                ports=Ports().shifted(12_000 + (first + block) % blocks * 100),
                replicas=2,
                database_prefix=prefix,
                # The logs kept in the run directory are what explains a failure on a CI machine.
                log_level="INFO",
            )
        except PortsBusy:
            continue
    pytest.fail("every block of ports (offsets 12000-14900) is in use")


def run_scenario(stack: Stack, invoice_dir: Path) -> tuple[ScenarioResult, dict[str, str]]:
    async def scenario() -> tuple[ScenarioResult, dict[str, str]]:
        client = NetworkClient(stack.endpoints, stack.jwt_secret)
        demo = DemoScenario(client, stack.cpos, stack.meter_seed, rounds=1, invoice_dir=invoice_dir)
        try:
            result = await demo.run(stack.endpoints.gateways)
            metrics = {name: await client.metrics(name) for name in stack.endpoints.metrics}
            return result, metrics
        finally:
            await demo.close()
            await client.aclose()

    return asyncio.run(scenario())


async def invoice_documents(stack: Stack, result: ScenarioResult) -> dict[str, dict[str, Any]]:
    """Each settled session's invoice document (JSON), read with its driver's token."""
    client = NetworkClient(stack.endpoints, stack.jwt_secret)
    documents: dict[str, dict[str, Any]] = {}
    try:
        for session in result.sessions:
            if session.final.get("state") != "settled":
                continue
            listed = await client.invoices(session.driver.headers)
            number = next(i["number"] for i in listed if i["session_id"] == session.session_id)
            document = await client.invoice(session.driver.headers, number)
            documents[session.session_id] = {"number": number, **document}
    finally:
        await client.aclose()
    return documents


def print_logs(stack: Stack, lines: int = 150) -> None:
    """The services' own account of a failed run, for CI, where the run directory is gone."""
    for log_file in sorted((stack.run_dir / "logs").glob("*.log")):
        tail = log_file.read_text(errors="replace").splitlines()[-lines:]
        print(f"----- {log_file.name} (last {len(tail)} lines) -----", *tail, sep="\n")


def test_demo_scenario_on_the_distributed_stack(stack: Stack, tmp_path: Path) -> None:
    w3 = connect(stack.rpc_url)
    before = ledger_now(w3, stack.contracts, stack.first_block, stack.cpo_addresses)
    try:
        result, metrics = run_scenario(stack, tmp_path / "invoices")
    except Exception:
        print_logs(stack)
        raise
    ledger, gas, checks = audit(
        w3, stack.contracts, stack.first_block, stack.cpo_addresses, result, before
    )
    settled = [s for s in result.sessions if s.final["state"] == "settled"]
    refunded = [s for s in result.sessions if s.final["state"] == "refunded"]
    paid = sum(s.final["amount_settled"] for s in settled)
    print(
        f"{len(settled)} settled, {len(refunded)} refunded, paid {paid}, "
        f"gas {sum(g.gas for g in gas):,}, ledger {ledger}"
    )
    # Sessions as planned, each lock = paid + refunded, per driver and per CPO on chain, tokens
    # conserved over every holder, nothing locked, an invoice per settlement.
    if not checks.ok:
        print_logs(stack)
    assert checks.ok, checks.failures
    assert (len(settled), len(refunded)) == (5, 1)
    assert ledger.locked == 0 and ledger.conserved

    # Each settlement on chain: the amount the wallet reports and the CDR hash the invoice names.
    escrow = contract_at(w3, "ChargingEscrow", stack.contracts["ChargingEscrow"])
    on_chain = {
        "0x" + bytes(e["args"]["sessionId"]).hex(): e["args"]
        for e in escrow.events.SessionSettled().get_logs(from_block=stack.first_block)
    }
    documents = asyncio.run(invoice_documents(stack, result))
    for session in settled:
        event = on_chain[session.final["chain_session_id"]]
        document = documents[session.session_id]
        assert int(event["amount"]) == session.final["amount_settled"]
        assert int(event["returned"]) == session.final["amount_refunded"]
        assert "0x" + bytes(event["cdrHash"]).hex() == document["cdr_hash"]
        assert (
            Path(tmp_path / "invoices" / f"{document['number']}.pdf").read_bytes()[:5] == b"%PDF-"
        )
    # Invoice numbers: gapless per CPO on a fresh stack.
    for cpo in stack.cpos:
        prefix = f"INV-{cpo.cpo_id}-"
        numbers = sorted(
            int(d["number"].removeprefix(prefix))
            for d in documents.values()
            if d["number"].startswith(prefix)
        )
        assert numbers == list(range(1, len(numbers) + 1)), numbers

    # The services' own metrics moved by exactly as much.
    escrow_metrics = metrics["escrow"]
    assert metric_value(escrow_metrics, "chargenet_escrow_settled_tokens_total") == paid
    assert metric_value(
        escrow_metrics, "chargenet_escrow_sessions_finished_total", outcome="settled"
    ) == len(settled)
    assert metric_value(
        metrics["invoicing"], "chargenet_invoicing_invoices_total", outcome="issued"
    ) == len(settled)
    assert metric_value(metrics["wallet"], "chargenet_wallet_session_requests_total") == len(
        result.sessions
    )
    connected = sum(
        metric_value(text, "chargenet_gateway_connected_charge_points")
        for name, text in metrics.items()
        if name.startswith("gateway-")
    )
    assert connected == len(stack.cpos) * 3
    # Both replicas of each CPO's gateway hold charge points (they were spread round-robin).
    for cpo in stack.cpos:
        for replica in (1, 2):
            text = metrics[f"gateway-{cpo.cpo_id}-r{replica}"]
            assert metric_value(text, "chargenet_gateway_connected_charge_points") >= 1
