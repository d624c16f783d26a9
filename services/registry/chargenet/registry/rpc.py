"""The indexer's JSON-RPC calls, answered in the wire format on every kind of chain.

An HTTP (or IPC, WebSocket) node is asked raw: web3's per-field result formatters cost more than
the node takes to answer ``eth_getLogs``. The in-process chain (``inprocess://eth-tester``) only
takes Python values, which web3's middleware makes from the hex parameters, and answers with
Python values; those answers are turned back into the wire format (hex strings) here, so the
decoder reads one format whatever the chain.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from web3 import Web3
from web3.exceptions import Web3RPCError
from web3.providers import BaseProvider, JSONBaseProvider
from web3.types import RPCEndpoint


class RpcError(RuntimeError):
    """The node answered a JSON-RPC call with an error (or nothing usable)."""


def to_wire(value: Any) -> Any:
    """A value as JSON-RPC carries it: quantities and bytes as 0x-hex, the rest as they are."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return hex(value)
    if isinstance(value, bytes | bytearray):
        return "0x" + bytes(value).hex()
    if isinstance(value, Mapping):
        return {key: to_wire(item) for key, item in value.items()}
    if isinstance(value, Sequence):
        return [to_wire(item) for item in value]
    raise RpcError(f"unexpected {type(value).__name__} in a JSON-RPC answer")


class ChainReader:
    """The calls the indexer makes, over any web3 provider, answered in the wire format."""

    def __init__(self, w3: Web3) -> None:
        provider = w3.provider
        self._batch: Callable[[list[tuple[RPCEndpoint, Any]]], Any] | None = None
        self._request: Callable[[str, list[Any]], Any]
        if isinstance(provider, JSONBaseProvider):
            # Speaks JSON-RPC on the wire: raw requests, and batches where it has them.
            self._request = self._raw
            self._batch = getattr(provider, "make_batch_request", None)
            self._normalise = False
        elif isinstance(provider, BaseProvider):
            # In process: web3's middleware turns the hex parameters into what it takes.
            self._request = self._formatted
            self._normalise = True
        else:
            # Anything else with ``make_request``: asked raw, its answers normalised in case
            # they come formatted (as wrappers around the in-process chain's do).
            self._request = self._raw
            self._normalise = True
        self._w3 = w3

    def _raw(self, method: str, params: list[Any]) -> Any:
        response = self._w3.provider.make_request(RPCEndpoint(method), params)
        return _result(method, response)

    def _formatted(self, method: str, params: list[Any]) -> Any:
        try:
            return self._w3.manager.request_blocking(RPCEndpoint(method), params)
        except Web3RPCError as error:
            raise RpcError(f"{method}: {error}") from error

    def _call(self, method: str, params: list[Any]) -> Any:
        result = self._request(method, params)
        return to_wire(result) if self._normalise else result

    def head(self) -> int:
        return int(self._call("eth_blockNumber", []), 16)

    def block_hash(self, number: int) -> str | None:
        """The hash of block ``number`` on the node's current chain (None past the head)."""
        return _hash(self._call("eth_getBlockByNumber", [hex(number), False]))

    def block_hashes(self, numbers: Sequence[int]) -> list[str | None]:
        """:meth:`block_hash` of each, in one JSON-RPC batch where the provider has them."""
        return self.logs_and_hashes(None, numbers)[1]

    def logs(
        self, addresses: Sequence[str], topics: Sequence[str], from_block: int, to_block: int
    ) -> list[dict[str, Any]]:
        return _logs(self._call("eth_getLogs", [_filter(addresses, topics, from_block, to_block)]))

    def logs_and_hashes(
        self, query: LogQuery | None, numbers: Sequence[int]
    ) -> tuple[list[dict[str, Any]] | None, list[str | None]]:
        """The logs ``query`` asks for (None without one) and the hashes of blocks ``numbers``,
        in one JSON-RPC round trip where the provider takes batches.

        A node may answer a batch's calls in any order, so a caller must not rely on a hash
        read here being from before or after these logs; only on all of it being from after
        the previous round trip's answers.
        """
        calls: list[tuple[RPCEndpoint, Any]] = []
        if query is not None:
            calls.append((RPCEndpoint("eth_getLogs"), [_filter(*query)]))
        calls += [(RPCEndpoint("eth_getBlockByNumber"), [hex(n), False]) for n in numbers]
        if self._batch is None or len(calls) < 2:
            results = [self._call(method, params) for method, params in calls]
        else:
            answers = self._batch(calls)
            if not isinstance(answers, list) or len(answers) != len(calls):
                raise RpcError(f"batch of {len(calls)} calls: {answers}")
            results = [_result(method, a) for (method, _), a in zip(calls, answers, strict=True)]
        logs = _logs(results[0]) if query is not None else None
        return logs, [_hash(block) for block in results[len(results) - len(numbers) :]]


#: An ``eth_getLogs`` query: addresses, first topics, first block, last block.
LogQuery = tuple[Sequence[str], Sequence[str], int, int]


def _filter(
    addresses: Sequence[str], topics: Sequence[str], from_block: int, to_block: int
) -> dict[str, Any]:
    return {
        "fromBlock": hex(from_block),
        "toBlock": hex(to_block),
        "address": list(addresses),
        "topics": [list(topics)],
    }


def _logs(result: Any) -> list[dict[str, Any]]:
    if not isinstance(result, list):
        raise RpcError(f"eth_getLogs returned {type(result).__name__}, not a list")
    return result


def _result(method: str, response: Any) -> Any:
    if not isinstance(response, Mapping):
        raise RpcError(f"{method}: not a JSON-RPC response: {response!r}")
    if "error" in response:
        raise RpcError(f"{method}: {response['error']}")
    return response.get("result")


def _hash(block: Any) -> str | None:
    if not block:
        return None
    return str(block["hash"]).lower()
