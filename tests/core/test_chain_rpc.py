"""Raw JSON-RPC reads: a node that cannot be reached is a ChainReadError (the services turn it
into a 503 with a reason), not a transport exception escaping as a 500."""

from __future__ import annotations

import socket

import pytest
from web3 import HTTPProvider, Web3

from chargenet.core.chain.rpc import ChainReadError, results


def test_a_node_that_does_not_answer_is_a_chain_read_error() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    w3 = Web3(HTTPProvider(f"http://127.0.0.1:{port}", request_kwargs={"timeout": 2}))

    with pytest.raises(ChainReadError, match="the node did not answer"):
        results(w3, [("eth_blockNumber", [])])


def test_reads_come_back_in_order_from_one_batch(rpc_url: str) -> None:
    w3 = Web3(HTTPProvider(rpc_url, request_kwargs={"timeout": 10}))
    chain_id, block = results(w3, [("eth_chainId", []), ("eth_blockNumber", [])])
    assert int(chain_id, 16) == w3.eth.chain_id
    assert int(block, 16) <= w3.eth.block_number
