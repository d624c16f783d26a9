"""The gateway's WebSocket connection: a whole text frame goes to its charge point's connection
right where websockets parses it, and the answer is written to the transport there.

Why: websockets' asyncio API costs, per message, a queue put, a future, a task step to wake
``recv()`` and an async context manager around ``send()``; with ten thousand charge points that
was as much CPU as the OCPP work itself (bench/RESULTS.md, Gateway, "Fourth round"). Frames are
parsed in order on the one read callback, so handling them there keeps a charge point's order.

What cannot be answered at once (a handler that has to wait), fragmented and binary messages,
and everything after them go through websockets' ordinary queue, read by the connection's task,
until that queue is empty again: one path at a time, so the order holds across both.
"""

from __future__ import annotations

from typing import Any, Protocol

from websockets.asyncio.server import ServerConnection
from websockets.frames import DATA_OPCODES, Frame, Opcode
from websockets.protocol import OPEN


class FrameSink(Protocol):
    def offer(self, text: str) -> bool:
        """Handle a whole text message now; False when it has to wait (it is then queued)."""


class InlineServerConnection(ServerConnection):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._sink: FrameSink | None = None
        #: Messages handed to websockets' queue and not read from it yet.
        self._queued = 0
        self._inline = False

    def attach(self, sink: FrameSink) -> None:
        """From now on, offer whole text messages to ``sink`` whenever nothing is queued."""
        self._sink = sink
        self._inline = self._queued == 0

    def message_read(self) -> None:
        """The connection's task took one queued message: when none is left, go inline again."""
        self._queued -= 1
        if self._queued == 0 and self._sink is not None:
            self._inline = True

    def process_event(self, event: Any) -> None:
        if type(event) is Frame and event.opcode in DATA_OPCODES:
            sink = self._sink
            if (
                self._inline
                and sink is not None
                and event.fin
                and event.opcode is Opcode.TEXT
                and self.protocol.state is OPEN
            ):
                try:
                    text = str(event.data, "utf-8")
                except UnicodeDecodeError:
                    pass  # the queue's decoder refuses it and closes with 1007, as websockets does
                else:
                    if sink.offer(text):
                        return
            self._inline = False
            if event.fin:
                self._queued += 1
        super().process_event(event)

    def send_now(self, text: bytes) -> None:
        """Write a text message (UTF-8) without waiting, from the read callback or the task."""
        if self.protocol.state is not OPEN:
            return  # closing: the peer will not read it, and the queue path raises there
        self.protocol.send_text(text)
        try:
            self.send_data()
        except Exception as error:  # the transport failed: connection_lost follows
            self.set_connection_exc(error)
            return
        if self.paused:
            # The charge point is not reading its answers: stop reading its requests until it
            # does (resume_writing), as awaiting send() would have.
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        super().resume_writing()
        if not self.recv_messages.paused:  # else the queue resumes reading once it drains
            self.transport.resume_reading()
