"""Connecting to a chain: py-evm in process, or an Ethereum JSON-RPC node over HTTP."""

from __future__ import annotations

import requests
from eth_typing import ChecksumAddress
from web3 import EthereumTesterProvider, HTTPProvider, Web3
from web3.providers.rpc.utils import ExceptionRetryConfiguration

IN_PROCESS = "inprocess://eth-tester"

#: Calls sent again when their connection failed. A node closes a pooled connection once it has
#: been idle for its keep-alive timeout (Hardhat's Node.js server: 5 s), and a request sent on it
#: at that moment fails unanswered (``RemoteDisconnected``, seen as 500s under load). web3's own
#: default lists only the builtin ConnectionError, which requests' is not, and retries timeouts,
#: which only multiplies the wait for a node that hangs. Only the methods of web3's allowlist are
#: sent again: reads, and signed transactions (the same bytes are the same transaction, which a
#: node accepts once). ``eth_sendTransaction``, which the node signs with its next nonce, never is.
RETRIES = ExceptionRetryConfiguration(
    errors=(ConnectionError, requests.ConnectionError),
    retries=3,
    backoff_factor=0.05,
)


def connect(rpc_url: str, *, timeout: float = 30.0) -> Web3:
    """A Web3 for ``inprocess://eth-tester`` (a fresh py-evm chain) or an ``http(s)://`` node.

    An HTTP node is asked for its chain id once, so a wrong URL fails here rather than later.
    """
    if rpc_url == IN_PROCESS:
        return Web3(EthereumTesterProvider())
    if rpc_url.startswith(("http://", "https://")):
        w3 = Web3(
            HTTPProvider(
                rpc_url,
                request_kwargs={"timeout": timeout},
                exception_retry_configuration=RETRIES,
            )
        )
        try:
            w3.eth.chain_id  # noqa: B018 - a cheap call that proves the node answers
        except Exception as exc:
            raise ConnectionError(f"no Ethereum JSON-RPC node answers at {rpc_url}: {exc}") from exc
        return w3
    raise ValueError(
        f"unsupported chain URL {rpc_url!r}: use {IN_PROCESS!r} or an http(s):// JSON-RPC URL"
    )


def richest_account(w3: Web3) -> ChecksumAddress:
    """The node's unlocked account with the most ether (development nodes only).

    A long-lived development node serves many stacks and test runs; drawing every deployment and
    key funding from the first account emptied it.
    """
    return max(w3.eth.accounts, key=w3.eth.get_balance)
