"""Raw JSON-RPC reads: several calls in one HTTP request to the node.

A read through web3's contract functions costs more CPU in this process (argument checks,
middleware, ABI handling per call) than the node spends answering it, and each is its own round
trip. Services on a hot path send raw calls instead, in one batch, and decode what they need.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

import urllib3
from web3 import HTTPProvider, Web3
from web3.types import RPCEndpoint

from chargenet.core.errors import DependencyUnavailable


class ChainReadError(RuntimeError):
    """The node answered a read with an error, or did not answer (``NodeUnreachable``)."""


class NodeUnreachable(ChainReadError, DependencyUnavailable):
    """The node did not answer: worth waiting for, unlike an error it answered."""


def selector(signature: str) -> str:
    """The 4-byte function selector of ``name(types)``, 0x-hex."""
    return "0x" + Web3.keccak(text=signature)[:4].hex()


def abi_type(arg: dict[str, Any]) -> str:
    """The canonical type of one ABI input or output (tuples spelled out)."""
    kind = str(arg["type"])
    if kind.startswith("tuple"):
        inner = ",".join(abi_type(c) for c in arg["components"])
        return f"({inner}){kind[5:]}"
    return kind


def batches(w3: Web3) -> bool:
    """Whether ``answers`` sends one HTTP request (a node); otherwise each call is its own."""
    return isinstance(w3.provider, HTTPProvider)


#: The raw batches' HTTP client, one per process: urllib3 itself. requests (web3's client, on top
#: of urllib3) spent some 0.6 ms of CPU a call merging settings from the process environment and
#: running protocol checks, as much again as the call costs without them (some 10 % of the
#: wallet's CPU in a burst of session requests). A read is safe to send again, so one on a pooled
#: connection the node closed after its idle timeout (Hardhat's Node.js server: 5 s) is retried.
_HTTP = urllib3.PoolManager(
    maxsize=16, retries=urllib3.Retry(total=2, connect=2, read=1, status=0, allowed_methods=None)
)
_IDS = itertools.count(1)


def answers(w3: Web3, calls: list[tuple[str, list[Any]]]) -> list[dict[str, Any]]:
    """Each call's answer (``{"result": ...}`` or ``{"error": {...}}``), in order, from one HTTP
    request. Only for a node (``batches``): the in-process chain raises instead of answering."""
    provider = w3.provider
    if not isinstance(provider, HTTPProvider):
        raise TypeError("raw JSON-RPC batches need a node (an HTTP provider)")
    ids = [next(_IDS) for _ in calls]
    body = [
        {"jsonrpc": "2.0", "id": ident, "method": method, "params": params}
        for ident, (method, params) in zip(ids, calls, strict=True)
    ]
    try:
        response = _HTTP.request(
            "POST",
            str(provider.endpoint_uri),
            body=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            timeout=dict(provider.get_request_kwargs()).get("timeout", 30.0),
        )
    except urllib3.exceptions.HTTPError as error:
        raise NodeUnreachable(f"the node did not answer: {error}") from error
    try:
        replies = json.loads(response.data)
    except ValueError as error:
        raise NodeUnreachable(f"the node answered HTTP {response.status}, not JSON") from error
    if not isinstance(replies, list):  # the node refused the batch as a whole
        raise ChainReadError(f"the node refused {[m for m, _ in calls]}: {replies}")
    by_id = {reply.get("id"): reply for reply in replies if isinstance(reply, dict)}
    missing = {"error": {"code": -32603, "message": "no answer in the node's batch"}}
    return [dict(by_id.get(ident, missing)) for ident in ids]


def results(w3: Web3, calls: list[tuple[str, list[Any]]]) -> list[Any]:
    """The results of raw JSON-RPC calls: one HTTP request to a node, in order in process."""
    if not batches(w3):
        return [w3.manager.request_blocking(RPCEndpoint(m), p) for m, p in calls]
    out = []
    for (method, _), answer in zip(calls, answers(w3, calls), strict=True):
        if "error" in answer or "result" not in answer:
            raise ChainReadError(f"{method} failed: {answer.get('error')}")
        out.append(answer["result"])
    return out


def is_revert_answer(answer: dict[str, Any]) -> bool:
    """An ``eth_call`` the contract reverted (Hardhat: ``reverted with ...``; geth: code 3)."""
    error = answer.get("error")
    if not isinstance(error, dict):
        return False
    return error.get("code") == 3 or "revert" in str(error.get("message", "")).lower()
