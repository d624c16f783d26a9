"""Simulated OCPP charge points (1.6J and 2.0.1) for tests, the demo and benchmarks.

``ChargePoint16`` / ``ChargePoint201`` are full charge points on the ``ocpp`` library: they boot,
heartbeat, report status, authorize, run transactions with (signed) meter values and answer the
central system's commands. ``raw`` has a lean frame-level client for load and bad-input tests.
"""

from chargenet.core.ocpp_sim.base import ReceivedCommand
from chargenet.core.ocpp_sim.connect import Endpoint, Protocol, basic_auth_header, open_socket
from chargenet.core.ocpp_sim.v16 import ChargePoint16
from chargenet.core.ocpp_sim.v201 import ChargePoint201

__all__ = [
    "ChargePoint16",
    "ChargePoint201",
    "Endpoint",
    "Protocol",
    "ReceivedCommand",
    "basic_auth_header",
    "open_socket",
]
