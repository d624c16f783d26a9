"""The signer client every service uses: typed methods, token auth, retries that are safe.

A ``SendTransaction`` retried after UNAVAILABLE (the signer restarting, a dropped connection)
carries the same idempotency key, so the signer returns the transaction the first attempt
created, or creates it if the first attempt never got through: never two.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import grpc

from chargenet.core.settings import CoreSettings, Mode, fail
from chargenet.core.signer_client._generated import signer_pb2 as pb
from chargenet.core.signer_client._generated import signer_pb2_grpc
from chargenet.core.signer_client.types import (
    KeyInfo,
    Log,
    Receipt,
    Transaction,
    TxStatus,
    TypedDataSignature,
)

T = TypeVar("T")

_STATUS = {
    pb.TRANSACTION_STATUS_PENDING: TxStatus.PENDING,
    pb.TRANSACTION_STATUS_MINED: TxStatus.MINED,
    pb.TRANSACTION_STATUS_FINAL: TxStatus.FINAL,
    pb.TRANSACTION_STATUS_FAILED: TxStatus.FAILED,
    pb.TRANSACTION_STATUS_REPLACED: TxStatus.REPLACED,
}
_SOURCE = {
    pb.KEY_SOURCE_KEYSTORE: "keystore",
    pb.KEY_SOURCE_ENVIRONMENT: "environment",
    pb.KEY_SOURCE_HD: "hd",
}


class SignerError(Exception):
    """The signer refused a request; ``code`` is the gRPC status code."""

    def __init__(self, code: grpc.StatusCode, detail: str) -> None:
        super().__init__(f"{code.name}: {detail}")
        self.code = code
        self.detail = detail


def signer_client(settings: CoreSettings, **options: Any) -> SignerClient:
    """The client a service's settings describe: TLS when ``signer_ca_file`` is set (mutual
    with ``signer_client_cert_file``); production mode refuses a plaintext channel to the
    service that holds the keys (``options``: ``SignerClient``'s)."""
    credentials = None
    if settings.signer_ca_file is not None:
        try:
            credentials = grpc.ssl_channel_credentials(
                root_certificates=settings.signer_ca_file.read_bytes(),
                private_key=_read(settings.signer_client_key_file),
                certificate_chain=_read(settings.signer_client_cert_file),
            )
        except OSError as error:
            raise fail(f"signer TLS files: {error}") from None
    elif settings.mode is Mode.PRODUCTION:
        raise fail(
            "CHARGENET_SIGNER_CA_FILE: production mode calls the signer over TLS only; "
            "give the CA certificate that signed the signer's"
        )
    token = settings.signer_token.get_secret_value()
    return SignerClient(settings.signer_url, token, credentials=credentials, **options)


def _read(path: Path | None) -> bytes | None:
    return None if path is None else path.read_bytes()


class SignerClient:
    """``SignerClient("127.0.0.1:50051", token)``; thread-safe, one channel per client.
    Services build theirs from their settings with :func:`signer_client`."""

    def __init__(
        self,
        url: str,
        token: str,
        *,
        timeout: float = 30.0,
        retry_for: float = 60.0,
        credentials: grpc.ChannelCredentials | None = None,
        channel: grpc.Channel | None = None,
    ) -> None:
        options = [("grpc.enable_retries", 0), ("grpc.max_reconnect_backoff_ms", 1000)]
        if channel is not None:
            self._channel = channel
        elif credentials is not None:
            self._channel = grpc.secure_channel(url, credentials, options=options)
        else:
            self._channel = grpc.insecure_channel(url, options=options)
        # The generated gRPC module has no type hints; the message types (signer_pb2.pyi) do.
        self._stub = signer_pb2_grpc.SignerServiceStub(self._channel)  # type: ignore[no-untyped-call]
        self._metadata = (("authorization", f"Bearer {token}"),)
        self._timeout = timeout
        self._retry_for = retry_for

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> SignerClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- RPCs ------------------------------------------------------------------------------------

    def send_transaction(
        self,
        idempotency_key: str,
        from_key: str,
        function: str,
        args: Sequence[Any] | None = None,
        *,
        contract: str | None = None,
        address: str | None = None,
        abi: Sequence[dict[str, Any]] | None = None,
        encoded_args: bytes | None = None,
        value_wei: int = 0,
        gas_limit: int = 0,
    ) -> Transaction:
        """Send ``function(args)`` on a registered ``contract`` (by name) or on ``address`` with
        its ``abi``. ``args`` are JSON values (integers may be Python ints of any size)."""
        if (contract is None) == (address is None):
            raise ValueError("give exactly one of contract= or address=")
        if args is not None and encoded_args is not None:
            raise ValueError("give args or encoded_args, not both")
        request = pb.SendTransactionRequest(
            idempotency_key=idempotency_key,
            from_key=from_key,
            function=function,
            value_wei=str(value_wei) if value_wei else "",
            gas_limit=gas_limit,
        )
        if contract is not None:
            request.contract_name = contract
        else:
            request.contract_address = address or ""
            request.abi_json = json.dumps(list(abi or []))
        if encoded_args is not None:
            request.abi_encoded_args = encoded_args
        else:
            request.json_args = json.dumps(_jsonable(list(args or [])))
        response = self._call(self._stub.SendTransaction, request)
        return _transaction(response.transaction, created=response.created)

    def get_transaction(
        self, *, idempotency_key: str | None = None, tx_hash: str | None = None
    ) -> Transaction:
        if (idempotency_key is None) == (tx_hash is None):
            raise ValueError("give exactly one of idempotency_key= or tx_hash=")
        request = (
            pb.GetTransactionRequest(idempotency_key=idempotency_key)
            if idempotency_key is not None
            else pb.GetTransactionRequest(tx_hash=tx_hash)
        )
        return _transaction(self._call(self._stub.GetTransaction, request).transaction)

    def list_keys(self) -> list[KeyInfo]:
        response = self._call(self._stub.ListKeys, pb.ListKeysRequest())
        return [
            KeyInfo(k.alias, k.address, _SOURCE.get(k.source, "unknown")) for k in response.keys
        ]

    def sign_typed_data(self, from_key: str, typed_data: dict[str, Any]) -> TypedDataSignature:
        request = pb.SignTypedDataRequest(
            from_key=from_key, typed_data_json=json.dumps(_jsonable(typed_data))
        )
        response = self._call(self._stub.SignTypedData, request)
        return TypedDataSignature(response.signature, response.signer_address, response.digest)

    def watch(
        self, idempotency_keys: Iterable[str] = (), *, send_initial: bool = True
    ) -> Iterator[Transaction]:
        """Status changes as they happen; with keys, ends once all are FINAL or FAILED.
        Not retried: a caller that loses the stream calls again with send_initial."""
        stream = self.stream(idempotency_keys, send_initial=send_initial)
        try:
            yield from stream
        finally:
            # A caller that stops iterating early must not leave the stream open on the signer.
            stream.cancel()

    def stream(
        self, idempotency_keys: Iterable[str] = (), *, send_initial: bool = True
    ) -> TransactionStream:
        """Like :meth:`watch`, as an object another thread can :meth:`~TransactionStream.cancel`
        (a follower blocked on the stream stops at once instead of at the next change)."""
        request = pb.WatchTransactionsRequest(
            idempotency_keys=list(idempotency_keys), send_initial=send_initial
        )
        return TransactionStream(self._stub.WatchTransactions(request, metadata=self._metadata))

    def wait(
        self,
        idempotency_keys: Sequence[str],
        *,
        until: TxStatus = TxStatus.MINED,
        timeout: float = 120.0,
    ) -> dict[str, Transaction]:
        """Block until every key has reached ``until`` (or failed); re-watches after a drop."""
        deadline = time.monotonic() + timeout
        latest: dict[str, Transaction] = {}
        remaining = set(idempotency_keys)
        while remaining:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(remaining)} transactions did not reach {until}")
            try:
                for tx in self.watch(sorted(remaining)):
                    latest[tx.idempotency_key] = tx
                    if tx.status.reached(until):
                        remaining.discard(tx.idempotency_key)
                    if not remaining or time.monotonic() > deadline:
                        break
            except SignerError as error:
                if error.code is not grpc.StatusCode.UNAVAILABLE:
                    raise
                time.sleep(0.2)
        return latest

    # -- plumbing --------------------------------------------------------------------------------

    def _call(self, method: Callable[..., T], request: Any) -> T:
        deadline = time.monotonic() + self._retry_for
        delay = 0.05
        while True:
            try:
                return method(request, metadata=self._metadata, timeout=self._timeout)
            except grpc.RpcError as error:
                code = error.code() if isinstance(error, grpc.Call) else None
                if code is not grpc.StatusCode.UNAVAILABLE or time.monotonic() + delay > deadline:
                    raise _error(error) from None
            time.sleep(delay)
            delay = min(delay * 2, 1.0)


