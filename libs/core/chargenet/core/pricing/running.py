"""A running session's price, kept up to date sample by sample.

The escrow's budget check and the wallet's live view price a session after every meter value.
Re-pricing all its samples each time made a session's total pricing work grow with the square of
its length; :class:`RunningPrice` books each new sample once (:class:`~.engine.Pricer`), and
``price_samples`` is the same thing fed all at once, so the two cannot disagree.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from datetime import datetime
from zoneinfo import ZoneInfo

from chargenet.core.pricing.engine import Pricer
from chargenet.core.pricing.result import PriceResult
from chargenet.core.pricing.tariff import Tariff
from chargenet.core.pricing.usage import (
    Interval,
    MeterSample,
    PricingError,
    between_samples,
    parking_after,
    same_moment,
)


class RunningPrice:
    """The price of the samples added so far, in time order.

    The interval up to the last moment stays unbooked until a later moment comes: another
    reading of that moment may still raise its register (:func:`~.usage.same_moment`), and a
    booked interval cannot change.
    """

    def __init__(self, tariff: Tariff, *, time_zone: str | ZoneInfo = "UTC") -> None:
        self.tariff = tariff
        self.time_zone = time_zone
        self.count = 0
        self._pricer: Pricer | None = None
        self._last: MeterSample | None = None
        self._before: MeterSample | None = None  # the reading the pending interval starts at
        self._pending: Interval | None = None

    @property
    def last(self) -> MeterSample | None:
        return self._last

    def copy(self) -> RunningPrice:
        """A price to add to while this one stays as it is (until a transaction commits)."""
        running = RunningPrice(self.tariff, time_zone=self.time_zone)
        running.count, running._last = self.count, self._last
        running._before, running._pending = self._before, self._pending
        running._pricer = None if self._pricer is None else self._pricer.copy()
        return running

    def extended(
        self, samples: Sequence[MeterSample], *, drop_backwards: bool = False
    ) -> RunningPrice | None:
        """A copy with ``samples`` booked after those so far, in time order; None if one is not
        later than the last booked (then only all the samples in order give the same price).
        ``drop_backwards``: a reading below the last booked register is left out, as the escrow
        leaves it out of all its samples, instead of refused."""
        last = self._last
        if last is None or any(sample.timestamp <= last.timestamp for sample in samples):
            return None
        extended = self.copy()
        for sample in sorted(samples, key=lambda s: (s.timestamp, s.energy_wh)):
            booked = extended._last
            if drop_backwards and booked is not None and sample.energy_wh < booked.energy_wh:
                continue
            extended.add(sample)
        return extended

    def add(self, sample: MeterSample) -> None:
        """Book the next sample; one the engine refuses raises PricingError and changes nothing."""
        last = self._last
        if self._pricer is None or last is None:
            self._pricer = Pricer(self.tariff, sample.timestamp, time_zone=self.time_zone)
            self._last = sample
        elif sample.timestamp == last.timestamp:
            merged = same_moment(last, sample)
            if self._before is not None:
                start = self._pricer.start
                self._pending = between_samples(start, self._before, merged, index=self.count)
            self._last = merged
        else:
            interval = between_samples(self._pricer.start, last, sample, index=self.count)
            if self._pending is not None:
                self._pricer.add(self._pending)
            self._before, self._last, self._pending = last, sample, interval
        self.count += 1

    def result(self, *, end: datetime | None = None) -> PriceResult:
        """The price so far; ``end`` adds the parked time after the last sample."""
        if self._pricer is None or self._last is None:
            raise PricingError("no meter samples: at least one reading is needed")
        tail = parking_after(self._pricer.start, self._last, end)
        then = [i for i in (self._pending, tail) if i is not None]
        return self._pricer.result(then=then)


class RunningPrices:
    """The running prices of the sessions a process priced lately (least recently used go).

    An entry is the process's memory, not the truth: it is put with the number of stored samples
    (the caller's rows) it was built from, and handed out only to a caller that has that many
    stored, so an entry that missed some (another replica priced them, the process restarted)
    is rebuilt from the rows instead.
    """

    def __init__(self, size: int = 10_000) -> None:
        self.size = size
        self._entries: OrderedDict[str, tuple[RunningPrice, int]] = OrderedDict()

    def __contains__(self, session_id: str) -> bool:
        """Whether there is an entry at all (a caller with none skips counting its samples)."""
        return session_id in self._entries

    def get(self, session_id: str, *, covering: int) -> RunningPrice | None:
        entry = self._entries.get(session_id)
        if entry is None or entry[1] != covering:
            return None
        self._entries.move_to_end(session_id)
        return entry[0]

    def put(self, session_id: str, running: RunningPrice, *, covering: int) -> None:
        self._entries[session_id] = (running, covering)
        self._entries.move_to_end(session_id)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)

    def forget(self, session_id: str) -> None:
        self._entries.pop(session_id, None)
