"""CPU to price a running session after one more meter sample, by the session's length so far:
pricing all its samples again (what the escrow and the wallet did) against the running price.
Then the CPU to hash a CDR (what every settlement puts on chain): canonical JSON through the
general encoder against its quick path, and keccak.

    uv run python bench/pricing.py

A session at one sample a minute: 15 samples is a quarter of an hour, 600 ten hours (an
overnight AC session). Uses the Berlin tariff with every kind of restriction from the tests.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from eth_utils.crypto import keccak

from chargenet.core.pricing import MeterSample, RunningPrice, cdr_hash, price_samples
from chargenet.core.pricing.canonical import _encode

sys.path.insert(0, str(Path(__file__).parent.parent / "tests" / "pricing"))
from test_cdr_and_models import load_tariff, make_cdr, samples_crossing_power_and_clock
from test_running import RESTRICTED  # the tests' tariff with every rule: defined once

LENGTHS = (15, 60, 360, 600)


def _samples(count: int) -> list[MeterSample]:
    start = datetime(2024, 3, 29, 20, 0, tzinfo=UTC)
    return [
        MeterSample(
            timestamp=start + timedelta(minutes=i), energy_wh=Decimal(i * 180), power_kw=Decimal(11)
        )
        for i in range(count)
    ]


def _cpu_ms(call: Callable[[], object], repeat: int) -> float:
    call()  # warm-up
    started = time.process_time()
    for _ in range(repeat):
        call()
    return (time.process_time() - started) * 1000 / repeat


def _running_session(samples: list[MeterSample]) -> None:
    """What a service now does over a whole session: each sample booked, then the price read."""
    running = RunningPrice(RESTRICTED, time_zone="Europe/Berlin")
    for sample in samples:
        running.add(sample)
        running.result()


def main() -> int:
    print("CPU ms to price a running session after its latest sample (one sample a minute)")
    print("| samples so far | price all again | running price (mean per sample) |")
    print("|---|---|---|")
    for count in LENGTHS:
        samples = _samples(count)
        again = _cpu_ms(
            lambda s=samples: price_samples(RESTRICTED, s, time_zone="Europe/Berlin"),
            max(3, 600 // count),
        )
        whole = _cpu_ms(lambda s=samples: _running_session(s), max(2, 120 // count))
        print(f"| {count} | {again:.2f} | {whole / count:.3f} |")
    cdr = make_cdr(load_tariff("tariff_complex.json"), samples_crossing_power_and_clock())

    def general() -> bytes:
        document = cdr.model_dump(mode="python")
        return bytes(keccak(_encode(document, indent=None, level=0, canonical=True).encode()))

    assert general() == cdr_hash(cdr)
    print("\nCPU us to hash the tests' complex-tariff CDR (model dump, canonical JSON, keccak)")
    print(f"general encoder: {_cpu_ms(general, 2000) * 1000:.0f}")
    print(f"quick path (cdr_hash): {_cpu_ms(lambda: cdr_hash(cdr), 2000) * 1000:.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
