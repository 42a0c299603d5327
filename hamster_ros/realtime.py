"""Scheduling for the Cartesian target stream's thread and the executor thread beside it.

The stream's jitter comes from two places: the scheduler (other processes run while the stream thread waits)
and the GIL (held by the thread that spins the node's executor, worst when that thread is preempted while
holding it). So: SCHED_FIFO for the stream thread, a short GIL switch interval, and SCHED_FIFO below the
stream's for the executor thread. What each step measured is in the README ("Reliability and timing").
"""
from __future__ import annotations

import os
import sys


def check_priority(priority: int, name: str = "priority") -> int:
    if not isinstance(priority, int) or isinstance(priority, bool) or not 0 <= priority <= 99:
        raise ValueError(f"{name} must be an integer in [0, 99], got {priority!r}")
    return priority


def check_switch_interval(seconds: float) -> float:
    if not 1e-5 <= seconds <= 0.1:
        raise ValueError(f"gil_switch_interval_sec must be in [1e-05, 0.1], got {seconds!r}")
    return float(seconds)


def set_gil_switch_interval(seconds: float) -> None:
    """How long a thread running Python may keep the GIL once another thread waits for it (CPython's default
    is 5 ms, which shows up whole in the stream's p99). Process-wide."""
    sys.setswitchinterval(check_switch_interval(seconds))


def make_current_thread_realtime(priority: int) -> str | None:
    """SCHED_FIFO at `priority` for the calling thread; 0 leaves it alone. Returns None, or why it was refused
    (no rtprio rights: add the user to a group with an rtprio limit, as a Franka control PC has)."""
    if check_priority(priority) == 0:
        return None
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))  # 0 = this thread on Linux
    except (OSError, AttributeError) as error:
        return f"{type(error).__name__}: {error}"
    return None


def make_current_thread_normal() -> None:
    """Back to SCHED_OTHER: for threads that inherit a real-time policy from their creator but compute."""
    try:
        os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
    except (OSError, AttributeError):
        pass
