"""What a caller is told when its request or the signer's database is at fault: bad input is
INVALID_ARGUMENT naming the field, a database that does not answer is UNAVAILABLE (the one code
the client retries), and a key another replica stored meanwhile answers with that record."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import sqlalchemy as sa
from eth_account import Account
from web3 import Web3
from web3.providers.eth_tester import EthereumTesterProvider

from chargenet.core.db import Database
from chargenet.core.db.migrations import upgrade_to_head
from chargenet.core.signer_client import SignerClient, SignerError, TxStatus
from chargenet.core.signer_client._generated import signer_pb2 as pb
from chargenet.core.signer_client._generated import signer_pb2_grpc
from chargenet.signer.migrations import VERSIONS
from chargenet.signer.models import AccountRow, TransactionRow, utcnow
from chargenet.signer.records import Attempt, Request
from chargenet.signer.store import SignerStore
from tests.signer.harness import PROBE, TOKEN, InProcessSigner, inprocess_signer, signer_env

TAG = b"\x0b" * 32


def embedded_chain() -> tuple[EthereumTesterProvider, str]:
    provider = EthereumTesterProvider()
    w3 = Web3(provider)
    tx_hash = w3.eth.send_transaction({"from": w3.eth.accounts[0], "data": PROBE["bytecode"]})
    probe = w3.eth.wait_for_transaction_receipt(tx_hash)["contractAddress"]
    assert probe is not None
    return provider, str(probe)


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[tuple[InProcessSigner, str]]:
    provider, probe = embedded_chain()
    env = signer_env(f"sqlite:///{tmp_path}/signer.db", [Account.create()], probe, "inprocess://")
    with inprocess_signer(env, provider=provider) as running:
        yield running, probe


def refused(call: Any) -> SignerError:
    with pytest.raises(SignerError) as caught:
        call()
    return caught.value


def test_bad_input_is_invalid_argument_naming_the_field(
    embedded: tuple[InProcessSigner, str],
) -> None:
    running, probe = embedded
    unnamed = [
        {
            "type": "function",
            "name": "bump",
            "stateMutability": "nonpayable",
            "inputs": [
                {
                    "name": "t",
                    "type": "tuple",
                    "components": [{"type": "uint256"}, {"type": "bytes32"}],
                }
            ],
        }
    ]
    malformed = [{**unnamed[0], "inputs": [{"name": "x", "type": "uint256["}]}]
    typed: dict[str, Any] = {
        "types": {
            "EIP712Domain": [{"name": "name", "type": "string"}],
            "Open": [{"name": "max", "type": "uint8"}],
        },
        "primaryType": "Open",
        "domain": {"name": "chargenet"},
        "message": {"max": 1000},
    }
    with SignerClient(running.url, TOKEN, retry_for=0) as client:
        cases = {
            "json_args[0] (t)": lambda: client.send_transaction(
                "u1", "k0", "bump", [{"amount": 1, "tag": TAG}], address=probe, abi=unnamed
            ),
            "json_args[0] (amount)": lambda: client.send_transaction(
                "u2", "k0", "bump", ["9" * 5000, TAG], contract="Probe"
            ),
            "abi_encoded_args": lambda: client.send_transaction(
                "u3", "k0", "bump", address=probe, abi=malformed, encoded_args=bytes(32)
            ),
            "typed_data_json": lambda: client.sign_typed_data("k0", typed),
            "typed_data_json.types": lambda: client.sign_typed_data("k0", {**typed, "types": 5}),
            # Quoted in the reason, a long value must not push the status past gRPC's limit.
            "contract_address": lambda: client.send_transaction(
                "u5", "k0", "bump", [1, TAG], address="0x" + "z" * 20_000, abi=unnamed
            ),
        }
        for field, call in cases.items():
            error = refused(call)
            assert error.code is grpc.StatusCode.INVALID_ARGUMENT, (field, error)
            assert error.detail.startswith(f"{field}: "), error.detail
    # A JSON number too long for Python's int(): the client would not write one.
    with grpc.insecure_channel(running.url) as channel:
        stub = signer_pb2_grpc.SignerServiceStub(channel)  # type: ignore[no-untyped-call]
        request = pb.SendTransactionRequest(
            idempotency_key="u4",
            from_key="k0",
            function="bump",
            contract_name="Probe",
            json_args=f'[{"9" * 5000}, "0x{TAG.hex()}"]',
        )
        with pytest.raises(grpc.RpcError) as caught:
            stub.SendTransaction(request, metadata=(("authorization", f"Bearer {TOKEN}"),))
        assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert caught.value.details().startswith("json_args: ")


def test_a_database_that_does_not_answer_is_unavailable(
    postgres_url: str, postgres_database: str
) -> None:
    provider, probe = embedded_chain()
    env = signer_env(postgres_database, [Account.create()], probe, "inprocess://")
    name = sa.make_url(postgres_database).database
    admin = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with (
        inprocess_signer(env, provider=provider) as running,
        SignerClient(running.url, TOKEN, retry_for=0) as client,
    ):
        sent = client.send_transaction("d1", "k0", "bump", [1, TAG], contract="Probe")
        assert client.wait(["d1"])["d1"].status in (TxStatus.MINED, TxStatus.FINAL)
        with admin.connect() as connection:
            connection.execute(sa.text(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false'))
            connection.execute(
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = :name AND pid <> pg_backend_pid()"
                ),
                {"name": name},
            )
        try:
            calls = {
                "GetTransaction": lambda: client.get_transaction(idempotency_key="d1"),
                "GetTransaction by hash": lambda: client.get_transaction(tx_hash=sent.tx_hash),
                "WatchTransactions": lambda: list(client.watch(["d1"])),
                "SendTransaction": lambda: client.send_transaction(
                    "d2", "k0", "bump", [1, TAG], contract="Probe"
                ),
            }
            for what, call in calls.items():
                error = refused(call)
                assert error.code is grpc.StatusCode.UNAVAILABLE, (what, error)
        finally:
            with admin.connect() as connection:
                connection.execute(sa.text(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true'))
            admin.dispose()


def _request(key: str, address: str) -> Request:
    return Request(
        caller="escrow",
        idempotency_key=key,
        fingerprint="f" * 64,
        from_key="k0",
        from_address=address,
        to_address=address,
        function="Probe.bump(uint256,bytes32)",
        data=b"\x01",
        value_wei=0,
        gas_limit=50_000,
    )


@pytest.mark.parametrize("insert", ["insert_refused", "insert_batch"])
def test_a_key_another_replica_stored_meanwhile_answers_with_its_record(
    postgres_database: str, insert: str
) -> None:
    """Replica B looks the key up before replica A's insert commits, so its own insert meets
    the unique key: B answers with A's record, as a later repeat would."""
    address = Account.create().address
    db = Database(postgres_database)
    upgrade_to_head(db, VERSIONS)
    store = SignerStore(db)
    other = Database(postgres_database)  # replica A, with connections of its own
    request = _request("raced", address)
    try:
        with db.session() as session:
            session.add(AccountRow(address=address, next_nonce=0))
        outcome: list[Any] = []

        def replica_b() -> None:
            try:
                if insert == "insert_refused":
                    outcome.append(store.insert_refused(request, "reverted", None))
                else:

                    def sign(_: Request, nonce: int) -> Attempt:
                        return Attempt(f"0x{nonce:064x}", b"\x02", 2, 1)

                    ((record, created),) = store.insert_batch(address, [request], sign)
                    assert not created
                    outcome.append(record)
            except BaseException as error:
                outcome.append(error)

        with other.session() as session:
            now = utcnow()
            session.execute(
                sa.insert(TransactionRow).values(
                    caller=request.caller,
                    idempotency_key=request.idempotency_key,
                    fingerprint=request.fingerprint,
                    from_key=request.from_key,
                    from_address=address,
                    to_address=address,
                    function=request.function,
                    data=request.data,
                    value_wei="0",
                    gas_limit=request.gas_limit,
                    nonce=None,
                    status="FAILED",
                    revert_reason="reverted",
                    created_at=now,
                    updated_at=now,
                )
            )
            thread = threading.Thread(target=replica_b)
            thread.start()
            # B's insert waits on A's uncommitted row; A commits when the session ends.
            deadline = time.monotonic() + 10
            while not _waiting_on_a_lock(other) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert _waiting_on_a_lock(other), "replica B never reached its insert"
        thread.join(timeout=30)
        (answer,) = outcome
        assert not isinstance(answer, BaseException), repr(answer)
        assert answer.idempotency_key == "raced" and answer.revert_reason == "reverted"
        assert answer.nonce is None
    finally:
        other.dispose()
        db.dispose()


def _waiting_on_a_lock(db: Database) -> bool:
    with db.engine.connect() as connection:
        waiting = connection.scalar(
            sa.text(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
        )
    return bool(waiting)
