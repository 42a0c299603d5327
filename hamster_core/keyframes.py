"""Keyframes of a recorded end-effector trajectory, and how far a policy's keyframes are from them.

The heuristic is the one PerAct, RVT and HAMSTER use to turn demonstrations into keyframe training targets:
a sample is a keyframe when the gripper changes state, or when the arm comes to a stop (it reached a target
the operator or controller aimed at); the last sample is always one. Generic over where the trajectory
comes from (a bag, a simulator log, a training set), so it only takes arrays. Pure numpy, no ROS.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hamster_core.executor import Keyframe
from hamster_core.geometry import Pose, quaternion_angle
from hamster_core.path2d import GripperState


#: Which recorded frames become training samples (hamster_bag.demonstration_dataset.load_demonstration_samples documents them).
SAMPLE_FRAMES = ("keyframes", "moving")


@dataclass(frozen=True)
class KeyframeSettings:
    stop_speed: float = 0.01          # m/s: slower than this counts as stopped
    min_stop_sec: float = 0.15        # a stop must last this long (one slow sample in a turn is not a stop)
    min_separation_sec: float = 0.3   # keyframes closer in time than this merge (a gripper change wins)
    smoothing_sec: float = 0.1        # speed is measured over this window, so sensor noise is not motion

    def __post_init__(self):
        for name in ("stop_speed", "min_stop_sec", "min_separation_sec", "smoothing_sec"):
            value = getattr(self, name)
            if not np.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite non-negative number, got {value!r}")


#: The Franka hand's opening (m): each finger joint (fr3_finger_joint1/2) moves 0..0.04 (franka_description
#: hand.xacro), the total width is their sum.
FRANKA_HAND_WIDTH_RANGE = (0.0, 0.08)


def gripper_closed_from_widths(widths, width_range=FRANKA_HAND_WIDTH_RANGE, hysteresis: float = 0.125,
                               start_closed: bool | None = None) -> np.ndarray:
    """Gripper state from measured finger widths, with hysteresis: while open the state turns closed once the
    width falls `hysteresis` x the hand's range below the widest width since it opened; while closed it turns
    open once the width rises that much above the narrowest width since it closed. So a grasp on any object
    narrower than the hand's range minus the margin counts, and a partial re-open after a release counts too
    (an absolute threshold at half the observed range misses a release that does not re-open that far).
    The first sample is closed when narrower than the middle of the range (unless `start_closed` says)."""
    widths = np.asarray(widths, dtype=float)
    if widths.ndim != 1 or len(widths) == 0 or not np.all(np.isfinite(widths)):
        raise ValueError(f"widths must be a non-empty finite 1D array, got shape {widths.shape}")
    low, high = (float(v) for v in width_range)
    if not high > low or not 0 < hysteresis < 1:
        raise ValueError(f"need width_range low < high and 0 < hysteresis < 1, got {width_range!r}, {hysteresis!r}")
    margin = hysteresis * (high - low)
    closed = np.empty(len(widths), bool)
    state = bool(widths[0] < (low + high) / 2) if start_closed is None else bool(start_closed)
    extreme = widths[0]
    for index, width in enumerate(widths):
        if state and width >= extreme + margin:
            state, extreme = False, width
        elif not state and width <= extreme - margin:
            state, extreme = True, width
        extreme = min(extreme, width) if state else max(extreme, width)
        closed[index] = state
    return closed


def extract_keyframes(times, positions, orientations, closed, settings: KeyframeSettings = KeyframeSettings()
                      ) -> list[tuple[int, Keyframe]]:
    """(sample index, Keyframe) for a trajectory of N samples: times (N,) seconds, increasing; positions (N, 3);
    orientations (N, 4) x, y, z, w; closed (N,) bool gripper state. A keyframe's `gripper` is the state
    commanded there when it changed at that sample, else None. The first sample (the start) is not a keyframe.
    """
    times = np.asarray(times, dtype=float)
    positions = np.asarray(positions, dtype=float)
    orientations = np.asarray(orientations, dtype=float)
    closed = np.asarray(closed, dtype=bool)
    n = len(times)
    if n == 0 or positions.shape != (n, 3) or orientations.shape != (n, 4) or closed.shape != (n,):
        raise ValueError(f"need N >= 1 samples with times (N,), positions (N, 3), orientations (N, 4) and "
                         f"closed (N,); got {times.shape}, {positions.shape}, {orientations.shape}, {closed.shape}")
    if not (np.all(np.isfinite(times)) and np.all(np.isfinite(positions))) or np.any(np.diff(times) < 0):
        raise ValueError("times must be finite and non-decreasing and positions finite")

    changes = [i for i in range(1, n) if closed[i] != closed[i - 1]]
    if closed[0]:  # closed from the start: that is a change from the (assumed) open state before it
        changes.insert(0, 0)
    speed = _speeds(times, positions, settings.smoothing_sec)
    candidates = {i: (GripperState.CLOSED if closed[i] else GripperState.OPEN) for i in changes}
    stopped = speed < settings.stop_speed
    start = None
    for i in range(n + 1):
        if i < n and stopped[i]:
            start = i if start is None else start
            continue
        if start is not None and times[i - 1] - times[start] >= settings.min_stop_sec and start > 0:
            candidates.setdefault(start, None)  # the moment the arm arrived
        start = None
    candidates.setdefault(n - 1, None)

    kept: list[int] = []
    for i in sorted(candidates):
        if kept and times[i] - times[kept[-1]] < settings.min_separation_sec:
            # Too close to the previous keyframe: keep one of the two, the one with a gripper change.
            if candidates[i] is not None and candidates[kept[-1]] is None:
                kept[-1] = i
            elif i == n - 1 and candidates[kept[-1]] is None:
                kept[-1] = i
            continue
        kept.append(i)
    if 0 in kept and candidates[0] is None:
        kept.remove(0)
    return [(i, Keyframe(Pose(positions[i], orientations[i]), candidates[i])) for i in kept]


def _speeds(times: np.ndarray, positions: np.ndarray, window: float) -> np.ndarray:
    """Speed at every sample over a centred window of about `window` seconds."""
    n = len(times)
    if n < 2:
        return np.zeros(n)
    low = np.searchsorted(times, times - window / 2, side="left")
    high = np.clip(np.searchsorted(times, times + window / 2, side="right") - 1, 0, n - 1)
    low = np.minimum(low, np.maximum(high - 1, 0))
    high = np.maximum(high, np.minimum(low + 1, n - 1))
    elapsed = times[high] - times[low]
    distance = np.linalg.norm(positions[high] - positions[low], axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(elapsed > 0, distance / elapsed, 0.0)


def compare_keyframes(predicted: list[Keyframe], reference: list[Keyframe]) -> dict:
    """Errors of a policy's keyframes against reference (e.g. expert) keyframes.

    Keyframes are paired in order by dynamic time warping over their positions, so an extra approach pose
    on one side does not shift every later pair. Also compares the first grasp (first CLOSED) and first
    release after it (OPEN) directly, the two poses that decide a pick-and-place, and whether the gripper
    commands come in the same order.
    """
    if not predicted or not reference:
        raise ValueError(f"need keyframes on both sides, got {len(predicted)} and {len(reference)}")
    pairs = _dtw_pairs(np.array([k.pose.position for k in predicted]), np.array([k.pose.position for k in reference]))
    translation = [float(np.linalg.norm(predicted[i].pose.position - reference[j].pose.position)) for i, j in pairs]
    rotation = [float(np.degrees(quaternion_angle(predicted[i].pose.orientation, reference[j].pose.orientation)))
                for i, j in pairs]
    commands_mine = [k.gripper for k in predicted if k.gripper is not None]
    commands_theirs = [k.gripper for k in reference if k.gripper is not None]
    result = {
        "predicted_keyframes": len(predicted), "reference_keyframes": len(reference),
        "translation_error_mean": float(np.mean(translation)), "translation_error_max": float(np.max(translation)),
        "rotation_error_mean_deg": float(np.mean(rotation)), "rotation_error_max_deg": float(np.max(rotation)),
        "gripper_same_sequence": [int(c) for c in commands_mine] == [int(c) for c in commands_theirs],
    }
    for name, (mine, theirs) in (("grasp", (_grasp(predicted), _grasp(reference))),
                                 ("release", (_release(predicted), _release(reference)))):
        if mine is not None and theirs is not None:
            result[f"{name}_translation_error"] = float(np.linalg.norm(mine.pose.position - theirs.pose.position))
            result[f"{name}_rotation_error_deg"] = float(np.degrees(quaternion_angle(mine.pose.orientation,
                                                                                     theirs.pose.orientation)))
        else:
            result[f"{name}_translation_error"] = None
            result[f"{name}_rotation_error_deg"] = None
    return result


def _grasp(keyframes: list[Keyframe]) -> Keyframe | None:
    return next((k for k in keyframes if k.gripper == GripperState.CLOSED), None)


def _release(keyframes: list[Keyframe]) -> Keyframe | None:
    closes = [i for i, k in enumerate(keyframes) if k.gripper == GripperState.CLOSED]
    if not closes:
        return None
    return next((k for k in keyframes[closes[0] + 1:] if k.gripper == GripperState.OPEN), None)


def _dtw_pairs(a: np.ndarray, b: np.ndarray) -> list[tuple[int, int]]:
    """Index pairs of the minimum-cost monotonic alignment of two point sequences."""
    cost = np.linalg.norm(a[:, None, :] - b[None, :, :], axis=2)
    n, m = cost.shape
    total = np.full((n + 1, m + 1), np.inf)
    total[0, 0] = 0.0
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            total[i, j] = cost[i - 1, j - 1] + min(total[i - 1, j - 1], total[i - 1, j], total[i, j - 1])
    pairs, i, j = [], n, m
    while i > 0 and j > 0:
        pairs.append((i - 1, j - 1))
        step = int(np.argmin([total[i - 1, j - 1], total[i - 1, j], total[i, j - 1]]))
        i, j = (i - 1, j - 1) if step == 0 else (i - 1, j) if step == 1 else (i, j - 1)
    return pairs[::-1]