class TransactionStream:
    """A ``WatchTransactions`` stream: iterate for status changes; ``cancel`` from any thread."""

    def __init__(self, call: Any) -> None:
        self._call = call

    def __iter__(self) -> Iterator[Transaction]:
        try:
            for message in self._call:
                yield _transaction(message.transaction)
        except grpc.RpcError as error:
            raise _error(error) from None

    def cancel(self) -> None:
        self._call.cancel()


def _error(error: grpc.RpcError) -> SignerError:
    if isinstance(error, grpc.Call):
        return SignerError(error.code(), error.details() or "")
    return SignerError(grpc.StatusCode.UNKNOWN, str(error))


def _jsonable(value: Any) -> Any:
    """bytes as 0x-hex, big integers as decimal strings (JSON numbers lose precision past 2**53)."""
    if isinstance(value, bytes):
        return "0x" + value.hex()
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value if abs(value) < 2**53 else str(value)
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    return value


def _transaction(message: pb.Transaction, *, created: bool = True) -> Transaction:
    receipt = None
    if message.HasField("receipt"):
        r = message.receipt
        receipt = Receipt(
            block_number=r.block_number,
            block_hash=r.block_hash,
            gas_used=r.gas_used,
            effective_gas_price_wei=int(r.effective_gas_price_wei or "0"),
            success=r.success,
            transaction_index=r.transaction_index,
            logs=tuple(Log(g.address, tuple(g.topics), g.data, g.log_index) for g in r.logs),
        )
    return Transaction(
        idempotency_key=message.idempotency_key,
        status=_STATUS.get(message.status, TxStatus.PENDING),
        from_key=message.from_key,
        from_address=message.from_address,
        to_address=message.to_address,
        function=message.function,
        nonce=message.nonce if message.HasField("nonce") else None,
        tx_hash=message.tx_hash,
        replaced_hashes=tuple(message.replaced_hashes),
        replaced_by=message.replaced_by,
        receipt=receipt,
        confirmations=message.confirmations,
        revert_reason=message.revert_reason,
        error=message.error,
        created=created,
    )
