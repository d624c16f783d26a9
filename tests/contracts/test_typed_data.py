"""The Python side of the EIP-712 messages and session ids: shapes and input checks."""

from __future__ import annotations

from typing import Any

import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils.crypto import keccak

from chargenet.core.chain import (
    IN_PROCESS,
    connect,
    open_session_typed_data,
    parse_session_id,
    permit_typed_data,
    session_id,
    sign_open_session,
)

DRIVER = Account.from_key(keccak(text="typed data driver"))
ESCROW = "0x" + "ab" * 20
STATION = b"S" * 32


def test_session_id_round_trip() -> None:
    sid = session_id(DRIVER.address, 7)
    assert sid[:20] == bytes.fromhex(DRIVER.address[2:]) and sid[-8:] == (7).to_bytes(8, "big")
    assert parse_session_id(sid) == (DRIVER.address, 7)


@pytest.mark.parametrize("nonce", [0, -1, 2**64, True])
def test_session_id_rejects_bad_nonces(nonce: int) -> None:
    with pytest.raises(ValueError, match="nonce"):
        session_id(DRIVER.address, nonce)


@pytest.mark.parametrize(
    "raw",
    [b"\x01" * 31, bytes(32), (int(DRIVER.address, 16) << 96).to_bytes(32, "big")],
)
def test_parse_session_id_rejects_malformed_ids(raw: bytes) -> None:
    with pytest.raises(ValueError, match="session id"):
        parse_session_id(raw)


def _message(*, station_id: bytes = STATION, maximum: int = 5, expiry: int = 10) -> dict[str, Any]:
    return open_session_typed_data(
        chain_id=1,
        escrow=ESCROW,
        session=session_id(DRIVER.address, 1),
        station_id=station_id,
        maximum=maximum,
        expiry=expiry,
    )


def test_open_session_message_checks_its_fields() -> None:
    message = _message()
    assert message["message"]["nonce"] == 1
    assert message["domain"]["name"] == "ChargeNet Escrow"
    with pytest.raises(ValueError, match="maximum"):
        _message(maximum=0)
    with pytest.raises(ValueError, match="maximum"):
        _message(maximum=2**96)
    with pytest.raises(ValueError, match="expiry"):
        _message(expiry=2**40)
    with pytest.raises(ValueError, match="station_id"):
        _message(station_id=b"short")


def test_signature_recovers_to_the_driver() -> None:
    auth = sign_open_session(
        DRIVER, chain_id=5, escrow=ESCROW, nonce=3, station_id=STATION, maximum=9, expiry=99
    )
    vs = int.from_bytes(auth.vs, "big")
    v, s = (vs >> 255) + 27, vs & (2**255 - 1)
    message = open_session_typed_data(
        chain_id=5, escrow=ESCROW, session=auth.session_id, station_id=STATION, maximum=9, expiry=99
    )
    recovered = Account.recover_message(
        encode_typed_data(full_message=message), vrs=(v, auth.r, s.to_bytes(32, "big"))
    )
    assert recovered == DRIVER.address


def test_permit_message_rejects_negative_values() -> None:
    with pytest.raises(ValueError, match="value"):
        permit_typed_data(
            chain_id=1,
            token=ESCROW,
            token_name="ChargeNet Euro",
            owner=DRIVER.address,
            spender=ESCROW,
            value=-1,
            nonce=0,
            deadline=1,
        )


def test_connect_rejects_unknown_urls() -> None:
    with pytest.raises(ValueError, match="unsupported chain URL"):
        connect("ws://127.0.0.1:8546")
    with pytest.raises(ConnectionError, match="no Ethereum JSON-RPC node"):
        connect("http://127.0.0.1:9", timeout=2)
    assert connect(IN_PROCESS).eth.chain_id > 0
