"""A caller's malformed request is refused at the RPC boundary with INVALID_ARGUMENT naming the
field, before anything is stored or sent; the signer keeps serving (found by an audit)."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import pytest
from web3 import Web3

from chargenet.core.http import limit_recursion
from chargenet.core.signer_client._generated import signer_pb2 as pb
from chargenet.core.signer_client._generated import signer_pb2_grpc
from tests.signer.harness import PROBE, TOKEN, fresh_keys, inprocess_signer, signer_env

pytestmark = pytest.mark.hardhat
TAG = "0x" + "07" * 32
BUMP: dict[str, Any] = next(f for f in PROBE["abi"] if f.get("name") == "bump")
METADATA = (("authorization", f"Bearer {TOKEN}"),)


@pytest.fixture
def stub(w3: Web3, probe: str, rpc_url: str, postgres_database: str) -> Iterator[tuple[Any, str]]:
    """A signer on PostgreSQL and the Hardhat node, and a raw stub (the client would refuse
    some of these requests itself)."""
    env = signer_env(postgres_database, fresh_keys(w3, 1), probe, rpc_url)
    with inprocess_signer(env) as running, grpc.insecure_channel(running.url) as channel:
        yield signer_pb2_grpc.SignerServiceStub(channel), probe  # type: ignore[no-untyped-call]


def send(stub: Any, **fields: Any) -> pb.SendTransactionResponse:
    request: dict[str, Any] = {
        "idempotency_key": f"bad-{time.monotonic_ns()}",
        "from_key": "k0",
        "contract_name": "Probe",
        "function": "bump",
        "json_args": json.dumps([1, TAG]),
    }
    request.update(fields)
    answer: pb.SendTransactionResponse = stub.SendTransaction(
        pb.SendTransactionRequest(**request), metadata=METADATA, timeout=20
    )
    return answer


def adhoc(probe: str, fragment: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """Fields calling the probe by address with the caller's own ABI fragment."""
    return {
        "contract_name": None,
        "contract_address": probe,
        "abi_json": json.dumps([fragment]),
        "function": fragment["name"],
        **fields,
    }


def refused(stub: Any, **fields: Any) -> grpc.RpcError:
    fields = {k: v for k, v in fields.items() if v is not None}
    with pytest.raises(grpc.RpcError) as caught:
        send(stub, **fields)
    return caught.value


def assert_invalid(error: grpc.RpcError, field: str) -> None:
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT, (error.code(), error.details())
    assert error.details().startswith(f"{field}: "), error.details()


def assert_still_sends(stub: Any) -> None:
    answer = send(stub)
    assert answer.created and answer.transaction.tx_hash


def test_a_gas_limit_outside_what_a_transaction_can_use_is_invalid_argument(
    stub: tuple[Any, str],
) -> None:
    """Past BIGINT the insert failed (UNKNOWN: bigint out of range); below 21,000 gas, the
    intrinsic cost of any transaction, it was signed, stored and refused by the node."""
    client, _ = stub
    for gas in (2**63, 2**64 - 1, 1, 20_999):
        assert_invalid(refused(client, gas_limit=gas), "gas_limit")
    assert_still_sends(client)


def test_a_value_past_uint256_is_invalid_argument(stub: tuple[Any, str]) -> None:
    """78 digits passed the pattern: estimated, the node's refusal came back as UNAVAILABLE (which
    the client retries); with a gas limit it was signed and stored, a nonce no node accepts."""
    client, probe = stub
    payable = {**BUMP, "stateMutability": "payable"}
    for gas in (0, 100_000):
        for value in (2**256, 10**78 - 1):
            error = refused(client, **adhoc(probe, payable, value_wei=str(value), gas_limit=gas))
            assert_invalid(error, "value_wei")
    assert_still_sends(client)


@pytest.fixture
def serving_recursion_limit() -> Iterator[None]:
    """The recursion limit of a serving process (its main sets it; py_ecc raised it to 100,000)."""
    before = sys.getrecursionlimit()
    limit_recursion()
    try:
        yield
    finally:
        sys.setrecursionlimit(before)


def nested(levels: int) -> dict[str, Any]:
    """An ABI input: a uint256 in a tuple in a tuple ... ``levels`` deep."""
    item: dict[str, Any] = {"name": "a", "type": "uint256"}
    for _ in range(levels):
        item = {"name": "t", "type": "tuple", "components": [item]}
    return item


