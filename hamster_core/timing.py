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
