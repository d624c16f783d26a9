"""EIP-712 typed data and signatures a driver gives: the escrow's OpenSession and EIP-2612 permits.

Both are signed off chain with the driver's key; a relayer submits them, so the driver needs no
ether. The domain binds every signature to one chain and one contract deployment.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eth_account.messages import encode_typed_data
from eth_utils.address import to_checksum_address

ESCROW_DOMAIN_NAME = "ChargeNet Escrow"
ESCROW_DOMAIN_VERSION = "1"
TOKEN_DOMAIN_VERSION = "1"  # noqa: S105 - the EIP-712 domain version

MAX_NONCE = 2**64 - 1
MAX_AMOUNT = 2**96 - 1
MAX_EXPIRY = 2**40 - 1

_DOMAIN_FIELDS = [
    {"name": "name", "type": "string"},
    {"name": "version", "type": "string"},
    {"name": "chainId", "type": "uint256"},
    {"name": "verifyingContract", "type": "address"},
]
OPEN_SESSION_FIELDS = [
    {"name": "sessionId", "type": "bytes32"},
    {"name": "stationId", "type": "bytes32"},
    {"name": "maximum", "type": "uint96"},
    {"name": "expiry", "type": "uint40"},
    {"name": "nonce", "type": "uint64"},
]
PERMIT_FIELDS = [
    {"name": "owner", "type": "address"},
    {"name": "spender", "type": "address"},
    {"name": "value", "type": "uint256"},
    {"name": "nonce", "type": "uint256"},
    {"name": "deadline", "type": "uint256"},
]


def session_id(driver: str, nonce: int) -> bytes:
    """The escrow's session id of ``driver``'s session number ``nonce``: driver << 96 | nonce."""
    _check_range("nonce", nonce, 1, MAX_NONCE)
    return ((int(to_checksum_address(driver), 16) << 96) | nonce).to_bytes(32, "big")


def parse_session_id(value: bytes) -> tuple[str, int]:
    """Splits a session id into (driver address, nonce); raises ValueError if malformed."""
    if len(value) != 32:
        raise ValueError(f"a session id is 32 bytes, got {len(value)}")
    raw = int.from_bytes(value, "big")
    driver, nonce = raw >> 96, raw & (2**96 - 1)
    if driver == 0 or not 1 <= nonce <= MAX_NONCE:
        raise ValueError(f"malformed session id 0x{value.hex()}")
    return to_checksum_address(driver.to_bytes(20, "big")), nonce


@dataclass(frozen=True)
class OpenAuthorisation:
    """A driver's signed OpenSession, in the escrow's ``OpenRequest`` shape (EIP-2098 r, vs)."""

    session_id: bytes
    station_id: bytes
    maximum: int
    expiry: int
    r: bytes
    vs: bytes

    def as_request(self) -> tuple[bytes, bytes, int, int, bytes, bytes]:
        return (self.session_id, self.station_id, self.maximum, self.expiry, self.r, self.vs)


@dataclass(frozen=True)
class PermitSignature:
    """An EIP-2612 permit signature for a known owner, spender and value."""

    deadline: int
    v: int
    r: bytes
    s: bytes

    def as_args(self) -> tuple[int, int, bytes, bytes]:
        return (self.deadline, self.v, self.r, self.s)


def escrow_domain(chain_id: int, escrow: str) -> dict[str, Any]:
    return {
        "name": ESCROW_DOMAIN_NAME,
        "version": ESCROW_DOMAIN_VERSION,
        "chainId": chain_id,
        "verifyingContract": to_checksum_address(escrow),
    }


def open_session_typed_data(
    *,
    chain_id: int,
    escrow: str,
    session: bytes,
    station_id: bytes,
    maximum: int,
    expiry: int,
) -> dict[str, Any]:
    """The full EIP-712 message a driver signs to let the escrow lock ``maximum``."""
    _, nonce = parse_session_id(session)
    _check_bytes32("station_id", station_id)
    _check_range("maximum", maximum, 1, MAX_AMOUNT)
    _check_range("expiry", expiry, 1, MAX_EXPIRY)
    return {
        "types": {"EIP712Domain": _DOMAIN_FIELDS, "OpenSession": OPEN_SESSION_FIELDS},
        "primaryType": "OpenSession",
        "domain": escrow_domain(chain_id, escrow),
        "message": {
            "sessionId": session,
            "stationId": station_id,
            "maximum": maximum,
            "expiry": expiry,
            "nonce": nonce,
        },
    }


def sign_open_session(
    account: Any,
    *,
    chain_id: int,
    escrow: str,
    nonce: int,
    station_id: bytes,
    maximum: int,
    expiry: int,
) -> OpenAuthorisation:
    """Signs an OpenSession with the driver's ``account`` (an eth_account LocalAccount)."""
    session = session_id(account.address, nonce)
    message = open_session_typed_data(
        chain_id=chain_id,
        escrow=escrow,
        session=session,
        station_id=station_id,
        maximum=maximum,
        expiry=expiry,
    )
    signed = account.sign_message(encode_typed_data(full_message=message))
    # EIP-2098: the y parity rides in the top bit of s, saving a calldata word.
    vs = ((signed.v - 27) << 255) | signed.s
    return OpenAuthorisation(
        session_id=session,
        station_id=station_id,
        maximum=maximum,
        expiry=expiry,
        r=signed.r.to_bytes(32, "big"),
        vs=vs.to_bytes(32, "big"),
    )


def permit_typed_data(
    *,
    chain_id: int,
    token: str,
    token_name: str,
    owner: str,
    spender: str,
    value: int,
    nonce: int,
    deadline: int,
) -> dict[str, Any]:
    """The EIP-2612 ``Permit`` message for ChargeToken (domain version "1")."""
    _check_range("value", value, 0, 2**256 - 1)
    _check_range("nonce", nonce, 0, 2**256 - 1)
    _check_range("deadline", deadline, 0, 2**256 - 1)
    return {
        "types": {"EIP712Domain": _DOMAIN_FIELDS, "Permit": PERMIT_FIELDS},
        "primaryType": "Permit",
        "domain": {
            "name": token_name,
            "version": TOKEN_DOMAIN_VERSION,
            "chainId": chain_id,
            "verifyingContract": to_checksum_address(token),
        },
        "message": {
            "owner": to_checksum_address(owner),
            "spender": to_checksum_address(spender),
            "value": value,
            "nonce": nonce,
            "deadline": deadline,
        },
    }


def sign_permit(
    account: Any,
    *,
    chain_id: int,
    token: str,
    token_name: str,
    spender: str,
    value: int,
    nonce: int,
    deadline: int,
) -> PermitSignature:
    """Signs an EIP-2612 permit with the owner's ``account`` (an eth_account LocalAccount)."""
    message = permit_typed_data(
        chain_id=chain_id,
        token=token,
        token_name=token_name,
        owner=account.address,
        spender=spender,
        value=value,
        nonce=nonce,
        deadline=deadline,
    )
    signed = account.sign_message(encode_typed_data(full_message=message))
    return PermitSignature(
        deadline=deadline,
        v=signed.v,
        r=signed.r.to_bytes(32, "big"),
        s=signed.s.to_bytes(32, "big"),
    )


def _check_range(name: str, value: int, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} must be an integer in [{low}, {high}], got {value!r}")


def _check_bytes32(name: str, value: bytes) -> None:
    if not isinstance(value, bytes) or len(value) != 32:
        raise ValueError(f"{name} must be 32 bytes, got {value!r}")
