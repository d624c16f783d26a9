"""Compiled contract artifacts committed beside this module (written by contracts/compile.js)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

ARTIFACTS_DIR = Path(__file__).resolve().parent / "compiled"
# The source folders compile.js feeds to solc, relative to contracts/.
SOURCE_DIRS = ("src", "baseline")


@dataclass(frozen=True)
class Artifact:
    """ABI and bytecode of one compiled contract."""

    name: str
    abi: list[dict[str, Any]]
    bytecode: str
    deployed_bytecode: str
    source_hash: str
    compiler_version: str
    storage_layout: dict[str, Any]


@cache
def load_artifact(name: str) -> Artifact:
    """Loads the artifact of contract ``name`` (e.g. ``"ChargingEscrow"``)."""
    path = ARTIFACTS_DIR / f"{name}.json"
    if not path.is_file():
        known = sorted(p.stem for p in ARTIFACTS_DIR.glob("*.json"))
        raise LookupError(f"no artifact for contract {name!r}; known: {', '.join(known)}")
    raw = json.loads(path.read_text(encoding="utf-8"))
    return Artifact(
        name=raw["contractName"],
        abi=raw["abi"],
        bytecode=raw["bytecode"],
        deployed_bytecode=raw["deployedBytecode"],
        source_hash=raw["sourceHash"],
        compiler_version=raw["compiler"]["version"],
        storage_layout=raw["storageLayout"],
    )


def artifact_names() -> list[str]:
    return sorted(p.stem for p in ARTIFACTS_DIR.glob("*.json"))


def source_hash(contracts_dir: Path) -> str:
    """Recomputes the hash compile.js stores in every artifact, from the files alone.

    sha256 over ``solc <locked version>\\0``, the raw bytes of solc-settings.json, ``\\0``, then
    for every ``.sol`` file (sorted by relative path) ``path\\0content\\0``.
    """
    lock = json.loads((contracts_dir / "package-lock.json").read_text(encoding="utf-8"))
    version = lock["packages"]["node_modules/solc"]["version"]
    digest = hashlib.sha256(f"solc {version}\0".encode())
    digest.update((contracts_dir / "solc-settings.json").read_bytes())
    digest.update(b"\0")
    sources = sorted(
        f"{folder}/{path.name}"
        for folder in SOURCE_DIRS
        for path in (contracts_dir / folder).glob("*.sol")
    )
    for rel in sources:
        content = (contracts_dir / rel).read_text(encoding="utf-8")
        digest.update(f"{rel}\0{content}\0".encode())
    return digest.hexdigest()
