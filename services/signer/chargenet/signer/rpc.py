"""A lean async JSON-RPC client with batches: the tracker's throughput comes from batching.

Two transports behind one interface: HTTP to a node, or any web3 provider object in this process
(the embedded default's eth-tester chain), run on one worker thread because that chain is not
thread-safe.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import itertools
import json
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

import aiohttp

#: Calls per HTTP batch; nodes cap batch sizes (geth: 1000) and huge bodies stall the event loop.
BATCH_CHUNK = 250


class RpcError(Exception):
    """The node answered with a JSON-RPC error."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(f"{message} (code {code})")
        self.code = code
        self.message = message
        self.data = data

    def revert_data(self) -> bytes | None:
        """Revert return data, wherever this node put it (geth: data; Hardhat: data.data)."""
        data = self.data
        if isinstance(data, dict):
            data = data.get("data")
        if isinstance(data, str) and re.fullmatch(r"0x([0-9a-fA-F]{2})*", data):
            return bytes.fromhex(data[2:])
        if isinstance(data, bytes):
            return data
        return None

    @property
    def is_revert(self) -> bool:
        text = self.message.lower()
        return self.code == 3 or "revert" in text or self.revert_data() is not None


class RpcUnavailable(ConnectionError):
    """The node could not be reached or answered garbage; worth retrying."""


Call = tuple[str, Sequence[Any]]


class Transport(Protocol):
    async def batch(self, calls: Sequence[Call]) -> list[Any]:
        """Results in call order; a failed call's slot holds its ``RpcError``."""
        ...

    async def aclose(self) -> None: ...


class Rpc:
    def __init__(self, transport: Transport) -> None:
        self.transport = transport

    async def call(self, method: str, *params: Any) -> Any:
        (result,) = await self.transport.batch([(method, params)])
        if isinstance(result, RpcError):
            raise result
        return result

    async def batch(self, calls: Sequence[Call]) -> list[Any]:
        results: list[Any] = []
        for start in range(0, len(calls), BATCH_CHUNK):
            results.extend(await self.transport.batch(calls[start : start + BATCH_CHUNK]))
        return results

    async def aclose(self) -> None:
        await self.transport.aclose()


class HttpTransport:
    """JSON-RPC over HTTP with aiohttp: a keep-alive pool and little CPU per request (the
    signer makes one request per broadcast, so this cost bounds its throughput)."""

    def __init__(self, url: str, timeout: float = 30.0) -> None:
        self._url = url
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None
        self._ids = itertools.count(1)

    def _client(self) -> aiohttp.ClientSession:
        # Created lazily: a session belongs to the event loop it was made on.
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=self._timeout,
                connector=aiohttp.TCPConnector(limit=16),
                json_serialize=json.dumps,
            )
        return self._session

    async def batch(self, calls: Sequence[Call]) -> list[Any]:
        if not calls:
            return []
        ids = [next(self._ids) for _ in calls]
        body = [
            {"jsonrpc": "2.0", "id": ident, "method": method, "params": list(params)}
            for ident, (method, params) in zip(ids, calls, strict=True)
        ]
        try:
            async with self._client().post(
                self._url, json=body if len(body) > 1 else body[0]
            ) as response:
                response.raise_for_status()
                answer = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as error:
            raise RpcUnavailable(f"JSON-RPC node: {type(error).__name__}: {error}") from error
        items = answer if isinstance(answer, list) else [answer]
        by_id = {item.get("id"): item for item in items if isinstance(item, dict)}
        return [_unwrap(by_id.get(ident)) for ident in ids]

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


def _unwrap(item: dict[str, Any] | None) -> Any:
    if item is None:
        return RpcUnavailable("JSON-RPC node: a batch answer is missing")
    if "error" in item and item["error"] is not None:
        error = item["error"]
        return RpcError(int(error.get("code", 0)), str(error.get("message", "")), error.get("data"))
    return item.get("result")


class ProviderTransport:
    """Any object with web3's ``make_request(method, params)``, e.g. ``EthereumTesterProvider``."""

    def __init__(self, provider: Any) -> None:
        self._provider = provider
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="signer-chain")

    async def batch(self, calls: Sequence[Call]) -> list[Any]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._run, list(calls))

    def _run(self, calls: list[Call]) -> list[Any]:
        results: list[Any] = []
        for method, params in calls:
            try:
                answer = self._provider.make_request(method, _from_wire(method, params))
                if "result" in answer:
                    answer = {**answer, "result": _to_wire(answer["result"])}
                results.append(_unwrap(answer))
            except Exception as error:  # the in-process chain raises instead of answering errors
                results.append(_provider_error(error))
        return results

    async def aclose(self) -> None:
        self._executor.shutdown(wait=False)


def _to_wire(value: Any) -> Any:
    """web3's in-process provider answers with Python values and snake_case keys before its
    middleware formats them; JSON-RPC has hex quantities and camelCase keys."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return hex(value)
    if isinstance(value, bytes):
        return "0x" + value.hex()
    if isinstance(value, list | tuple):
        return [_to_wire(item) for item in value]
    if isinstance(value, dict):
        return {_camel(str(key)): _to_wire(item) for key, item in value.items()}
    return value


_QUANTITIES = frozenset(
    {"value", "gas", "gasPrice", "maxFeePerGas", "maxPriorityFeePerGas", "nonce", "chainId"}
)
_BLOCK_NUMBER = re.compile(r"^0x[0-9a-fA-F]{1,16}$")


def _from_wire(method: str, params: Sequence[Any]) -> list[Any]:
    """The in-process provider takes Python integers for quantities and block numbers."""
    converted: list[Any] = []
    for index, param in enumerate(params):
        if isinstance(param, dict):
            param = {
                key: int(value, 16) if key in _QUANTITIES and isinstance(value, str) else value
                for key, value in param.items()
            }
        elif (
            isinstance(param, str)
            and _BLOCK_NUMBER.match(param)
            and (method, index) in {("eth_call", 1), ("eth_getBlockByNumber", 0)}
        ):
            param = int(param, 16)
        converted.append(param)
    return converted


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _provider_error(error: Exception) -> RpcError:
    # web3's eth-tester adapter re-raises TransactionFailed with the reason as text; the raw
    # revert data survives on the exception it was raised from.
    data: bytes | None = None
    context: BaseException | None = error.__context__
    while context is not None and data is None:
        first = context.args[0] if context.args else None
        if isinstance(first, BaseException):  # eth-tester wraps exceptions in exceptions
            first = first.args[0] if first.args else None
        if isinstance(first, str) and first.startswith(("b'", 'b"')):
            # Some of its paths carry the revert data as the repr of the bytes.
            with contextlib.suppress(ValueError, SyntaxError):
                first = ast.literal_eval(first)
        if isinstance(first, bytes):
            data = first
        context = context.__context__
    message = str(error)
    code = 3 if "revert" in message.lower() else -32000
    return RpcError(code, message, ("0x" + data.hex()) if data is not None else None)


def transport_for(url: str, provider: Any = None) -> Transport:
    if provider is not None:
        return ProviderTransport(provider)
    if url.startswith(("http://", "https://")):
        return HttpTransport(url)
    raise ValueError(f"chain_rpc_url: unsupported scheme in {url!r} (http, https or inprocess)")
