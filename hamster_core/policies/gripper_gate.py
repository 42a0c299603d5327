"""Hysteresis on the learned policies' gripper decision: a release of a held object must be earned.

A learned policy's next keyframe after the lift is bimodal between "carry on, closed" and "release, open"; a 0.5
threshold on P(closed) made that a knife edge (issue 22: 0.97 in-process, 0.04-0.07 on an observation 33-200 ms
older in the graph, and the object fell on the way). While the executed gripper state is closed (the measured
width, not the last prediction), a predicted release is only passed on when

- the release keyframe lies over the placement area: within `placement_radius` (horizontally) of the container,
  located on the episode's first frame by the `placement_area` grounding mask (the median of its cloud points),
  or without masks by where the path opens the gripper, lifted into 3D (HAMSTER's path ends there; the lift
  lands on what the camera sees behind the release point, a few cm beyond the container), or
- the policy predicted a confident release (P(closed) below `release_threshold`) on `release_confirmations`
  consecutive predictions.

Otherwise the keyframe is executed with the gripper kept closed, and the next prediction, from the new pose,
votes again. Grasps (open -> closed) pass unchanged: a missed grasp costs a retry, a wrong release the task.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hamster_core.instruction import PLACEMENT_LABEL
from hamster_core.lifting import LiftedPath
from hamster_core.policies.base import Observation

MIN_MASK_POINTS = 10


@dataclass(frozen=True)
class ReleaseDecision:
    release: bool         # pass the release on to the executor
    reason: str           # "placement_area" | "confirmed" | "deferred" | "not_confident"


class ReleaseGate:
    """Per-episode state: how many consecutive predictions asked for a release while the gripper held."""

    def __init__(self, confirmations: int = 2, threshold: float = 0.3, placement_radius: float = 0.06):
        if isinstance(confirmations, bool) or not isinstance(confirmations, (int, np.integer)) or confirmations < 1:
            raise ValueError(f"release_confirmations must be an integer >= 1, got {confirmations!r}")
        if not 0 < threshold <= 0.5:
            raise ValueError(f"release_threshold must be in (0, 0.5], got {threshold}")
        if not 0 <= placement_radius <= 1:
            raise ValueError(f"placement_radius must be in [0, 1] m (0: no placement rule), got {placement_radius}")
        self.confirmations, self.threshold, self.placement_radius = int(confirmations), threshold, placement_radius
        self._votes = 0

    @property
    def disabled(self) -> bool:
        """confirmations 1 and threshold 0.5: every predicted release passes (the knife edge, for comparison)."""
        return self.confirmations == 1 and self.threshold == 0.5

    def reset(self) -> None:
        self._votes = 0

    def held(self) -> None:
        """A prediction that keeps the gripper closed: the release votes start over."""
        self._votes = 0

    def decide(self, closed_prob: float, release_position, placement: np.ndarray | None) -> ReleaseDecision:
        """The gripper is closed and this prediction says open (P(closed) <= 0.5) at `release_position`."""
        if self.disabled:
            return ReleaseDecision(True, "confirmed")
        if placement is not None and self.placement_radius > 0:
            offset = np.asarray(release_position, dtype=float)[:2] - placement[:2]
            if float(np.linalg.norm(offset)) <= self.placement_radius:
                self._votes = 0
                return ReleaseDecision(True, "placement_area")
        if closed_prob >= self.threshold:
            self._votes = 0
            return ReleaseDecision(False, "not_confident")
        self._votes += 1
        if self._votes >= self.confirmations:
            self._votes = 0
            return ReleaseDecision(True, "confirmed")
        return ReleaseDecision(False, "deferred")


def placement_point(observation: Observation, lifted: LiftedPath | None) -> tuple[np.ndarray | None, str]:
    """Where the object goes, in the base frame, and from what: ("mask") the placement mask when the observation
    has one that covers enough cloud points, else ("path") the path's release point (`lifted`), else (None, "")."""
    mask, camera = (observation.masks or {}).get(PLACEMENT_LABEL), observation.camera
    if mask is not None and camera is not None:
        points = np.asarray(observation.points, dtype=float).reshape(-1, 3)
        pixels, depth = camera.project(points)
        with np.errstate(invalid="ignore"):
            u, v = np.floor(np.nan_to_num(pixels, nan=-1.0, posinf=-1.0, neginf=-1.0)).astype(int).T
        seen = (depth > 0) & (u >= 0) & (v >= 0) & (u < mask.shape[1]) & (v < mask.shape[0])
        inside = np.zeros(len(points), dtype=bool)
        inside[seen] = mask[v[seen], u[seen]]
        if inside.sum() >= MIN_MASK_POINTS:
            return np.median(points[inside], axis=0), "mask"
    point = path_release_point(lifted) if lifted is not None else None
    return point, "path" if point is not None else ""


def path_release_point(lifted: LiftedPath) -> np.ndarray | None:
    """Where the path releases the object: the first lifted point after the last closed one that is open
    (the path's end when it never closes again), or None for a path that never closes."""
    closed = np.flatnonzero(lifted.channels[:, 2] > 0.5)
    if len(closed) == 0:
        return None
    after = np.flatnonzero(lifted.channels[closed[-1] + 1:, 1] > 0.5)
    index = closed[-1] + 1 + after[0] if len(after) else len(lifted.points) - 1
    return lifted.points[index].copy()
