"""Rate and jitter of a periodic loop, measured where it runs (a subscriber's view adds transport delay)."""
from __future__ import annotations

from collections import deque

import numpy as np


class IntervalStats:
    """Keeps the last `window` intervals between ticks."""

    def __init__(self, window: int = 1000):
        if window < 2:
            raise ValueError(f"window must be >= 2, got {window}")
        self._intervals: deque[float] = deque(maxlen=window)
        self._last: float | None = None

    def tick(self, now: float) -> None:
        if self._last is not None:
            self._intervals.append(now - self._last)
        self._last = now

    def summary(self) -> dict[str, float]:
        if not self._intervals:
            return {}
        intervals = np.asarray(self._intervals)
        return {"rate_hz": round(float(1.0 / intervals.mean()), 2),
                "interval_p50_ms": round(float(np.percentile(intervals, 50) * 1e3), 3),
                "interval_p99_ms": round(float(np.percentile(intervals, 99) * 1e3), 3),
                "interval_max_ms": round(float(intervals.max() * 1e3), 3)}


class ClockWatchdog:
    """Notices a clock that stopped advancing. Sim time stands still when /clock stops (the simulator died):
    staleness measured in it would never show, so the runtime watches it against wall time."""

    def __init__(self, timeout_sec: float):
        if not timeout_sec > 0:
            raise ValueError(f"timeout_sec must be positive, got {timeout_sec!r}")
        self.timeout_sec = float(timeout_sec)
        self._seen: tuple[float | None, float] | None = None   # (clock reading, wall time it was first read)

    def stopped_for(self, clock_now: float, wall_now: float) -> float:
        """Seconds the clock has stood still, when that exceeds the timeout; else 0."""
        if self._seen is None or clock_now != self._seen[0]:
            self._seen = (clock_now, wall_now)
        still = wall_now - self._seen[1]
        return still if still > self.timeout_sec else 0.0
