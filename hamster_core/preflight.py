"""Pre-flight checks before a real episode, ROS-free: each takes what a probe recorded and returns a named
pass/fail row. hamster_franka.preflight collects the data from a running robot (or the simulator) and prints the
table.
"""
from __future__ import annotations

import math

from dataclasses import dataclass

import numpy as np

from hamster_core.geometry import Pose

# The Franka hand's finger pads: the camera sees their outer faces about this far outside the TCP's
# +-width/2 (measured on the FR3 hand model: 2.8 mm from the keypoint with this offset, 14.5 mm without).
FINGER_SURFACE_OFFSET = 0.012
CALIBRATION_TOLERANCE = 0.02   # m: a finger pad keypoint must have a cloud point within this distance


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool | None        # None: skipped (detail says why)
    value: str
    expected: str
    detail: str = ""

    @property
    def verdict(self) -> str:
        return {True: "PASS", False: "FAIL", None: "SKIP"}[self.passed]

    def as_dict(self) -> dict:
        return {"name": self.name, "verdict": self.verdict, "value": self.value, "expected": self.expected,
                "detail": self.detail}


def rate_check(name: str, receive_times: list[float], expected_hz: float, window_sec: float, now: float,
               tolerance: float = 0.8) -> Check:
    """Alive at >= tolerance * expected_hz over the window, and not stalled at its end."""
    expected = f">= {tolerance * expected_hz:.1f} Hz"
    times = sorted(receive_times)
    if not times:
        return Check(name, False, "no messages", expected, f"nothing received in {window_sec:.1f} s")
    silent = now - times[-1]
    if silent > max(3.0 / expected_hz, 0.5):
        return Check(name, False, f"stalled {silent:.2f} s", expected,
                     f"{len(times)} messages, then none for {silent:.2f} s")
    if len(times) < 2:
        return Check(name, False, "1 message", expected, "only one message in the window")
    rate = (len(times) - 1) / max(times[-1] - times[0], 1e-9)
    return Check(name, rate >= tolerance * expected_hz, f"{rate:.1f} Hz", expected, f"{len(times)} messages")


def recency_check(name: str, stamp: float | None, now: float, max_age: float) -> Check:
    """The newest message's header stamp is recent on the receiver's clock (clocks in sync, no old data)."""
    expected = f"age in [0, {max_age * 1000:.0f}] ms"
    if stamp is None:
        return Check(name, False, "no stamp", expected, "no message")
    age = now - stamp
    detail = "stamped in the future: are the clocks synchronised (chrony/PTP)?" if age < -0.005 else ""
    return Check(name, -0.005 <= age <= max_age, f"{age * 1000:.1f} ms", expected, detail)


def sync_check(name: str, stamps_a: list[float], stamps_b: list[float], tolerance: float) -> Check:
    """The newest stamp of A has a stamp of B within tolerance (e.g. colour vs aligned depth, camera vs state).
    Newest among those B has caught up with: A's latest frame may arrive before its partner from B does (a
    colour frame a moment before its depth), and was then judged against B's previous one (100 ms off at 10 Hz)."""
    expected = f"<= {tolerance * 1000:.0f} ms"
    if not stamps_a or not stamps_b:
        return Check(name, False, "missing", expected, "one of the streams has no messages")
    caught_up = [stamp for stamp in stamps_a if stamp <= max(stamps_b) + tolerance]
    newest = max(caught_up or stamps_a)
    offset = float(np.min(np.abs(np.asarray(stamps_b) - newest)))
    return Check(name, offset <= tolerance, f"{offset * 1000:.1f} ms", expected)


def finger_keypoints(tcp: Pose, width: float) -> np.ndarray:
    """The outer faces of the two finger pads (2, 3) in the base frame: the TCP +- the hand's y axis."""
    y_axis = tcp.matrix()[:3, 1]
    offset = width / 2 + FINGER_SURFACE_OFFSET
    return np.stack([tcp.position + y_axis * offset, tcp.position - y_axis * offset])


def calibration_check(points: np.ndarray, tcp: Pose, width: float,
                      tolerance: float = CALIBRATION_TOLERANCE) -> Check:
    """The measured end effector is where the point cloud (transformed with the calibration) sees the gripper:
    some finger pad keypoint has a cloud point within `tolerance`. On the FR3 hand this catches extrinsic errors
    of >= 3 cm or >= 2 deg of tilt at the gripper; a shift along the fingers or a roll about the optical axis
    (with the hand at the image centre) can pass, so run it in two poses."""
    name = "calibration: cloud sees the gripper at the measured pose"
    expected = f"<= {tolerance * 1000:.0f} mm"
    points = np.asarray(points, dtype=float).reshape(-1, 3)
    points = points[np.all(np.isfinite(points), axis=1)]
    if len(points) == 0:
        return Check(name, False, "no points", expected, "the point cloud is empty")
    keypoints = finger_keypoints(tcp, width)
    distances = [float(np.min(np.linalg.norm(points - k, axis=1))) for k in keypoints]
    best = min(distances)
    detail = "" if best <= tolerance else ("the cloud has no gripper where the robot state puts it: check the "
                                           "calibration file (translation/rotation, optical vs camera_link frame)")
    return Check(name, best <= tolerance, f"{best * 1000:.1f} mm", expected, detail)


def format_table(checks: list[Check], title: str = "PRE-FLIGHT") -> str:
    rows = [("check", "result", "value", "expected", "detail")] + \
           [(c.name, c.verdict, c.value, c.expected, c.detail) for c in checks]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = []
    for index, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:4])) + ("  " + row[4] if row[4] else ""))
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    failed = [c.name for c in checks if c.passed is False]
    lines.append(f"{title} {'FAILED: ' + '; '.join(failed) if failed else 'PASSED'}")
    return "\n".join(lines)


