"""The sweeper's refund of FAILED sessions past their expiry reads each escrow on chain only when
its check is due, on SQLite and PostgreSQL: one the chain closed is read once, not at every
sweep; one still open is refunded and, while the refund does not land, read again only after a
back-off that doubles; a sweep reads a bounded batch, the longest due first.

The chain is py-evm in process, with the real contracts: its clock can be moved past an expiry
without moving the Hardhat node other tests share. Its provider counts the escrow's reads.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils.crypto import keccak
from web3 import Web3
from web3.providers.eth_tester import EthereumTesterProvider
from web3.types import Wei

from chargenet.core.chain import (
    Deployment,
    StationInfo,
    deploy_chargenet,
    send,
    sign_open_session,
)
from chargenet.core.chain.rpc import selector
from chargenet.core.db import Database
from chargenet.escrow.app import migrate
from chargenet.escrow.chain import ChainReader
from chargenet.escrow.core import EscrowCore, Tx
from chargenet.escrow.models import ChainOp, SessionRow
from chargenet.escrow.operations import Operations
from chargenet.escrow.settings import EscrowSettings
from chargenet.escrow.states import State
from chargenet.escrow.worker import Worker
from tests.escrow.harness import session_row

MAXIMUM = 5_000_000
LIFETIME = 60  # seconds from an escrow's opening to its expiry
RETRY = 100  # escrow_refund_retry_seconds
_SESSION_OF = selector("sessionOf(bytes32)")


class CountingChain(EthereumTesterProvider):
    """The in-process chain, recording the escrow sessions read from it (``sessionOf``)."""

    def __init__(self) -> None:
        super().__init__()
        self.sessions_read: list[str] = []

    def make_request(self, method: Any, params: Any) -> Any:
        if method == "eth_call":
            data = str(params[0].get("data") or params[0].get("input") or "")
            if data.startswith(_SESSION_OF):
                self.sessions_read.append("0x" + data.removeprefix(_SESSION_OF))
        return super().make_request(method, params)


@dataclass
class World:
    db: Database
    w3: Web3
    chain: CountingChain
    deployment: Deployment
    cpo: str
    driver: LocalAccount
    station_id: bytes
    worker: Worker
    operations: Operations

    def now(self) -> int:
        return int(self.w3.eth.get_block("latest")["timestamp"])

    def travel(self, seconds: int) -> None:
        """Move the latest block's time on by ``seconds`` (the reader's clock)."""
        tester = self.chain.ethereum_tester
        assert tester is not None
        # eth-tester mines the block before the pending one it moves, one second earlier.
        tester.time_travel(self.now() + seconds + 1)

    def open_escrow(self, nonce: int, lifetime: int = LIFETIME) -> tuple[str, int]:
        """Lock ``MAXIMUM`` of the driver's deposit on chain; returns its id and expiry."""
        expiry = self.now() + lifetime
        auth = sign_open_session(
            self.driver,
            chain_id=self.w3.eth.chain_id,
            escrow=self.deployment.escrow.address,
            nonce=nonce,
            station_id=self.station_id,
            maximum=MAXIMUM,
            expiry=expiry,
        )
        request = (auth.session_id, self.station_id, MAXIMUM, expiry, auth.r, auth.vs)
        send(self.w3, self.deployment.escrow.functions.openFromDeposit(request), self.cpo)
        return "0x" + auth.session_id.hex(), expiry

    def settle(self, chain_session_id: str) -> None:
        call = self.deployment.escrow.functions.settle(chain_session_id, 600, b"\x33" * 32)
        send(self.w3, call, self.cpo)

    def cancel(self, chain_session_id: str) -> None:
        send(self.w3, self.deployment.escrow.functions.cancel(chain_session_id), self.cpo)

    def failed_session(self, chain_session_id: str, expiry: int) -> str:
        """A session whose settlement failed for good (SETTLING -> FAILED, as its last attempt
        leaves it) on this escrow; returns its id."""
        session_id = uuid.uuid4().hex
        with self.db.session() as session:
            row = session_row(
                session_id,
                State.SETTLING,
                chain_session_id=chain_session_id,
                expiry=datetime.fromtimestamp(expiry, UTC),
                amount_settled=600,
                cdr_hash="0x" + "33" * 32,
            )
            session.add(row)
            session.flush()
            Tx(session).move(row, State.FAILED, "settle failed: execution reverted")
        return session_id

    def sweep(self) -> list[str]:
        """One sweep; returns the escrow sessions it read on chain."""
        before = len(self.chain.sessions_read)
        self.worker.sweep()
        return self.chain.sessions_read[before:]

    def refunds(self) -> list[ChainOp]:
        with self.db.session() as session:
            return list(
                session.scalars(
                    sa.select(ChainOp).where(ChainOp.kind == "refund").order_by(ChainOp.created_at)
                )
            )

    def state(self, session_id: str) -> str:
        with self.db.session() as session:
            row = session.get(SessionRow, session_id)
            assert row is not None
            return row.state


