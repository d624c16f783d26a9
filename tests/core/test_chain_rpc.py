"""Raw JSON-RPC reads: a node that cannot be reached is a ChainReadError (the services turn it
into a 503 with a reason), not a transport exception escaping as a 500."""

from __future__ import annotations

import http.server
import json
import socket
import threading

import pytest
from web3 import HTTPProvider, Web3

from chargenet.core.chain.rpc import ChainReadError, answers, results


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


def test_each_answer_keeps_its_place_and_an_error_its_slot(rpc_url: str) -> None:
    w3 = Web3(HTTPProvider(rpc_url, request_kwargs={"timeout": 10}))
    first, refused, last = answers(
        w3, [("eth_chainId", []), ("eth_noSuchMethod", []), ("eth_blockNumber", [])]
    )
    assert int(first["result"], 16) == w3.eth.chain_id
    assert "error" in refused and "result" not in refused
    assert int(last["result"], 16) <= w3.eth.block_number


class _ClosesIdleConnections(http.server.BaseHTTPRequestHandler):
    """A node that answers one request per connection, then drops the connection when the next
    request comes on it, without a word: as a Node.js server closing an idle keep-alive
    connection just as a request is sent on it."""

    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        calls = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if getattr(self, "_answered", False):
            self.close_connection = True
            return
        self._answered = True
        body = json.dumps([{"jsonrpc": "2.0", "id": c["id"], "result": "0x7a69"} for c in calls])
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *_args: object) -> None:
        pass


def test_a_read_the_node_dropped_on_a_pooled_connection_is_sent_again() -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _ClosesIdleConnections)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        w3 = Web3(HTTPProvider(f"http://127.0.0.1:{server.server_port}"))
        for _ in range(3):
            assert results(w3, [("eth_chainId", [])]) == ["0x7a69"]
    finally:
        server.shutdown()
        server.server_close()
