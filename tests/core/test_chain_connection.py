"""A node that closes an idle keep-alive connection just as a request goes out on it (Hardhat's
5 s timeout): a read is sent again on a fresh connection, a transaction the node would sign is
not (a second would be a second transaction)."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator

import pytest
import requests
from web3.types import RPCEndpoint

from chargenet.core.chain.connection import connect


class ClosingNode:
    """Answers JSON-RPC over HTTP/1.1 keep-alive, but drops its first connection unanswered
    at that connection's second request, as a node whose idle timeout fell at that moment."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.methods: list[str] = []
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn, self.connections), daemon=True).start()

    def _serve(self, conn: socket.socket, number: int) -> None:
        with conn, conn.makefile("rb") as stream:
            for answered in range(1_000):
                head = b""
                while not head.endswith(b"\r\n\r\n"):
                    line = stream.readline()
                    if not line:
                        return
                    head += line
                length = next(
                    int(h.split(b":")[1])
                    for h in head.split(b"\r\n")
                    if h.lower().startswith(b"content-length")
                )
                request = json.loads(stream.read(length))
                self.methods.append(request["method"])
                if number == 1 and answered == 1:
                    return  # closed, nothing answered
                body = json.dumps({"jsonrpc": "2.0", "id": request["id"], "result": "0x7a69"})
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    + f"Content-Length: {len(body)}\r\n\r\n{body}".encode()
                )

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def node() -> Iterator[ClosingNode]:
    server = ClosingNode()
    yield server
    server.close()


def test_a_read_on_a_connection_the_node_closed_is_sent_again(node: ClosingNode) -> None:
    w3 = connect(node.url, timeout=5)  # asks eth_chainId on the first connection

    assert w3.eth.block_number == 0x7A69  # its second request: dropped, then sent again

    assert node.methods == ["eth_chainId", "eth_blockNumber", "eth_blockNumber"]
    assert node.connections == 2


def test_a_transaction_the_node_signs_is_not_sent_again(node: ClosingNode) -> None:
    w3 = connect(node.url, timeout=5)
    sender = "0x" + "11" * 20

    with pytest.raises(requests.ConnectionError):
        w3.provider.make_request(
            RPCEndpoint("eth_sendTransaction"), [{"from": sender, "to": sender, "value": "0x1"}]
        )

    assert node.methods == ["eth_chainId", "eth_sendTransaction"]
