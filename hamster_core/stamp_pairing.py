"""Pair each depth frame with the colour frame of the nearest stamp, whichever arrives first. ROS-free.

An RGB-D driver publishes a frameset's depth and colour images separately (realsense-ros: aligned depth and
colour share the frameset's stamp), and either may arrive first. Colouring a cloud with the newest colour frame
gives a depth frame that arrived before its colour frame the previous frame's colours, or none. Here a depth
frame whose colour partner may still come waits (at most `max_wait` depth frames, so a dead colour stream costs
a bounded delay), and is released paired with the nearest colour frame within `tolerance`, or unpaired.

Stamps are nanoseconds; colour stamps are expected to increase (a driver's stream).
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


@dataclass
class Pairing:
    depth: object
    color: object | None          # None: no colour frame within the tolerance
    offset_ns: int | None         # |depth stamp - colour stamp|


@dataclass
class StampPairer:
    tolerance_ns: int
    max_wait: int = 2             # depth frames held back for a colour frame that may still come
    keep_colors: int = 8          # recent colour frames to choose from
    _colors: deque = field(default_factory=deque, init=False)
    _waiting: deque = field(default_factory=deque, init=False)
    unpaired: dict = field(default_factory=dict, init=False)    # reason -> depth frames released without colour

    def __post_init__(self):
        if not isinstance(self.tolerance_ns, int) or self.tolerance_ns < 0:
            raise ValueError(f"tolerance_ns must be a non-negative integer, got {self.tolerance_ns!r}")
        if not isinstance(self.max_wait, int) or self.max_wait < 0:
            raise ValueError(f"max_wait must be a non-negative integer, got {self.max_wait!r}")
        if not isinstance(self.keep_colors, int) or self.keep_colors < 1:
            raise ValueError(f"keep_colors must be a positive integer, got {self.keep_colors!r}")
        self._colors = deque(maxlen=self.keep_colors)

    def add_color(self, stamp_ns: int, color) -> list[Pairing]:
        """A colour frame; returns the depth frames it completes."""
        self._colors.append((int(stamp_ns), color))
        ready = []
        while self._waiting and self._waiting[0][0] <= stamp_ns:   # the colour stream has passed them
            ready.append(self._pair(*self._waiting.popleft()))
        return ready

    def add_depth(self, stamp_ns: int, depth) -> list[Pairing]:
        """A depth frame; returns the depth frames ready now (this one, older waiting ones, or none)."""
        self._waiting.append((int(stamp_ns), depth))
        ready = []
        newest_color = self._colors[-1][0] if self._colors else None
        while self._waiting:
            stamp, frame = self._waiting[0]
            passed = newest_color is not None and newest_color >= stamp
            if passed or len(self._waiting) > self.max_wait:
                ready.append(self._pair(*self._waiting.popleft()))
            else:
                break
        return ready

    def _pair(self, stamp: int, depth) -> Pairing:
        best = min(self._colors, key=lambda item: abs(item[0] - stamp), default=None)
        if best is None or abs(best[0] - stamp) > self.tolerance_ns:
            reason = "no colour frame yet" if best is None else "no colour frame within the tolerance"
            self.unpaired[reason] = self.unpaired.get(reason, 0) + 1
            return Pairing(depth, None, None if best is None else abs(best[0] - stamp))
        return Pairing(depth, best[1], abs(best[0] - stamp))