@pytest.mark.usefixtures("serving_recursion_limit")
def test_input_types_that_cannot_be_encoded_are_invalid_argument_at_once(
    stub: tuple[Any, str],
) -> None:
    """The caller's ABI names the types: a 5,000-digit size was UNKNOWN (int() refused it), a
    tuple nested 1,500 deep UNKNOWN (RecursionError), 3,000 array dimensions held the event loop
    for a minute, and uint99999999999999 computed 2**(10**14) forever."""
    client, probe = stub
    deep_tuple = nested(1500)
    cases: list[tuple[dict[str, Any], list[Any], str]] = [
        ({"name": "a", "type": "uint" + "9" * 5000}, [1], ""),
        ({"name": "a", "type": "uint99999999999999"}, [1], ""),
        ({"name": "a", "type": "uint256" + "[]" * 3000}, [[]], ""),
        (deep_tuple, [[1]], "abi_json"),
        (nested(40), [[1]], ""),
    ]
    # The field: the ABI's for one that cannot be read, else the arguments' in use.
    for item, args, field in cases:
        fragment = {**BUMP, "inputs": [item]}
        started = time.monotonic()
        error = refused(client, **adhoc(probe, fragment, json_args=json.dumps(args)))
        assert_invalid(error, field or "json_args")
        error = refused(client, **adhoc(probe, fragment, abi_encoded_args=bytes(32)))
        assert_invalid(error, field or "abi_encoded_args")
        assert time.monotonic() - started < 5
    assert_still_sends(client)


def test_a_function_signature_too_long_to_store_is_invalid_argument(
    stub: tuple[Any, str],
) -> None:
    """The record keeps "<contract>.<signature>" in 300 characters: 40 uint256 inputs made
    PostgreSQL refuse the insert (UNKNOWN: value too long), estimated or not."""
    client, probe = stub
    inputs = [{"name": f"a{i}", "type": "uint256"} for i in range(40)]
    fragment = {**BUMP, "inputs": inputs}
    for gas in (0, 100_000):
        fields = adhoc(probe, fragment, json_args=json.dumps([1] * 40), gas_limit=gas)
        assert_invalid(refused(client, **fields), "function")
    assert_still_sends(client)


def test_a_huge_request_does_not_stall_other_callers(stub: tuple[Any, str]) -> None:
    """Typed data with a million-element array took seconds to encode on the event loop, and
    every other call waited for it; so did json_args of a million integers."""
    client, probe = stub
    typed = {
        "types": {
            "EIP712Domain": [{"name": "name", "type": "string"}],
            "Big": [{"name": "a", "type": "uint256[]"}],
        },
        "primaryType": "Big",
        "domain": {"name": "chargenet"},
        "message": {"a": [1] * 1_000_000},
    }
    array = {**BUMP, "inputs": [{"name": "a", "type": "uint256[]"}]}
    heavy = {
        "SignTypedData": lambda: client.SignTypedData(
            pb.SignTypedDataRequest(from_key="k0", typed_data_json=json.dumps(typed)),
            metadata=METADATA,
            timeout=120,
        ),
        # Encoded (the slow part), then refused for its size: see the test below.
        "SendTransaction": lambda: refused(
            client, **adhoc(probe, array, json_args=json.dumps([[1] * 1_000_000]), gas_limit=10**6)
        ),
    }
    for name, call in heavy.items():
        with ThreadPoolExecutor(1) as pool:
            started = time.monotonic()
            running = pool.submit(call)
            time.sleep(0.3)  # the heavy request is being worked on
            waited = time.monotonic()
            client.ListKeys(pb.ListKeysRequest(), metadata=METADATA, timeout=60)
            answered = time.monotonic() - waited
            running.result()
        assert answered < 1.0, (name, answered, time.monotonic() - started)


def test_call_data_larger_than_nodes_take_is_invalid_argument(stub: tuple[Any, str]) -> None:
    """32 MB of call data was stored, signed and sent, and the node refused it; the request's
    socket then stayed open with the unsent rest (39 MB) until the node timed it out."""
    client, probe = stub
    array = {**BUMP, "inputs": [{"name": "a", "type": "uint256[]"}]}
    fits = json.dumps([[1] * 3_000])  # 96 KB of call data
    too_big = json.dumps([[1] * 4_000])  # 128 KB
    error = refused(client, **adhoc(probe, array, json_args=too_big, gas_limit=10**6))
    assert_invalid(error, "json_args")
    assert "at most 120000 are sent" in (error.details() or "")
    assert send(client, **adhoc(probe, array, json_args=fits, gas_limit=5 * 10**6)).created
    assert_still_sends(client)
