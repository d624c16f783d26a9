"""The typed client of the signer service (``proto/chargenet/signer/v1/signer.proto``)."""

from chargenet.core.signer_client.client import (
    SignerClient,
    SignerError,
    TransactionStream,
    signer_client,
)
from chargenet.core.signer_client.types import (
    KeyInfo,
    Log,
    Receipt,
    Transaction,
    TxStatus,
    TypedDataSignature,
)

__all__ = [
    "KeyInfo",
    "Log",
    "Receipt",
    "SignerClient",
    "SignerError",
    "Transaction",
    "TransactionStream",
    "TxStatus",
    "TypedDataSignature",
    "signer_client",
]
