"""Readiness probe for the test Kafka broker, used by scripts/components/components.sh.

Ready means a Metadata/DescribeCluster round trip answers with an unfenced broker and a known
controller; an open port alone is not enough (the socket accepts before KRaft has elected itself).
Exit 0 when ready within --timeout seconds, 1 otherwise (the reason goes to stderr).
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from kafka import KafkaAdminClient
from kafka.errors import KafkaError


def _describe(bootstrap: str, request_timeout_ms: int) -> dict[str, Any]:
    admin = KafkaAdminClient(
        bootstrap_servers=bootstrap,
        client_id="chargenet-components-probe",
        request_timeout_ms=request_timeout_ms,
        # The default (30 s) would outlive --timeout while the port is still closed.
        bootstrap_timeout_ms=request_timeout_ms,
        reconnect_backoff_max_ms=500,
    )
    try:
        cluster: dict[str, Any] = admin.describe_cluster()
        return cluster
    finally:
        admin.close()


def _ready_reason(cluster: dict[str, Any]) -> str | None:
    """None when the cluster is usable, else why not."""
    brokers = [b for b in cluster.get("brokers", []) if not b.get("is_fenced", False)]
    if not brokers:
        return "no unfenced broker in the cluster description yet"
    if cluster.get("controller_id", -1) < 0:
        return "no active controller yet"
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds to keep trying")
    args = parser.parse_args()
    if args.timeout <= 0:
        parser.error("--timeout must be positive")

    deadline = time.monotonic() + args.timeout
    last = "no attempt made"
    while time.monotonic() < deadline:
        remaining_ms = max(500, int((deadline - time.monotonic()) * 1000))
        try:
            cluster = _describe(args.bootstrap, min(remaining_ms, 3000))
        except (KafkaError, OSError) as exc:
            last = f"{type(exc).__name__}: {exc}"
        else:
            reason = _ready_reason(cluster)
            if reason is None:
                print(f"kafka ready: cluster {cluster.get('cluster_id')}")
                return 0
            last = reason
        time.sleep(0.3)
    print(f"kafka at {args.bootstrap} not ready: {last}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
