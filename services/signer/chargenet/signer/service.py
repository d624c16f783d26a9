"""The gRPC face of the signer: authenticate, authorise, validate, then hand over to the engine.

Every refusal names its reason: UNAUTHENTICATED for a missing or unknown token, PERMISSION_DENIED
for a key or function outside the caller's policy, INVALID_ARGUMENT with the field name first for
a malformed request.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
from collections.abc import AsyncIterator, Callable
from typing import Any, NoReturn, TypeVar

import grpc
import sqlalchemy.exc

from chargenet.core.signer_client._generated import signer_pb2 as pb
from chargenet.core.signer_client._generated import signer_pb2_grpc
from chargenet.signer.abi import (
    AbiError,
    Contract,
    ContractRegistry,
    checksum,
    encode_call,
    json_reason,
    parse_abi,
)
from chargenet.signer.engine import Engine
from chargenet.signer.keys import (
    ALIAS_PATTERN,
    HD_ALIAS,
    KeyError_,
    KeySource,
    SigningKey,
    TypedDataError,
)
from chargenet.signer.policy import Caller, Policy
from chargenet.signer.records import TERMINAL, Request, Status, TxRecord
from chargenet.signer.rpc import RpcError, RpcUnavailable
from chargenet.signer.store import IdempotencyConflict

log = logging.getLogger(__name__)
T = TypeVar("T")

#: The database down, its connection lost, a lock conflict, or no pooled connection free in
#: time: nothing was done, so a retry is safe.
_DATABASE_UNAVAILABLE = (
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    sqlalchemy.exc.TimeoutError,
)

_KEY = re.compile(r"^[\x21-\x7e]{1,200}$")
_HASH = re.compile(r"^0x[0-9a-fA-F]{64}$")
_WEI = re.compile(r"^[0-9]{1,78}$")
#: The intrinsic gas of any transaction; a lower limit is refused by every node.
_MIN_GAS = 21_000
#: gas_limit is stored in a BIGINT.
_MAX_GAS = 2**63 - 1
#: The record's "<contract>.<signature>" column.
_MAX_FUNCTION = 300
_MAX_DETAIL = 1000
_STATUS = {
    Status.PENDING: pb.TRANSACTION_STATUS_PENDING,
    Status.MINED: pb.TRANSACTION_STATUS_MINED,
    Status.FINAL: pb.TRANSACTION_STATUS_FINAL,
    Status.FAILED: pb.TRANSACTION_STATUS_FAILED,
    Status.REPLACED: pb.TRANSACTION_STATUS_REPLACED,
}
_SOURCE = {
    KeySource.KEYSTORE: pb.KEY_SOURCE_KEYSTORE,
    KeySource.ENVIRONMENT: pb.KEY_SOURCE_ENVIRONMENT,
    KeySource.HD: pb.KEY_SOURCE_HD,
}


class SignerService(signer_pb2_grpc.SignerServiceServicer):
    def __init__(
        self,
        engine: Engine,
        policy: Policy,
        contracts: ContractRegistry,
        *,
        max_data_bytes: int,
    ) -> None:
        self.engine = engine
        self.policy = policy
        self.contracts = contracts
        self.max_data_bytes = max_data_bytes

    # -- RPCs ------------------------------------------------------------------------------------

    async def SendTransaction(  # noqa: N802 - the gRPC method name
        self, request: pb.SendTransactionRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.SendTransactionResponse:
        caller = await self._caller(context)
        if not _KEY.match(request.idempotency_key):
            await _invalid(context, "idempotency_key", "1-200 printable ASCII characters")
        key = await self._key(context, caller, request.from_key)
        try:
            contract = self._contract(request)
            function = contract.function(request.function)
            if not caller.may_call(contract.label, function.name):
                await _deny(context, f"{caller.name} may not call {contract.label}.{function.name}")
            which = request.WhichOneof("arguments")
            # Off the event loop: a million arguments take seconds, and other callers wait.
            data = await asyncio.to_thread(
                encode_call,
                function,
                json_args=request.json_args if which == "json_args" else None,
                encoded=request.abi_encoded_args if which == "abi_encoded_args" else None,
            )
        except AbiError as error:
            await _invalid(context, error.field, str(error).removeprefix(f"{error.field}: "))
        if len(data) > self.max_data_bytes:
            await _invalid(
                context,
                which or "json_args",
                f"the call data would be {len(data)} bytes; at most {self.max_data_bytes} are "
                "sent (nodes refuse larger transactions)",
            )
        value = request.value_wei or "0"
        if not _WEI.match(value) or int(value) >= 2**256:
            await _invalid(context, "value_wei", "a decimal integer of wei from 0 to 2**256 - 1")
        if function.mutability != "payable" and int(value) != 0:
            await _invalid(context, "value_wei", f"{function.signature} is not payable")
        label = f"{contract.label}.{function.signature}"
        if len(label) > _MAX_FUNCTION:
            await _invalid(
                context, "function", f"{label[:80]}...: longer than {_MAX_FUNCTION} characters"
            )
        if request.gas_limit != 0 and not _MIN_GAS <= request.gas_limit <= _MAX_GAS:
            await _invalid(context, "gas_limit", f"0 (estimate) or {_MIN_GAS} to {_MAX_GAS} gas")
        send = Request(
            caller=caller.name,
            idempotency_key=request.idempotency_key,
            fingerprint=_fingerprint(key.address, contract.address, data, value, request.gas_limit),
            from_key=key.alias,
            from_address=key.address,
            to_address=contract.address,
            function=label,
            data=data,
            value_wei=int(value),
            gas_limit=request.gas_limit,
        )
        try:
            record, created = await self.engine.submit(send, contract.errors)
        except IdempotencyConflict:
            await context.abort(
                grpc.StatusCode.ALREADY_EXISTS,
                "idempotency_key: already used for a different request",
            )
        except (RpcUnavailable, RpcError) as error:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"chain node: {error}")
        except _DATABASE_UNAVAILABLE as error:
            # Nothing was stored, so the client's retry with the same key is safe.
            log.warning("send %s: database unavailable: %s", request.idempotency_key, error)
            await context.abort(grpc.StatusCode.UNAVAILABLE, "database unavailable")
        return pb.SendTransactionResponse(transaction=to_proto(record), created=created)

    async def GetTransaction(  # noqa: N802 - the gRPC method name
        self, request: pb.GetTransactionRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetTransactionResponse:
        caller = await self._caller(context)
        which = request.WhichOneof("lookup")
        store = self.engine.store
        if which == "idempotency_key":
            if not _KEY.match(request.idempotency_key):
                await _invalid(context, "idempotency_key", "1-200 printable ASCII characters")
            record = await _read(context, store.find, caller.name, request.idempotency_key)
        elif which == "tx_hash":
            if not _HASH.match(request.tx_hash):
                await _invalid(context, "tx_hash", "a 0x-prefixed 32-byte hex hash")
            record = await _read(context, store.find_by_hash, caller.name, request.tx_hash.lower())
        else:
            await _invalid(context, "lookup", "give idempotency_key or tx_hash")
        if record is None:
            await _abort(context, grpc.StatusCode.NOT_FOUND, "no such transaction for this caller")
        message = to_proto(record, self.engine.head, self.engine.config.confirmations)
        if which == "tx_hash" and record.tx_hash != request.tx_hash.lower():
            # An older attempt at the same nonce, superseded by a re-send with a higher fee.
            message.status = pb.TRANSACTION_STATUS_REPLACED
            message.replaced_by = record.tx_hash or ""
            message.tx_hash = request.tx_hash.lower()
        return pb.GetTransactionResponse(transaction=message)

    async def ListKeys(  # noqa: N802 - the gRPC method name
        self, request: pb.ListKeysRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ListKeysResponse:
        caller = await self._caller(context)
        keys = [
            pb.Key(alias=key.alias, address=key.address, source=_SOURCE[key.source])
            for key in self.engine.keys.all()
            if caller.may_use_key(key.alias)
        ]
        return pb.ListKeysResponse(keys=keys)

    async def SignTypedData(  # noqa: N802 - the gRPC method name
        self, request: pb.SignTypedDataRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.SignTypedDataResponse:
        caller = await self._caller(context)
        if not caller.sign_typed_data:
            await _deny(context, f"{caller.name} may not sign typed data")
        key = await self._key(context, caller, request.from_key)
        try:
            typed = json.loads(request.typed_data_json)
        except (ValueError, RecursionError) as error:
            await _invalid(context, "typed_data_json", f"not valid JSON ({json_reason(error)})")
        missing = (
            [k for k in ("types", "primaryType", "domain", "message") if k not in typed]
            if isinstance(typed, dict)
            else ["an object"]
        )
        if missing:
            await _invalid(context, "typed_data_json", f"missing {', '.join(missing)}")
        shape = _typed_data_shape(typed)
        if shape is not None:
            await _invalid(context, f"typed_data_json.{shape[0]}", shape[1])
        try:
            # Off the event loop: a huge array takes seconds to encode, and other callers wait.
            signed = await asyncio.to_thread(key.sign_typed_data, typed)
        except TypedDataError as error:
            await _invalid(context, "typed_data_json", f"not valid EIP-712 data ({error})")
        return pb.SignTypedDataResponse(
            signature=signed.signature, signer_address=key.address, digest=signed.digest
        )

    async def WatchTransactions(  # noqa: N802 - the gRPC method name
        self, request: pb.WatchTransactionsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[pb.WatchTransactionsResponse]:
        caller = await self._caller(context)
        keys = list(request.idempotency_keys)
        for key in keys:
            if not _KEY.match(key):
                await _invalid(context, "idempotency_keys", f"{key!r}: 1-200 printable characters")
        watcher = self.engine.watch(caller.name, keys)
        open_keys = set(keys)
        try:
            if request.send_initial and keys:
                store = self.engine.store
                for record in await _read(context, store.find_many, caller.name, keys):
                    yield self._message(record)
                    if record.status in TERMINAL:
                        open_keys.discard(record.idempotency_key)
            while not keys or open_keys:
                record = await watcher.queue.get()
                yield self._message(record)
                if record.status in TERMINAL:
                    open_keys.discard(record.idempotency_key)
        finally:
            self.engine.unwatch(watcher)

    # -- helpers ---------------------------------------------------------------------------------

    def _message(self, record: TxRecord) -> pb.WatchTransactionsResponse:
        return pb.WatchTransactionsResponse(
            transaction=to_proto(record, self.engine.head, self.engine.config.confirmations)
        )

    async def _caller(self, context: grpc.aio.ServicerContext[Any, Any]) -> Caller:
        token = ""
        for name, value in context.invocation_metadata() or ():
            if name == "authorization" and isinstance(value, str):
                token = value.removeprefix("Bearer ").strip()
        caller = self.policy.authenticate(token) if token else None
        if caller is None:
            await _abort(
                context,
                grpc.StatusCode.UNAUTHENTICATED,
                "authorization: a known bearer token is required",
            )
        return caller

    async def _key(
        self, context: grpc.aio.ServicerContext[Any, Any], caller: Caller, alias: str
    ) -> SigningKey:
        if not (ALIAS_PATTERN.match(alias) or HD_ALIAS.match(alias)):
            await _invalid(context, "from_key", "a key alias (see ListKeys)")
        if not caller.may_use_key(alias):
            await _deny(context, f"{caller.name} may not use key {alias!r}")
        try:
            return self.engine.keys.get(alias)
        except KeyError_:
            await _invalid(context, "from_key", f"no key {alias!r}")

    def _contract(self, request: pb.SendTransactionRequest) -> Contract:
        which = request.WhichOneof("target")
        if which == "contract_name":
            return self.contracts.get(request.contract_name)
        if which == "contract_address":
            address = checksum(request.contract_address, "contract_address")
            if not request.abi_json:
                raise AbiError("abi_json", "required with contract_address")
            try:
                abi = json.loads(request.abi_json)
            except (ValueError, RecursionError) as error:
                raise AbiError("abi_json", f"not valid JSON ({json_reason(error)})") from None
            return parse_abi(abi, address, address)
        raise AbiError("target", "give contract_name or contract_address")


async def _read(
    context: grpc.aio.ServicerContext[Any, Any], read: Callable[..., T], *args: Any
) -> T:
    """A store read off the event loop; a database that does not answer is UNAVAILABLE."""
    try:
        return await asyncio.to_thread(read, *args)
    except _DATABASE_UNAVAILABLE as error:
        log.warning("%s: database unavailable: %s", read.__name__, error)
        await _abort(context, grpc.StatusCode.UNAVAILABLE, "database unavailable")


def _typed_data_shape(typed: dict[str, Any]) -> tuple[str, str] | None:
    """The part of EIP-712 data whose JSON type is wrong, and what it must be; None if none.
    eth_account fails on these with errors that do not say where (``'int' object has no
    attribute 'copy'``)."""
    types = typed["types"]
    if not isinstance(types, dict):
        return "types", "an object of type names to lists of {name, type}"
    for name, fields in types.items():
        if not isinstance(fields, list) or not all(
            isinstance(item, dict)
            and isinstance(item.get("name"), str)
            and isinstance(item.get("type"), str)
            for item in fields
        ):
            return f"types.{name}", "a list of {name, type} objects with string values"
    if not isinstance(typed["primaryType"], str):
        return "primaryType", "a type name"
    for part in ("domain", "message"):
        if not isinstance(typed[part], dict):
            return part, "an object"
    return None


def _fingerprint(*parts: object) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()


async def _abort(
    context: grpc.aio.ServicerContext[Any, Any], code: grpc.StatusCode, message: str
) -> NoReturn:
    await context.abort(code, message)
    raise AssertionError("abort returned")  # pragma: no cover - abort always raises


async def _invalid(
    context: grpc.aio.ServicerContext[Any, Any], field: str, message: str
) -> NoReturn:
    detail = f"{field}: {message}"
    if len(detail) > _MAX_DETAIL:
        # A reason may quote the caller's value, and a status whose trailer passes gRPC's
        # metadata limit (8 KiB) reaches the caller as RESOURCE_EXHAUSTED instead.
        detail = detail[: _MAX_DETAIL - 3] + "..."
    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, detail)
    raise AssertionError("abort returned")  # pragma: no cover - abort always raises


async def _deny(context: grpc.aio.ServicerContext[Any, Any], message: str) -> NoReturn:
    await context.abort(grpc.StatusCode.PERMISSION_DENIED, message)
    raise AssertionError("abort returned")  # pragma: no cover


def to_proto(record: TxRecord, head: int = 0, confirmations: int = 0) -> pb.Transaction:
    message = pb.Transaction(
        idempotency_key=record.idempotency_key,
        status=_STATUS[record.status],
        from_key=record.from_key,
        from_address=record.from_address,
        to_address=record.to_address,
        tx_hash=record.tx_hash or "",
        replaced_hashes=record.replaced_hashes,
        revert_reason=record.revert_reason or "",
        error=record.error or "",
        function=record.function,
    )
    if record.nonce is not None:
        message.nonce = record.nonce
    receipt = record.receipt
    if receipt is not None:
        message.receipt.CopyFrom(
            pb.Receipt(
                block_number=receipt["block_number"],
                block_hash=receipt["block_hash"],
                gas_used=receipt["gas_used"],
                effective_gas_price_wei=str(receipt["effective_gas_price"]),
                success=receipt["success"],
                transaction_index=receipt["transaction_index"],
                logs=[
                    pb.Log(
                        address=entry["address"],
                        topics=entry["topics"],
                        data=entry["data"],
                        log_index=entry["log_index"],
                    )
                    for entry in receipt["logs"]
                ],
            )
        )
        depth = max(0, head - receipt["block_number"] + 1)
        message.confirmations = max(depth, confirmations if record.status is Status.FINAL else 0)
    return message
