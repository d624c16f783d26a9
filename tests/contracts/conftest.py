"""One chargenet deployment on py-evm per test module, rolled back after every test.

After every test the money invariant is checked from the chain alone: the token's total supply
equals the sum of all token balances outside the escrow plus all escrow deposits plus the
maxima locked in open sessions, and the escrow holds exactly those deposits and locks.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pytest
from eth_account import Account
from eth_utils.crypto import keccak
from web3 import Web3
from web3.contract import Contract

from chargenet.core.chain import (
    IN_PROCESS,
    Deployment,
    OpenAuthorisation,
    PermitSignature,
    SessionState,
    StationInfo,
    artifact_names,
    connect,
    deploy_chargenet,
    load_artifact,
    send,
    sign_open_session,
    sign_permit,
)
from chargenet.core.chain.deploy import DEFAULT_TOKEN_NAME

GAS = 3_000_000  # explicit, so py-evm need not estimate (it replays every call ~12 times)
STATION = b"DE*CNT*E0001".ljust(32, b"\0")
STATION_2 = b"DE*CNT*E0002".ljust(32, b"\0")
OTHER_CPO_STATION = b"NL*OTH*E0001".ljust(32, b"\0")
INFO = StationInfo(
    latitude_e6=52_520_008,
    longitude_e6=13_404_954,
    connector_count=2,
    max_power_w=150_000,
    tariff_id=b"TARIFF-AC-1".ljust(32, b"\0"),
    tariff_hash=keccak(b'{"id":"TARIFF-AC-1"}'),
    meter_key_hash=keccak(b"meter public key"),
)
TOP_UP = 1_000_000_000  # 1,000 cEUR
MAXIMUM = 40_000_000  # 40 cEUR


def _error_selectors() -> dict[bytes, str]:
    selectors: dict[bytes, str] = {}
    for name in artifact_names():
        for item in load_artifact(name).abi:
            if item["type"] == "error":
                types = ",".join(i["type"] for i in item["inputs"])
                selectors[keccak(text=f"{item['name']}({types})")[:4]] = item["name"]
    return selectors


ERRORS = _error_selectors()


def revert_data(exc: BaseException) -> bytes:
    """The revert data of a failed call on eth-tester or on a JSON-RPC node."""
    for data in (getattr(exc, "data", None), *exc.args[1:]):
        if isinstance(data, dict):
            data = data.get("data")
        if isinstance(data, str) and data.startswith("0x"):
            return bytes.fromhex(data[2:])
    message = str(exc.args[0]) if exc.args else ""
    prefix = "execution reverted: "
    if message.startswith(prefix) and message[len(prefix) :].startswith(("b'", 'b"')):
        value = ast.literal_eval(message[len(prefix) :])
        if isinstance(value, bytes):
            return value
    raise AssertionError(f"no revert data in {exc!r}")


@dataclass
class Chain:
    """The deployment under test plus the roles, constants and helpers the tests share."""

    STATION: ClassVar[bytes] = STATION
    STATION_2: ClassVar[bytes] = STATION_2
    OTHER_CPO_STATION: ClassVar[bytes] = OTHER_CPO_STATION
    INFO: ClassVar[StationInfo] = INFO
    TOP_UP: ClassVar[int] = TOP_UP
    MAXIMUM: ClassVar[int] = MAXIMUM

    w3: Web3
    chain: Deployment
    admin: str
    minter: str
    cpo: str
    operator: str
    relayer: str
    stranger: str
    other_cpo: str
    drivers: list[Any] = field(default_factory=list)

    @property
    def token(self) -> Contract:
        return self.chain.token

    @property
    def registry(self) -> Contract:
        return self.chain.registry

    @property
    def escrow(self) -> Contract:
        return self.chain.escrow

    @property
    def chain_id(self) -> int:
        return int(self.w3.eth.chain_id)

    def send(self, call: Any, sender: Any) -> Any:
        return send(self.w3, call, sender, gas=GAS)

    @contextmanager
    def reverts(self, error: str, *args: Any) -> Iterator[None]:
        """Asserts the call in the block reverts with custom error ``error`` (and ``args``)."""
        # Broad on purpose: eth-tester and JSON-RPC nodes raise different types; the data decides.
        with pytest.raises(Exception) as caught:
            yield
        data = revert_data(caught.value)
        assert ERRORS.get(data[:4]) == error, f"reverted with {ERRORS.get(data[:4], data)!r}"
        if args:
            abi = next(
                e
                for name in artifact_names()
                for e in load_artifact(name).abi
                if e["type"] == "error" and e["name"] == error
            )
            decoded = self.w3.codec.decode([i["type"] for i in abi["inputs"]], data[4:])
            assert tuple(
                Web3.to_checksum_address(v) if isinstance(v, str) else v for v in decoded
            ) == tuple(args)

    def fails(self, call: Any, sender: Any, error: str, *args: Any) -> None:
        """Asserts ``call`` from ``sender`` reverts with ``error``, simulated and mined."""
        with self.reverts(error, *args):
            call.call({"from": sender})
        receipt = self.w3.eth.wait_for_transaction_receipt(
            call.transact({"from": sender, "gas": GAS})
        )
        assert receipt["status"] == 0

    def now(self) -> int:
        return int(self.w3.eth.get_block("latest")["timestamp"])

    def travel(self, seconds: int) -> None:
        tester = getattr(self.w3.provider, "ethereum_tester", None)
        if tester is not None:
            tester.time_travel(self.now() + seconds)
        else:  # a Hardhat node
            self.w3.provider.make_request("evm_increaseTime", [seconds])  # type: ignore[arg-type]
            self.w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]

    def authorise(
        self,
        driver: Any,
        nonce: int,
        *,
        station: bytes = STATION,
        maximum: int = MAXIMUM,
        expiry: int | None = None,
        chain_id: int | None = None,
        escrow: str | None = None,
    ) -> OpenAuthorisation:
        return sign_open_session(
            driver,
            chain_id=self.chain_id if chain_id is None else chain_id,
            escrow=self.escrow.address if escrow is None else escrow,
            nonce=nonce,
            station_id=station,
            maximum=maximum,
            expiry=self.now() + 3600 if expiry is None else expiry,
        )

    def permit(
        self, owner: Any, value: int, *, deadline: int | None = None, spender: str | None = None
    ) -> PermitSignature:
        return sign_permit(
            owner,
            chain_id=self.chain_id,
            token=self.token.address,
            token_name=DEFAULT_TOKEN_NAME,
            spender=self.escrow.address if spender is None else spender,
            value=value,
            nonce=self.token.functions.nonces(owner.address).call(),
            deadline=self.now() + 3600 if deadline is None else deadline,
        )

    def open(self, driver: Any, nonce: int, **kwargs: Any) -> OpenAuthorisation:
        auth = self.authorise(driver, nonce, **kwargs)
        self.send(self.escrow.functions.openFromDeposit(auth.as_request()), self.relayer)
        return auth

    def deposit_of(self, account: str) -> int:
        return int(self.escrow.functions.depositOf(account).call())

    def balance_of(self, account: str) -> int:
        return int(self.token.functions.balanceOf(account).call())

    def state(self, session: bytes) -> SessionState:
        return SessionState(self.escrow.functions.sessionOf(session).call()[0])

    def events(self, contract: Contract, name: str, receipt: Any) -> list[Any]:
        from web3.logs import DISCARD

        return list(getattr(contract.events, name)().process_receipt(receipt, errors=DISCARD))


def money_invariant(env: Chain) -> None:
    """Total supply == token balances outside the escrow + escrow deposits + locked maxima.

    Every holder and escrow account is found from the chain's logs: each appears as an indexed
    address in a Transfer or an escrow event. One get_logs call keeps this cheap on py-evm.
    """
    token, escrow = env.token, env.escrow
    opened_topic = keccak(text="SessionOpened(bytes32,address,bytes32,uint32,uint96,uint40,bool)")
    holders: set[str] = set()
    accounts: set[str] = set()
    sessions: list[bytes] = []
    for log in env.w3.eth.get_logs(
        {"fromBlock": 0, "toBlock": "latest", "address": [token.address, escrow.address]}
    ):
        topics = [bytes(t) for t in log["topics"]]
        addresses = {
            Web3.to_checksum_address(t[12:]) for t in topics[1:] if t[:12] == bytes(12) and any(t)
        }
        (holders if log["address"] == token.address else accounts).update(addresses)
        if log["address"] == escrow.address and topics[0] == opened_topic:
            sessions.append(topics[1])
    holders.discard(escrow.address)
    balances = sum(token.functions.balanceOf(h).call() for h in holders)
    deposits = sum(escrow.functions.depositOf(a).call() for a in accounts)
    locked = 0
    for session in sessions:
        state, _, _, maximum, _ = escrow.functions.sessionOf(session).call()
        if state == SessionState.OPEN:
            locked += maximum

    supply = token.functions.totalSupply().call()
    assert supply == balances + deposits + locked, (supply, balances, deposits, locked)
    assert token.functions.balanceOf(escrow.address).call() == deposits + locked


def deploy_test_chain(w3: Web3) -> Chain:
    """Deploys chargenet, registers three stations, gives three ether-less drivers deposits."""
    accounts: list[str] = list(w3.eth.accounts)
    admin, minter, cpo, operator, relayer, stranger, other_cpo = accounts[:7]
    env = Chain(
        w3=w3,
        chain=deploy_chargenet(w3, admin=admin, minter=minter),
        admin=admin,
        minter=minter,
        cpo=cpo,
        operator=operator,
        relayer=relayer,
        stranger=stranger,
        other_cpo=other_cpo,
    )
    env.send(env.registry.functions.register(STATION, INFO.as_tuple(), [operator]), cpo)
    env.send(env.registry.functions.register(STATION_2, INFO.as_tuple(), []), cpo)
    env.send(env.registry.functions.register(OTHER_CPO_STATION, INFO.as_tuple(), []), other_cpo)
    # Drivers hold keys but no ether: a relayer submits what they sign.
    for i in range(3):
        driver = Account.from_key(keccak(text=f"chargenet test driver {i}"))
        env.send(env.token.functions.mint(driver.address, TOP_UP), minter)
        permit = env.permit(driver, TOP_UP // 2)
        env.send(
            env.escrow.functions.depositWithPermit(driver.address, TOP_UP // 2, *permit.as_args()),
            relayer,
        )
        env.drivers.append(driver)
    return env


@pytest.fixture(scope="module")
def _deployed() -> Iterator[tuple[Chain, int]]:
    env = deploy_test_chain(connect(IN_PROCESS))
    tester = env.w3.provider.ethereum_tester  # type: ignore[attr-defined]
    yield env, tester.take_snapshot()


@pytest.fixture
def env(_deployed: tuple[Chain, int]) -> Iterator[Chain]:
    chain, snapshot = _deployed
    tester = chain.w3.provider.ethereum_tester  # type: ignore[attr-defined]
    tester.revert_to_snapshot(snapshot)
    yield chain
    money_invariant(chain)
    tester.revert_to_snapshot(snapshot)


@pytest.fixture(scope="module")
def hardhat_env(rpc_url: str) -> Chain:
    """A fresh deployment on the real Hardhat node (skipped if CHARGENET_TEST_RPC_URL is unset)."""
    return deploy_test_chain(connect(rpc_url))


@pytest.fixture
def check_money() -> Callable[[Chain], None]:
    return money_invariant