# -- the controller nudge ----------------------------------------------------------------------------------
NUDGE_STATE_PERIODS = 2.0      # the nudge starts from a robot state at most this many state periods old
NUDGE_TOLERANCE = 0.005        # m between the nudge's goal and where a stiff arm went
NUDGE_SETTLE_MARGIN = 0.002    # m an impedance-controlled arm may still be moving when the nudge is judged


def nudge_tolerance(stiffness: float = 0.0, unmodelled_force: float = 0.0) -> float:
    """m between the nudge's goal and where the arm may stop. A Cartesian impedance controller of `stiffness`
    N/m stops short by the force it does not model (friction, payload error) over its stiffness: 400 N/m and 2 N
    leave 5 mm. 0 stiffness: a stiff arm, NUDGE_TOLERANCE."""
    if not (math.isfinite(stiffness) and stiffness >= 0 and math.isfinite(unmodelled_force) and unmodelled_force >= 0):
        raise ValueError(f"stiffness and unmodelled force must be >= 0, got {stiffness!r} N/m, {unmodelled_force!r} N")
    if stiffness == 0:
        return NUDGE_TOLERANCE
    return NUDGE_SETTLE_MARGIN + unmodelled_force / stiffness


def nudge_blocker(checks: list[Check], state_topic: str) -> str | None:
    """Why hamster-preflight must not move the arm (None: it may): the robot's mode/errors, and its state
    stream's aliveness and recency, must all have passed (a failed or skipped row blocks the nudge)."""
    required = ("robot: mode and errors", f"alive: {state_topic}", f"recent: {state_topic}")
    rows = {c.name: c for c in checks}
    problems = []
    for name in required:
        row = rows.get(name)
        if row is None:
            problems.append(f"'{name}' was not checked")
        elif row.passed is not True:
            problems.append(f"'{name}' {'failed' if row.passed is False else 'was skipped'} ({row.value})")
    return None if not problems else "not nudged: " + "; ".join(problems)


def nudge_start_problem(stamp_age: float, receive_age: float, state_hz: float,
                        periods: float = NUDGE_STATE_PERIODS) -> str | None:
    """Why the newest robot state is too old to start the nudge from (None: fresh enough). `stamp_age`: now minus
    its header stamp on the probe's clock; `receive_age`: wall time since it arrived."""
    limit = periods / state_hz
    if not -0.005 <= stamp_age <= limit:
        return f"not nudged: the newest robot state is stamped {stamp_age * 1000:.1f} ms ago (> {limit * 1000:.0f} ms)"
    if receive_age > limit:
        return f"not nudged: no robot state for {receive_age * 1000:.1f} ms (> {limit * 1000:.0f} ms)"
    return None


def nudge_ramp(start: Pose, goal_position, max_linear_speed: float, rate_hz: float,
               workspace_min, workspace_max) -> list[Pose]:
    """The targets from `start` to `goal_position` at max_linear_speed, one per 1/rate_hz, ending on the goal
    (orientation held). Raises ValueError when the start or the goal is outside the workspace box."""
    low, high = np.asarray(workspace_min, float), np.asarray(workspace_max, float)
    goal = np.asarray(goal_position, dtype=float)
    for what, point in (("the start", start.position), ("the goal", goal)):
        if np.any(point < low - 1e-9) or np.any(point > high + 1e-9):
            raise ValueError(f"not nudged: {what} {np.round(point, 3).tolist()} is outside the workspace "
                             f"{low.tolist()}..{high.tolist()}")
    if not (max_linear_speed > 0 and rate_hz > 0):
        raise ValueError(f"max_linear_speed and rate_hz must be positive, got {max_linear_speed}, {rate_hz}")
    distance = float(np.linalg.norm(goal - start.position))
    steps = max(1, int(np.ceil(distance / (max_linear_speed / rate_hz) - 1e-9)))
    return [Pose(start.position + (goal - start.position) * (i / steps), start.orientation)
            for i in range(1, steps + 1)]


@dataclass(frozen=True)
class ExpectedInterface:
    """A name the runtime needs from the robot side (`hamster-preflight --interfaces`)."""
    kind: str                  # "publisher" / "subscriber" (of a topic: the side the robot must have), "action",
    name: str                  # "service"
    type: str
    provider: str              # who provides it on a robot PC
    needed_for: str            # what of the runtime's uses it


@dataclass(frozen=True)
class GraphView:
    """What the ROS graph shows: topic -> (publishers, subscribers) not counting the viewer, and the names of the
    action servers and services that are up."""
    topics: dict
    actions: frozenset
    services: frozenset


def interface_checks(expected: list[ExpectedInterface], graph: GraphView) -> list[Check]:
    """A row per expected interface: PASS when the graph has its provider, FAIL naming what is missing."""
    checks = []
    for item in expected:
        publishers, subscribers = graph.topics.get(item.name, (0, 0))
        if item.kind == "publisher":
            seen, value = publishers > 0, f"{publishers} publisher(s)"
        elif item.kind == "subscriber":
            seen, value = subscribers > 0, f"{subscribers} subscriber(s)"
        elif item.kind == "action":
            seen = item.name in graph.actions
            value = "server up" if seen else "no server"
        elif item.kind == "service":
            seen = item.name in graph.services
            value = "up" if seen else "not offered"
        else:
            raise ValueError(f"unknown interface kind {item.kind!r}")
        checks.append(Check(f"{item.kind}: {item.name}", seen, value, item.type,
                            f"{item.provider}, for {item.needed_for}" if seen else
                            f"missing (for {item.needed_for}): is {item.provider} running, under this name?"))
    return checks
