"""CPU seconds used so far by the distributed stack's processes and its components, per group.

Read from ``/proc`` (Linux): the services by the pids ``chargenet up`` recorded, the components
(Kafka, PostgreSQL with all its backends, the Hardhat node) by their command lines, and the
benchmark's own process (the simulated drivers and charge points). Two readings, subtracted,
say where a level's CPU went: on a 2-core machine the pipeline's rate is capped at
2 / (CPU seconds per session), whatever the latencies.
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_COMPONENTS = (("kafka.Kafka", "kafka"), ("hardhat", "node"), ("postgres", "postgres"))


def _cpu_seconds(pid: str) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime + stime


def _component(pid: str) -> str | None:
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return None
    for needle, group in _COMPONENTS:
        if needle in command:
            return group
    return None


def _machine() -> tuple[float, float]:
    """Seconds since boot the machine's CPUs spent stolen by the hypervisor, and in all."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    except (OSError, ValueError):
        return 0.0, 0.0
    return fields[7] / _TICK if len(fields) > 7 else 0.0, sum(fields[:8]) / _TICK


@dataclass(frozen=True)
class Reading:
    """CPU seconds so far per group, and the machine's: stolen by the hypervisor, and in all."""

    groups: dict[str, float]
    steal: float
    machine: float


def reading(processes: dict[str, dict[str, Any]]) -> Reading:
    """Each service (gateway replicas together), each component, and ``harness`` (this
    process)."""
    groups: defaultdict[str, float] = defaultdict(float)
    service_pids = {str(p["pid"]): str(p["service"]) for p in processes.values()}
    for pid, service in service_pids.items():
        groups[service] += _cpu_seconds(pid)
    groups["harness"] += _cpu_seconds(str(os.getpid()))
    if Path("/proc").is_dir():
        for pid in os.listdir("/proc"):
            if pid.isdigit() and pid not in service_pids and (group := _component(pid)):
                groups[group] += _cpu_seconds(pid)
    steal, machine = _machine()
    return Reading(dict(groups), steal, machine)


def per_session(before: Reading, after: Reading, sessions: int) -> str:
    """One line: CPU ms per settled session per group, their sum, and the rate 2 cores cap."""
    if sessions == 0:
        return "CPU per settled session: no session settled"
    steal, machine = after.steal - before.steal, after.machine - before.machine
    spent = {g: seconds - before.groups.get(g, 0.0) for g, seconds in after.groups.items()}
    total = sum(spent.values())
    parts = ", ".join(
        f"{group} {seconds * 1000 / sessions:.0f}"
        for group, seconds in sorted(spent.items(), key=lambda item: -item[1])
        if seconds > 0
    )
    cores = os.cpu_count() or 1
    cap = sessions * cores / total if total else 0.0
    return (
        f"CPU ms per settled session: {total * 1000 / sessions:.0f} ({parts}); "
        f"{cores} cores cap the rate at {cap:.1f} sessions/s; "
        f"the hypervisor stole {steal / machine * 100 if machine else 0:.1f}% of the machine"
    )
