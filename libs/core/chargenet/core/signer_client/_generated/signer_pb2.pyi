from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TransactionStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TRANSACTION_STATUS_UNSPECIFIED: _ClassVar[TransactionStatus]
    TRANSACTION_STATUS_PENDING: _ClassVar[TransactionStatus]
    TRANSACTION_STATUS_MINED: _ClassVar[TransactionStatus]
    TRANSACTION_STATUS_FINAL: _ClassVar[TransactionStatus]
    TRANSACTION_STATUS_FAILED: _ClassVar[TransactionStatus]
    TRANSACTION_STATUS_REPLACED: _ClassVar[TransactionStatus]

class KeySource(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    KEY_SOURCE_UNSPECIFIED: _ClassVar[KeySource]
    KEY_SOURCE_KEYSTORE: _ClassVar[KeySource]
    KEY_SOURCE_ENVIRONMENT: _ClassVar[KeySource]
    KEY_SOURCE_HD: _ClassVar[KeySource]
TRANSACTION_STATUS_UNSPECIFIED: TransactionStatus
TRANSACTION_STATUS_PENDING: TransactionStatus
TRANSACTION_STATUS_MINED: TransactionStatus
TRANSACTION_STATUS_FINAL: TransactionStatus
TRANSACTION_STATUS_FAILED: TransactionStatus
TRANSACTION_STATUS_REPLACED: TransactionStatus
KEY_SOURCE_UNSPECIFIED: KeySource
KEY_SOURCE_KEYSTORE: KeySource
KEY_SOURCE_ENVIRONMENT: KeySource
KEY_SOURCE_HD: KeySource

class SendTransactionRequest(_message.Message):
    __slots__ = ("idempotency_key", "from_key", "contract_name", "contract_address", "abi_json", "function", "abi_encoded_args", "json_args", "value_wei", "gas_limit")
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    FROM_KEY_FIELD_NUMBER: _ClassVar[int]
    CONTRACT_NAME_FIELD_NUMBER: _ClassVar[int]
    CONTRACT_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    ABI_JSON_FIELD_NUMBER: _ClassVar[int]
    FUNCTION_FIELD_NUMBER: _ClassVar[int]
    ABI_ENCODED_ARGS_FIELD_NUMBER: _ClassVar[int]
    JSON_ARGS_FIELD_NUMBER: _ClassVar[int]
    VALUE_WEI_FIELD_NUMBER: _ClassVar[int]
    GAS_LIMIT_FIELD_NUMBER: _ClassVar[int]
    idempotency_key: str
    from_key: str
    contract_name: str
    contract_address: str
    abi_json: str
    function: str
    abi_encoded_args: bytes
    json_args: str
    value_wei: str
    gas_limit: int
    def __init__(self, idempotency_key: _Optional[str] = ..., from_key: _Optional[str] = ..., contract_name: _Optional[str] = ..., contract_address: _Optional[str] = ..., abi_json: _Optional[str] = ..., function: _Optional[str] = ..., abi_encoded_args: _Optional[bytes] = ..., json_args: _Optional[str] = ..., value_wei: _Optional[str] = ..., gas_limit: _Optional[int] = ...) -> None: ...

class SendTransactionResponse(_message.Message):
    __slots__ = ("transaction", "created")
    TRANSACTION_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    transaction: Transaction
    created: bool
    def __init__(self, transaction: _Optional[_Union[Transaction, _Mapping]] = ..., created: _Optional[bool] = ...) -> None: ...

class GetTransactionRequest(_message.Message):
    __slots__ = ("idempotency_key", "tx_hash")
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    TX_HASH_FIELD_NUMBER: _ClassVar[int]
    idempotency_key: str
    tx_hash: str
    def __init__(self, idempotency_key: _Optional[str] = ..., tx_hash: _Optional[str] = ...) -> None: ...

class GetTransactionResponse(_message.Message):
    __slots__ = ("transaction",)
    TRANSACTION_FIELD_NUMBER: _ClassVar[int]
    transaction: Transaction
    def __init__(self, transaction: _Optional[_Union[Transaction, _Mapping]] = ...) -> None: ...

class ListKeysRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListKeysResponse(_message.Message):
    __slots__ = ("keys",)
    KEYS_FIELD_NUMBER: _ClassVar[int]
    keys: _containers.RepeatedCompositeFieldContainer[Key]
    def __init__(self, keys: _Optional[_Iterable[_Union[Key, _Mapping]]] = ...) -> None: ...

class Key(_message.Message):
    __slots__ = ("alias", "address", "source")
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    alias: str
    address: str
    source: KeySource
    def __init__(self, alias: _Optional[str] = ..., address: _Optional[str] = ..., source: _Optional[_Union[KeySource, str]] = ...) -> None: ...

class SignTypedDataRequest(_message.Message):
    __slots__ = ("from_key", "typed_data_json")
    FROM_KEY_FIELD_NUMBER: _ClassVar[int]
    TYPED_DATA_JSON_FIELD_NUMBER: _ClassVar[int]
    from_key: str
    typed_data_json: str
    def __init__(self, from_key: _Optional[str] = ..., typed_data_json: _Optional[str] = ...) -> None: ...

class SignTypedDataResponse(_message.Message):
    __slots__ = ("signature", "signer_address", "digest")
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    SIGNER_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    signature: bytes
    signer_address: str
    digest: bytes
    def __init__(self, signature: _Optional[bytes] = ..., signer_address: _Optional[str] = ..., digest: _Optional[bytes] = ...) -> None: ...

class WatchTransactionsRequest(_message.Message):
    __slots__ = ("idempotency_keys", "send_initial")
    IDEMPOTENCY_KEYS_FIELD_NUMBER: _ClassVar[int]
    SEND_INITIAL_FIELD_NUMBER: _ClassVar[int]
    idempotency_keys: _containers.RepeatedScalarFieldContainer[str]
    send_initial: bool
    def __init__(self, idempotency_keys: _Optional[_Iterable[str]] = ..., send_initial: _Optional[bool] = ...) -> None: ...

class WatchTransactionsResponse(_message.Message):
    __slots__ = ("transaction",)
    TRANSACTION_FIELD_NUMBER: _ClassVar[int]
    transaction: Transaction
    def __init__(self, transaction: _Optional[_Union[Transaction, _Mapping]] = ...) -> None: ...

class Transaction(_message.Message):
    __slots__ = ("idempotency_key", "status", "from_key", "from_address", "to_address", "nonce", "tx_hash", "replaced_hashes", "receipt", "confirmations", "revert_reason", "error", "function", "replaced_by")
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    FROM_KEY_FIELD_NUMBER: _ClassVar[int]
    FROM_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    TO_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    NONCE_FIELD_NUMBER: _ClassVar[int]
    TX_HASH_FIELD_NUMBER: _ClassVar[int]
    REPLACED_HASHES_FIELD_NUMBER: _ClassVar[int]
    RECEIPT_FIELD_NUMBER: _ClassVar[int]
    CONFIRMATIONS_FIELD_NUMBER: _ClassVar[int]
    REVERT_REASON_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    FUNCTION_FIELD_NUMBER: _ClassVar[int]
    REPLACED_BY_FIELD_NUMBER: _ClassVar[int]
    idempotency_key: str
    status: TransactionStatus
    from_key: str
    from_address: str
    to_address: str
    nonce: int
    tx_hash: str
    replaced_hashes: _containers.RepeatedScalarFieldContainer[str]
    receipt: Receipt
    confirmations: int
    revert_reason: str
    error: str
    function: str
    replaced_by: str
    def __init__(self, idempotency_key: _Optional[str] = ..., status: _Optional[_Union[TransactionStatus, str]] = ..., from_key: _Optional[str] = ..., from_address: _Optional[str] = ..., to_address: _Optional[str] = ..., nonce: _Optional[int] = ..., tx_hash: _Optional[str] = ..., replaced_hashes: _Optional[_Iterable[str]] = ..., receipt: _Optional[_Union[Receipt, _Mapping]] = ..., confirmations: _Optional[int] = ..., revert_reason: _Optional[str] = ..., error: _Optional[str] = ..., function: _Optional[str] = ..., replaced_by: _Optional[str] = ...) -> None: ...

class Receipt(_message.Message):
    __slots__ = ("block_number", "block_hash", "gas_used", "effective_gas_price_wei", "success", "logs", "transaction_index")
    BLOCK_NUMBER_FIELD_NUMBER: _ClassVar[int]
    BLOCK_HASH_FIELD_NUMBER: _ClassVar[int]
    GAS_USED_FIELD_NUMBER: _ClassVar[int]
    EFFECTIVE_GAS_PRICE_WEI_FIELD_NUMBER: _ClassVar[int]
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    LOGS_FIELD_NUMBER: _ClassVar[int]
    TRANSACTION_INDEX_FIELD_NUMBER: _ClassVar[int]
    block_number: int
    block_hash: str
    gas_used: int
    effective_gas_price_wei: str
    success: bool
    logs: _containers.RepeatedCompositeFieldContainer[Log]
    transaction_index: int
    def __init__(self, block_number: _Optional[int] = ..., block_hash: _Optional[str] = ..., gas_used: _Optional[int] = ..., effective_gas_price_wei: _Optional[str] = ..., success: _Optional[bool] = ..., logs: _Optional[_Iterable[_Union[Log, _Mapping]]] = ..., transaction_index: _Optional[int] = ...) -> None: ...

class Log(_message.Message):
    __slots__ = ("address", "topics", "data", "log_index")
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    TOPICS_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    LOG_INDEX_FIELD_NUMBER: _ClassVar[int]
    address: str
    topics: _containers.RepeatedScalarFieldContainer[str]
    data: str
    log_index: int
    def __init__(self, address: _Optional[str] = ..., topics: _Optional[_Iterable[str]] = ..., data: _Optional[str] = ..., log_index: _Optional[int] = ...) -> None: ...
