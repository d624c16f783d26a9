"""Gateway metrics. Labels stay bounded (actions, directions, reasons): no charge point ids."""

from __future__ import annotations

from chargenet.core.metrics import Children, counter, gauge, histogram

CONNECTED = gauge(
    "chargenet_gateway_connected_charge_points", "Charge points with an open socket", ("version",)
)
# Children: counted on every message.
MESSAGES = Children(
    counter(
        "chargenet_gateway_messages",
        "OCPP messages by action and direction (in: from charge points, out: to them)",
        ("action", "direction"),
    )
)
HANDLER_LATENCY = Children(
    histogram(
        "chargenet_gateway_handler_latency_seconds",
        "From a charge point's CALL arriving to its answer being written",
        ("action",),
    )
)
COMMAND_RESULTS = counter(
    "chargenet_gateway_command_results",
    "Command results by action and outcome",
    ("action", "outcome"),
)
REJECTED_FRAMES = counter(
    "chargenet_gateway_rejected_frames", "Frames refused or ignored, by reason", ("reason",)
)
REFUSED_CONNECTIONS = counter(
    "chargenet_gateway_refused_connections", "WebSocket upgrades refused, by reason", ("reason",)
)
PUBLISH_FAILURES = counter(
    "chargenet_gateway_publish_failures", "Events the bus refused (logged with their ids)"
)
UNREAD_SIGNED_READINGS = counter(
    "chargenet_gateway_unread_signed_readings",
    "Signed meter values without a register reading whose record gave no energy: left out",
)
DISCONNECTS = counter(
    "chargenet_gateway_disconnects", "Charge point sockets closed, by reason", ("reason",)
)

#: Close codes as bounded reasons (the close reason text itself is free-form: it goes to the log).
DISCONNECT_REASONS = {
    1000: "normal",
    1001: "going_away",
    1008: "policy",  # e.g. a flood of frames
    1009: "oversized_frame",
    1011: "server_error",
    4001: "replaced",
}


def disconnect_reason(close_code: int | None) -> str:
    if close_code is None:
        return "lost"
    return DISCONNECT_REASONS.get(close_code, "other")
