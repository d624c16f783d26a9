"""chargenet's contracts from Python: artifacts, connection, deployment and EIP-712 signing."""

from chargenet.core.chain.artifacts import Artifact, artifact_names, load_artifact, source_hash
from chargenet.core.chain.connection import IN_PROCESS, connect, richest_account
from chargenet.core.chain.deploy import (
    Deployment,
    SessionState,
    StationInfo,
    TransactionFailed,
    contract_at,
    deploy,
    deploy_chargenet,
    send,
    sender_address,
)
from chargenet.core.chain.typed_data import (
    OpenAuthorisation,
    PermitSignature,
    open_session_typed_data,
    parse_session_id,
    permit_typed_data,
    session_id,
    sign_open_session,
    sign_permit,
)

__all__ = [
    "IN_PROCESS",
    "Artifact",
    "Deployment",
    "OpenAuthorisation",
    "PermitSignature",
    "SessionState",
    "StationInfo",
    "TransactionFailed",
    "artifact_names",
    "connect",
    "contract_at",
    "deploy",
    "deploy_chargenet",
    "load_artifact",
    "open_session_typed_data",
    "parse_session_id",
    "permit_typed_data",
    "richest_account",
    "send",
    "sender_address",
    "session_id",
    "sign_open_session",
    "sign_permit",
    "source_hash",
]
