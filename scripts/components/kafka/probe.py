"""Readiness probe for the test Kafka broker, used by scripts/components/components.sh.

Ready means a Metadata/DescribeCluster round trip answers with an unfenced broker and a known
controller; an open port alone is not enough (the socket accepts before KRaft has elected itself).
Exit 0 when ready within --timeout seconds, 1 otherwise (the reason goes to stderr).
"""

from __future__ import annotations

import argparse
import sys
import time

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient


def _ready_reason(bootstrap: str, timeout: float) -> str | None:
    """None when the cluster is usable, else why not.

    KRaft leaves fenced brokers out of metadata answers, so a listed broker is a usable one.
    """
    admin = AdminClient(
        {
            "bootstrap.servers": bootstrap,
            "client.id": "chargenet-components-probe",
            # librdkafka would otherwise print every refused connection while the broker starts.
            "log_level": 0,
        }
    )
    metadata = admin.list_topics(timeout=timeout)
    if not metadata.brokers:
        return "no unfenced broker in the cluster metadata yet"
    if metadata.controller_id < 0:
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
        remaining = max(0.5, deadline - time.monotonic())
        try:
            reason = _ready_reason(args.bootstrap, min(remaining, 3.0))
        except KafkaException as exc:
            last = f"no metadata: {exc.args[0].str() if exc.args else exc}"
        else:
            if reason is None:
                print(f"kafka ready at {args.bootstrap}")
                return 0
            last = reason
        time.sleep(0.3)
    print(f"kafka at {args.bootstrap} not ready: {last}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
