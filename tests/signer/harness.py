"""Helpers for the signer's tests and bench: a chain to deploy on, keys, a running signer."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.contract import Contract
from web3.types import RPCEndpoint, TxParams

from chargenet.cli.network.embedded import LoopThread
from chargenet.signer.app import SignerApp
from chargenet.signer.settings import DEVELOPMENT_MNEMONIC, SignerSettings

FIXTURES = Path(__file__).parent / "fixtures"
PROBE = json.loads((FIXTURES / "SignerProbe.json").read_text())
REPO = Path(__file__).resolve().parents[2]

Account.enable_unaudited_hdwallet_features()


def rpc_url() -> str | None:
    return os.environ.get("CHARGENET_TEST_RPC_URL")


def funder() -> LocalAccount:
    """Hardhat's last funded development account: the tests' bank and deployer."""
    account: LocalAccount = Account.from_mnemonic(
        DEVELOPMENT_MNEMONIC, account_path="m/44'/60'/0'/0/19"
    )
    return account


_bank_lock = threading.Lock()


def send_from(w3: Web3, account: LocalAccount, tx: dict[str, Any]) -> dict[str, Any]:
    """Send one transaction the plain web3 way and wait for its receipt."""
    with _bank_lock:
        tx = {
            "chainId": w3.eth.chain_id,
            "nonce": w3.eth.get_transaction_count(account.address, "pending"),
            **tx,
        }
        if "gas" not in tx:
            estimate = {k: v for k, v in tx.items() if k != "nonce"} | {"from": account.address}
            tx["gas"] = w3.eth.estimate_gas(cast(TxParams, estimate))
        if "maxFeePerGas" not in tx:
            base = w3.eth.get_block("latest")["baseFeePerGas"]
            tx["maxFeePerGas"] = 2 * base + 10**9
            tx["maxPriorityFeePerGas"] = 10**9
        tx_hash = w3.eth.send_raw_transaction(account.sign_transaction(tx).raw_transaction)
    return dict(w3.eth.wait_for_transaction_receipt(tx_hash, timeout=60))


def probe_contract(w3: Web3, address: str) -> Contract:
    return w3.eth.contract(address=Web3.to_checksum_address(address), abi=PROBE["abi"])


def rpc(w3: Web3, method: str, *params: Any) -> Any:
    """A node-specific call (evm_mine, hardhat_...), answered or raised."""
    answer = w3.provider.make_request(RPCEndpoint(method), list(params))
    if "error" in answer:
        raise RuntimeError(f"{method}: {answer['error']}")
    return answer.get("result")


def deploy_probe(w3: Web3) -> str:
    receipt = send_from(w3, funder(), {"data": PROBE["bytecode"], "value": 0})
    return str(receipt["contractAddress"])


def fresh_keys(w3: Web3, count: int, ether: int = 10) -> list[LocalAccount]:
    """New random keys, funded, so every test starts from nonce 0 on a shared node."""
    accounts = [Account.from_key(secrets.token_bytes(32)) for _ in range(count)]
    for account in accounts:
        send_from(w3, funder(), {"to": account.address, "value": ether * 10**18})
    return accounts


TOKEN = "test-token-escrow-0123456789"
OTHER_TOKEN = "test-token-wallet-0123456789"


def callers_json(probe_name: str = "Probe") -> str:
    return json.dumps(
        {
            "escrow": {
                "token": TOKEN,
                "keys": ["k*", "hd/*"],
                "functions": [f"{probe_name}.bump", "0x*.bump", "ChargeToken.*"],
                "sign_typed_data": True,
            },
            "wallet": {"token": OTHER_TOKEN, "keys": ["k0"], "functions": []},
        }
    )


def signer_env(
    database_url: str,
    keys: list[LocalAccount],
    probe_address: str,
    chain_url: str,
    contracts: dict[str, Any] | None = None,
    **extra: str,
) -> dict[str, str]:
    env = {
        "CHARGENET_DATABASE_URL": database_url,
        "CHARGENET_CHAIN_RPC_URL": chain_url,
        "CHARGENET_SIGNER_LISTEN": "127.0.0.1:0",
        "CHARGENET_HTTP_PORT": "0",
        "CHARGENET_SIGNER_KEYS": ",".join(
            f"k{i}=0x{bytes(k.key).hex()}" for i, k in enumerate(keys)
        ),
        "CHARGENET_SIGNER_CALLERS": callers_json(),
        "CHARGENET_SIGNER_CONTRACTS": json.dumps(
            {"Probe": {"address": probe_address, "abi": PROBE["abi"]}, **(contracts or {})}
        ),
        "CHARGENET_SIGNER_CONFIRMATIONS": "1",
        "CHARGENET_SIGNER_POLL_SECONDS": "0.1",
        "CHARGENET_LOG_LEVEL": "WARNING",
    }
    env.update(extra)
    return env


@dataclass
class InProcessSigner:
    """A SignerApp on its own event loop thread, as a test's server."""

    app: SignerApp

    @property
    def url(self) -> str:
        return f"127.0.0.1:{self.app.port}"


@contextmanager
def running_signer(settings: SignerSettings, provider: Any = None) -> Iterator[InProcessSigner]:
    """Serve a SignerApp on its own loop thread; stop it and close the loop afterwards."""
    app = SignerApp(settings, provider=provider)
    loop = LoopThread("signer-loop")
    try:
        loop.run(app.start())
        try:
            yield InProcessSigner(app)
        finally:
            loop.run(app.stop(0.5), timeout=30)
    finally:
        loop.close()


@contextmanager
def inprocess_signer(env: dict[str, str], provider: Any = None) -> Iterator[InProcessSigner]:
    fields: dict[str, Any] = {k.removeprefix("CHARGENET_").lower(): v for k, v in env.items()}
    with running_signer(SignerSettings(**fields), provider) as running:
        yield running


class SignerProcess:
    """``python -m chargenet.signer.main`` as a child process (so it can be SIGKILLed)."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env = env
        self.log_path = log_path
        self.proc: subprocess.Popen[str] | None = None
        self.port = 0

    def start(self, port: int = 0) -> int:
        env = {**os.environ, **self.env, "CHARGENET_SIGNER_LISTEN": f"127.0.0.1:{port}"}
        self._release()
        with self.log_path.open("a") as log:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "chargenet.signer.main"],
                env=env,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                cwd=REPO,
            )
        assert self.proc.stdout is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if line.startswith("signer ready on port "):
                self.port = int(line.rsplit(" ", 1)[1])
                return self.port
            if not line and self.proc.poll() is not None:
                break
        raise RuntimeError(f"signer did not start; see {self.log_path}")

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self._release()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._release()

    def _release(self) -> None:
        """Close the pipe of a process that has exited (a restart opens a new one)."""
        if self.proc is not None and self.proc.poll() is not None and self.proc.stdout:
            self.proc.stdout.close()
