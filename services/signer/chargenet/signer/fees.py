"""EIP-1559 fees: what to offer for a new transaction, and how much more for a re-send."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FeePolicy:
    priority_fee: int
    cap: int
    bump_percent: int

    def offer(self, base_fee: int) -> tuple[int, int]:
        """(max fee, priority fee): twice the base fee survives six full blocks of +12.5%."""
        tip = min(self.priority_fee, self.cap)
        return min(self.cap, 2 * base_fee + tip), tip

    def bump(self, max_fee: int, tip: int, base_fee: int) -> tuple[int, int] | None:
        """A replacement offer: both fees up by at least ``bump_percent`` (nodes demand 10%),
        and at least what a new transaction would get now; None when the cap forbids it."""
        new_tip = max(_raised(tip, self.bump_percent), min(self.priority_fee, self.cap))
        new_max = max(_raised(max_fee, self.bump_percent), 2 * base_fee + new_tip)
        if new_max > self.cap:
            new_max = self.cap
            if new_max < _raised(max_fee, self.bump_percent):
                return None
        new_tip = min(new_tip, new_max)
        if new_tip < _raised(tip, self.bump_percent):
            return None
        return new_max, new_tip


def _raised(value: int, percent: int) -> int:
    # Rounded up, so 1 wei still moves.
    return value + max(1, -(-value * percent // 100))