@pytest.fixture
def world(database: Database, request: pytest.FixtureRequest) -> Iterator[World]:
    migrate(database)
    chain = CountingChain()
    w3 = Web3(chain)
    accounts = list(w3.eth.accounts)
    admin, cpo = accounts[0], accounts[1]
    deployment = deploy_chargenet(w3, admin=admin, minter=admin)
    station_id = keccak(text="DE*CNT*S0001")
    info = StationInfo(
        latitude_e6=52_520_008,
        longitude_e6=13_404_954,
        connector_count=2,
        max_power_w=22_000,
        tariff_id=keccak(text="AC-1"),
        tariff_hash=keccak(text="tariff"),
        meter_key_hash=keccak(text="meter key"),
    )
    send(w3, deployment.registry.functions.register(station_id, info.as_tuple(), []), cpo)
    driver: LocalAccount = Account.create()
    send(w3, deployment.token.functions.mint(driver.address, 10 * MAXIMUM), admin)
    w3.eth.send_transaction({"from": admin, "to": driver.address, "value": Wei(10**17)})
    send(w3, deployment.escrow.functions.deposit(10 * MAXIMUM), driver)
    overrides: dict[str, Any] = getattr(request, "param", {})
    settings = EscrowSettings(
        escrow_address=deployment.escrow.address,
        escrow_refund_retry_seconds=RETRY,
        escrow_refund_retry_max_seconds=10 * RETRY,
        log_json=False,
        **overrides,
    )
    core = EscrowCore(settings, database)
    operations = Operations(core, signer=None)  # type: ignore[arg-type]  # the test decides
    worker = Worker(core, ChainReader(w3, deployment.escrow.address), operations)
    try:
        yield World(database, w3, chain, deployment, cpo, driver, station_id, worker, operations)
    finally:
        operations.close()


def test_a_failed_session_whose_escrow_the_chain_closed_is_read_once(world: World) -> None:
    """Settled by its CPO, or cancelled, after the escrow gave up on it: nothing is left to
    refund, and it stays FAILED for its operator. It was read at every sweep, for ever."""
    settled, settled_expiry = world.open_escrow(nonce=1)
    cancelled, cancelled_expiry = world.open_escrow(nonce=2)
    world.settle(settled)
    world.cancel(cancelled)
    sessions = [
        world.failed_session(settled, settled_expiry),
        world.failed_session(cancelled, cancelled_expiry),
    ]
    assert world.sweep() == []  # not expired yet: nothing to refund, nothing read
    world.travel(LIFETIME + 1)

    reads = [world.sweep() for _ in range(5)]

    assert sorted(reads[0]) == sorted([settled, cancelled])
    assert reads[1:] == [[]] * 4
    assert [world.state(s) for s in sessions] == [State.FAILED.value] * 2
    assert world.refunds() == []


def test_a_failed_session_still_open_on_chain_is_refunded_and_read_again_after_a_back_off(
    world: World,
) -> None:
    """The refund goes once the escrow expired. While it does not land (here the signer
    refuses it), the escrow is read again after 100 s, then 200 s: not at every sweep, and no
    second refund before then."""
    escrow, expiry = world.open_escrow(nonce=1)
    session = world.failed_session(escrow, expiry)
    world.travel(LIFETIME + 1)

    assert world.sweep() == [escrow]
    [first] = world.refunds()
    assert first.status == "new" and first.function == "refund"
    world.operations.apply(first.id, None, "the signer refused: relayer key disabled")
    assert world.state(session) == State.FAILED.value

    assert [world.sweep() for _ in range(3)] == [[]] * 3
    assert len(world.refunds()) == 1
    world.travel(RETRY)
    assert world.sweep() == [escrow]
    assert len(world.refunds()) == 2
    world.operations.apply(world.refunds()[1].id, None, "the signer refused: still disabled")

    world.travel(RETRY)
    assert world.sweep() == []  # the second wait is twice the first
    world.travel(RETRY)
    assert world.sweep() == [escrow]
    assert len(world.refunds()) == 3


@pytest.mark.parametrize("world", [{"escrow_refund_checks_per_sweep": 2}], indirect=True)
def test_a_sweep_reads_a_bounded_batch_of_failed_sessions_longest_due_first(
    world: World,
) -> None:
    escrows = [world.open_escrow(nonce=n, lifetime=LIFETIME + n) for n in (1, 2, 3)]
    for escrow, expiry in reversed(escrows):  # the rows' order is not the one they are due in
        world.cancel(escrow)
        world.failed_session(escrow, expiry)
    world.travel(LIFETIME + 10)

    reads = [world.sweep() for _ in range(3)]

    first, second, third = (escrow for escrow, _expiry in escrows)
    assert sorted(reads[0]) == sorted([first, second])
    assert reads[1:] == [[third], []]
