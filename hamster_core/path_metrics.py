"""How far apart two 2D paths (or two masks) are: the numbers offline evaluation reports.

Paths are compared in normalized image coordinates ([0, 1] on both axes), so results do not depend on the
image size. Fréchet and DTW work on the point sequences as given; `compare_paths` first resamples both paths
evenly by arc length, so a path with many points along a straight line does not weigh more than one with two.
Pure numpy, no ROS.
"""
from __future__ import annotations

import numpy as np

from hamster_core.path2d import GripperState, Path2D, resample

DEFAULT_SAMPLES = 50  # points per path after arc-length resampling in compare_paths


def _sequence(points, name: str) -> np.ndarray:
    points = np.asarray(points, dtype=float)
    if points.ndim != 2 or len(points) == 0 or not np.all(np.isfinite(points)):
        raise ValueError(f"{name} must be a non-empty finite (N, D) array, got shape {points.shape}")
    return points


def _distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"point dimensions differ: {a.shape[1]} and {b.shape[1]}")
    return np.linalg.norm(a[:, None, :] - b[None, :, :], axis=2)


def discrete_frechet(a, b) -> float:
    """Discrete Fréchet distance (Eiter & Mannila): the shortest leash that lets two walkers traverse the
    sequences in order, each only stepping forward. Computed one anti-diagonal at a time, O(N*M)."""
    a, b = _sequence(a, "a"), _sequence(b, "b")
    cost = _distances(a, b)
    n, m = cost.shape
    table = np.empty((n, m))
    for i in range(n):
        for j in range(m):
            if i == 0 and j == 0:
                previous = 0.0
            elif i == 0:
                previous = table[0, j - 1]
            elif j == 0:
                previous = table[i - 1, 0]
            else:
                previous = min(table[i - 1, j], table[i - 1, j - 1], table[i, j - 1])
            table[i, j] = max(previous, cost[i, j])
    return float(table[-1, -1])


def dtw_distance(a, b, *, normalize: bool = True) -> float:
    """Dynamic time warping with Euclidean point costs. normalize=True divides the total cost of the best
    warping path by that path's length (the mean matched-point distance), so it is comparable across paths
    of different lengths; normalize=False gives the plain sum."""
    a, b = _sequence(a, "a"), _sequence(b, "b")
    cost = _distances(a, b)
    n, m = cost.shape
    total = np.full((n + 1, m + 1), np.inf)
    steps = np.zeros((n + 1, m + 1), dtype=np.int64)
    total[0, 0] = 0.0
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            choices = ((total[i - 1, j - 1], steps[i - 1, j - 1]), (total[i - 1, j], steps[i - 1, j]),
                       (total[i, j - 1], steps[i, j - 1]))
            best, length = min(choices, key=lambda c: (c[0], c[1]))
            total[i, j] = best + cost[i - 1, j - 1]
            steps[i, j] = length + 1
    return float(total[n, m] / steps[n, m]) if normalize else float(total[n, m])


def gripper_events(path: Path2D) -> list[tuple[int, GripperState]]:
    """(index, new state) at every gripper change (OPEN is assumed before the path starts)."""
    return [(int(i), GripperState(int(path.gripper[i]))) for i in path.gripper_change_indices()]


def gripper_event_agreement(predicted: Path2D, reference: Path2D) -> dict:
    """Do both paths close and open the gripper in the same order, and how far apart are those points?

    `same_sequence` compares the sequences of new states; `event_errors` are the normalized distances between
    corresponding events (in order, up to the shorter sequence); `matched_fraction` is the share of the
    reference's events that the prediction reproduces in order.
    """
    mine, theirs = gripper_events(predicted), gripper_events(reference)
    states_mine, states_theirs = [s for _, s in mine], [s for _, s in theirs]
    matched = 0
    for state in states_theirs:  # longest in-order prefix of the reference's events
        if matched < len(states_mine) and states_mine[matched] == state:
            matched += 1
        else:
            break
    errors = [float(np.linalg.norm(predicted.points[i] - reference.points[j]))
              for (i, _), (j, _) in zip(mine, theirs)]
    return {"same_sequence": states_mine == states_theirs,
            "predicted_events": [s.name.lower() for s in states_mine],
            "reference_events": [s.name.lower() for s in states_theirs],
            "matched_fraction": matched / len(states_theirs) if states_theirs else 1.0,
            "event_errors": errors}


def _resampled(path: Path2D, samples: int) -> Path2D:
    return resample(path, max(samples, len(np.union1d([0, len(path) - 1], path.gripper_change_indices()))))


def compare_paths(predicted: Path2D, reference: Path2D, samples: int = DEFAULT_SAMPLES) -> dict:
    """Every path metric at once, in normalized image coordinates."""
    if samples < 2:
        raise ValueError(f"samples must be >= 2, got {samples}")
    a, b = _resampled(predicted, samples).points, _resampled(reference, samples).points
    events = gripper_event_agreement(predicted, reference)
    return {
        "frechet": discrete_frechet(a, b),
        "dtw": dtw_distance(a, b),
        "start_error": float(np.linalg.norm(predicted.points[0] - reference.points[0])),
        "end_error": float(np.linalg.norm(predicted.points[-1] - reference.points[-1])),
        "gripper_same_sequence": events["same_sequence"],
        "gripper_matched_fraction": events["matched_fraction"],
        "gripper_event_errors": events["event_errors"],
        "predicted_points": len(predicted),
        "reference_points": len(reference),
    }


def mask_iou(predicted, reference) -> float:
    """Intersection over union of two boolean masks of one size; two empty masks agree perfectly (1.0)."""
    predicted, reference = np.asarray(predicted, dtype=bool), np.asarray(reference, dtype=bool)
    if predicted.shape != reference.shape:
        raise ValueError(f"mask shapes differ: {predicted.shape} and {reference.shape}")
    union = np.count_nonzero(predicted | reference)
    return 1.0 if union == 0 else float(np.count_nonzero(predicted & reference) / union)
