"""The signer's pieces on their own: ABI conversion, policy, keys, fees."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from eth_abi.abi import decode as abi_decode
from eth_abi.abi import encode as abi_encode
from eth_account import Account
from pydantic import SecretStr
from web3 import Web3

from chargenet.signer.abi import AbiError, decode_revert, encode_call, parse_abi
from chargenet.signer.fees import FeePolicy
from chargenet.signer.keys import (
    Eip1559,
    KeyConfigurationError,
    KeyError_,
    KeyRing,
    KeySource,
    load_key_ring,
    parse_key_list,
)
from chargenet.signer.policy import Policy, PolicyConfigurationError
from chargenet.signer.settings import DEVELOPMENT_MNEMONIC, SignerSettings
from tests.signer.harness import PROBE

PROBE_ADDRESS = "0x" + "ab" * 20
#: Hardhat's account #0 for the development mnemonic at m/44'/60'/0'/0/0.
HARDHAT_0 = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"


def test_json_args_encode_like_eth_abi() -> None:
    function = parse_abi(PROBE["abi"], "Probe", PROBE_ADDRESS).function("bump")
    data = encode_call(function, json_args=json.dumps(["7", "0x" + "11" * 32]), encoded=None)
    assert data[:4] == function.selector
    assert abi_decode(["uint256", "bytes32"], data[4:]) == (7, b"\x11" * 32)


@pytest.mark.parametrize(
    ("args", "field"),
    [
        ('[1.5, "0x' + "11" * 32 + '"]', "json_args[0] (amount)"),
        ('[-1, "0x' + "11" * 32 + '"]', "json_args[0] (amount)"),
        ('[true, "0x' + "11" * 32 + '"]', "json_args[0] (amount)"),
        ('[1, "0x11"]', "json_args[1] (tag)"),
        ('[1, "nothex"]', "json_args[1] (tag)"),
        ("[1]", "json_args"),
        ("{", "json_args"),
        ('{"amount": 1}', "json_args"),
        ('["' + "9" * 5000 + '", "0x' + "11" * 32 + '"]', "json_args[0] (amount)"),
        ("[" + "9" * 5000 + ', "0x' + "11" * 32 + '"]', "json_args"),
        ('["-' + "0" * 5000 + '1", "0x' + "11" * 32 + '"]', "json_args[0] (amount)"),
    ],
)
def test_bad_json_args_name_the_argument(args: str, field: str) -> None:
    function = parse_abi(PROBE["abi"], "Probe", PROBE_ADDRESS).function("bump")
    with pytest.raises(AbiError) as caught:
        encode_call(function, json_args=args, encoded=None)
    assert caught.value.field == field


def test_a_tuple_without_component_names_takes_an_array_only() -> None:
    inputs = [{"name": "t", "type": "tuple", "components": [{"type": "uint256"}]}]
    function = parse_abi([{"name": "f", "inputs": inputs}], "X", PROBE_ADDRESS).function("f")
    assert encode_call(function, json_args="[[1]]", encoded=None)[4:] == abi_encode(
        ["(uint256)"], [(1,)]
    )
    with pytest.raises(AbiError, match="no names") as caught:
        encode_call(function, json_args='[{"a": 1}]', encoded=None)
    assert caught.value.field == "json_args[0] (t)"


def test_encoded_args_are_checked_by_decoding() -> None:
    function = parse_abi(PROBE["abi"], "Probe", PROBE_ADDRESS).function("bump")
    good = abi_encode(["uint256", "bytes32"], [3, b"\x01" * 32])
    assert encode_call(function, json_args=None, encoded=good) == function.selector + good
    with pytest.raises(AbiError) as caught:
        encode_call(function, json_args=None, encoded=good[:40])
    assert caught.value.field == "abi_encoded_args"


def test_functions_resolve_by_name_and_refuse_views() -> None:
    contract = parse_abi(PROBE["abi"], "Probe", PROBE_ADDRESS)
    assert contract.function("bump(uint256, bytes32)").name == "bump"
    with pytest.raises(AbiError, match="no function"):
        contract.function("burn")
    with pytest.raises(AbiError, match="view"):
        contract.function("total")


def test_revert_data_decodes_reasons_panics_and_custom_errors() -> None:
    contract = parse_abi(PROBE["abi"], "Probe", PROBE_ADDRESS)
    reason = bytes.fromhex("08c379a0") + abi_encode(["string"], ["no"])
    assert decode_revert(reason) == "no"
    assert decode_revert(bytes.fromhex("4e487b71") + abi_encode(["uint256"], [0x11])) == (
        "panic 0x11"
    )
    (selector,) = contract.errors
    custom = selector + abi_encode(["uint256", "uint256"], [5000, 1000])
    assert decode_revert(custom, contract.errors) == "TooLarge(5000, 1000)"
    assert decode_revert(b"") == "reverted without a reason"


def test_policy_authenticates_and_scopes() -> None:
    policy = Policy.from_json(
        json.dumps(
            {
                "escrow": {"token": "e" * 20, "keys": ["operator", "hd/*"], "functions": ["Esc.*"]},
                "wallet": {"token": "w" * 20, "keys": ["hd/*"], "functions": []},
            }
        )
    )
    escrow = policy.authenticate("e" * 20)
    assert escrow is not None and escrow.name == "escrow"
    assert policy.authenticate("e" * 19) is None
    assert policy.authenticate("") is None
    assert escrow.may_use_key("hd/12") and not escrow.may_use_key("treasury")
    assert escrow.may_call("Esc", "settle") and not escrow.may_call("Token", "transfer")
    wallet = policy.authenticate("w" * 20)
    assert wallet is not None and not wallet.may_call("Esc", "settle")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{", "not valid JSON"),
        ('{"a": {"token": "short"}}', "at least 16"),
        ('{"a": {"token": "' + "x" * 16 + '", "keys": "all"}}', "list of patterns"),
        ('{"a": {"token": "' + "x" * 16 + '", "role": "admin"}}', "unknown fields"),
        ("{}", "at least one caller"),
    ],
)
def test_policy_configuration_errors(text: str, message: str) -> None:
    with pytest.raises(PolicyConfigurationError, match=message):
        Policy.from_json(text)


def test_hd_keys_follow_bip44_and_are_derived_once() -> None:
    ring = KeyRing(hd_mnemonic=DEVELOPMENT_MNEMONIC)
    key = ring.get("hd/0")
    assert key.address == HARDHAT_0 and key.source is KeySource.HD
    assert ring.get("hd/0") is key
    assert ring.get("hd/7").address != key.address
    with pytest.raises(KeyError_):
        ring.get("operator")


def test_on_demand_hd_keys_are_bounded_and_re_derived_alike() -> None:
    # A caller allowed hd/* names any of 2**31 indexes: what it makes the ring derive must
    # not stay in memory for good.
    settings = SignerSettings(signer_hd_preload=2, signer_hd_cache_size=8)
    ring = load_key_ring(settings)
    first = ring.get("hd/100").address
    for index in range(100, 150):
        ring.get(f"hd/{index}")
    assert len(ring.all()) == 2
    assert ring.derived_cached == 8
    # Evicted long ago, derived again: the same account, so its lane and nonces are the same.
    assert ring.get("hd/100").address == first
    assert ring.derived_cached == 8
    # Preloaded keys are kept for good, whatever the traffic.
    preloaded = ring.get("hd/0")
    assert preloaded.address == HARDHAT_0 and ring.get("hd/0") is preloaded
    assert ring.by_address(first) is not None and ring.by_address(HARDHAT_0) is preloaded


def test_keys_from_environment_and_keystore(tmp_path: Path) -> None:
    env_key = Account.create()
    stored = Account.create()
    (tmp_path / "treasury.json").write_text(json.dumps(Account.encrypt(stored.key, "pw-123")))
    settings = SignerSettings(
        signer_keys=SecretStr(f"operator=0x{bytes(env_key.key).hex()}"),
        signer_keystore_dir=tmp_path,
        signer_keystore_password=SecretStr("pw-123"),
    )
    ring = load_key_ring(settings)
    assert ring.get("operator").address == env_key.address
    assert ring.get("treasury").address == stored.address
    assert ring.get("treasury").source is KeySource.KEYSTORE
    # The repr of a key names alias and address only.
    assert bytes(stored.key).hex() not in repr(ring.get("treasury"))
    wrong = settings.model_copy(update={"signer_keystore_password": SecretStr("nope-000")})
    with pytest.raises(KeyConfigurationError, match=r"treasury\.json"):
        load_key_ring(wrong)


def test_key_list_errors_never_echo_the_key() -> None:
    secret = "ab" * 31
    with pytest.raises(KeyConfigurationError) as caught:
        list(parse_key_list(f"operator=0x{secret}"))
    assert secret not in str(caught.value) and "operator" in str(caught.value)


def test_fee_bumps_raise_both_fees_and_respect_the_cap() -> None:
    fees = FeePolicy(priority_fee=10**9, cap=100 * 10**9, bump_percent=25)
    max_fee, tip = fees.offer(base_fee=10 * 10**9)
    assert (max_fee, tip) == (21 * 10**9, 10**9)
    bumped = fees.bump(max_fee, tip, base_fee=10 * 10**9)
    assert bumped is not None
    assert bumped[0] >= max_fee * 125 // 100 and bumped[1] >= tip * 125 // 100
    # The base fee jumped: the re-send must clear it.
    assert (fees.bump(max_fee, tip, base_fee=40 * 10**9) or (0, 0))[0] > 80 * 10**9
    assert fees.bump(100 * 10**9, tip, base_fee=10**9) is None


def test_fast_signing_matches_eth_account() -> None:
    ring = KeyRing(hd_mnemonic=DEVELOPMENT_MNEMONIC)
    key = ring.get("hd/3")
    for nonce, value, data in [(0, 0, b""), (7, 10**18, b"\x01" * 68), (2**40, 1, b"\xff")]:
        tx = Eip1559(
            chain_id=31337,
            nonce=nonce,
            max_priority_fee_per_gas=10**9,
            max_fee_per_gas=3 * 10**9 + nonce,
            gas=100_000,
            to=PROBE_ADDRESS,
            value=value,
            data=data,
        )
        reference = key.sign_transaction(
            {
                "type": 2,
                "chainId": tx.chain_id,
                "nonce": tx.nonce,
                "maxPriorityFeePerGas": tx.max_priority_fee_per_gas,
                "maxFeePerGas": tx.max_fee_per_gas,
                "gas": tx.gas,
                "to": Web3.to_checksum_address(tx.to),
                "value": tx.value,
                "data": tx.data,
            }
        )
        assert key.sign_1559(tx) == reference
        assert Account.recover_transaction(reference.raw) == key.address


def test_production_refuses_development_secrets() -> None:
    production: dict[str, Any] = {
        "mode": "production",
        "bus": "kafka",
        "database_url": "postgresql://signer@db/signer",
        "chain_rpc_url": "http://node:8545",
        "signer_token": SecretStr("a-real-token-0123456789"),
    }
    with pytest.raises(ValueError, match="signer_hd_mnemonic"):
        SignerSettings(**production)
    with pytest.raises(ValueError, match="signer_callers"):
        SignerSettings(**production, signer_hd_mnemonic=SecretStr("abandon " * 11 + "about"))
