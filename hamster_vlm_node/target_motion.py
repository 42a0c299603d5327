"""Re-planning when the target moves: the path describes the scene as it was when the VLM saw it."""
from __future__ import annotations

import math

import numpy as np


class TargetMotion:
    """Tells when the target's mask centroid has moved more than `threshold` (normalized image units, i.e. a
    fraction of the image size) from where it was first seen since the last reset."""

    def __init__(self, threshold: float):
        if not isinstance(threshold, (int, float)) or not math.isfinite(threshold) or threshold <= 0:
            raise ValueError(f"threshold must be a positive number, got {threshold!r}")
        self.threshold = float(threshold)
        self._reference: np.ndarray | None = None

    def reset(self) -> None:
        self._reference = None

    def moved(self, mask: np.ndarray) -> float | None:
        """The distance moved when past the threshold (the next mask becomes the new reference), else None.
        Empty masks (target hidden or not found) say nothing."""
        rows, cols = np.nonzero(mask)
        if len(rows) == 0:
            return None
        centroid = np.array([cols.mean() / mask.shape[1], rows.mean() / mask.shape[0]])
        if self._reference is None:
            self._reference = centroid
            return None
        distance = float(np.linalg.norm(centroid - self._reference))
        if distance <= self.threshold:
            return None
        self._reference = None
        return distance
