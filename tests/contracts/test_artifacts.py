"""The committed artifacts match the sources; compiler settings suit both chains we run on."""

from __future__ import annotations

import json
from pathlib import Path

from chargenet.core.chain import artifact_names, load_artifact, source_hash

CONTRACTS = Path(__file__).resolve().parents[2] / "contracts"


def test_artifacts_are_fresh() -> None:
    expected = source_hash(CONTRACTS)
    names = artifact_names()
    assert {"ChargeToken", "StationRegistry", "ChargingEscrow", "NaiveToken", "NaiveEscrow"} <= set(
        names
    )
    stale = [n for n in names if load_artifact(n).source_hash != expected]
    assert not stale, f"stale artifacts {stale}: run `node contracts/compile.js`"


def test_artifacts_use_the_locked_compiler_and_settings() -> None:
    lock = json.loads((CONTRACTS / "package-lock.json").read_text())
    version = lock["packages"]["node_modules/solc"]["version"]
    package = json.loads((CONTRACTS / "package.json").read_text())
    assert package["dependencies"]["solc"] == version, "solc must be pinned exactly"
    settings = json.loads((CONTRACTS / "solc-settings.json").read_text())
    # py-evm (eth-tester) and the Hardhat node both run cancun; solc 0.8.37 defaults to osaka.
    assert settings["evmVersion"] == "cancun"
    for name in artifact_names():
        artifact = load_artifact(name)
        assert artifact.compiler_version.startswith(f"{version}+")
        assert artifact.bytecode.startswith("0x") and len(artifact.bytecode) > 2


def test_a_session_is_one_storage_word() -> None:
    layout = load_artifact("ChargingEscrow").storage_layout
    sessions = next(s for s in layout["storage"] if s["label"] == "_sessions")
    ring = layout["types"][sessions["type"]]["value"]
    assert layout["types"][ring]["base"] == "t_uint256"  # one packed word per session
    accounts = next(s for s in layout["storage"] if s["label"] == "_accounts")
    account = layout["types"][layout["types"][accounts["type"]]["value"]]
    assert account["numberOfBytes"] == "32"  # balance and nonce share one slot
