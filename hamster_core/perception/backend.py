"""The one perception backend interface: queries (label -> phrase) + a camera frame -> one mask per label."""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from hamster_core.registry import Registry


@dataclass
class PerceptionFrame:
    stamp: float
    rgb: np.ndarray                          # (H, W, 3) uint8
    segmentation: np.ndarray | None = None   # (H, W) int32 object ids (simulator only)
    scene_json: str | None = None            # simulator ground truth (/sim/scene)
    depth: np.ndarray | None = None          # (H, W) metres aligned with rgb, 0/NaN invalid (track checks)


@dataclass
class Detection:
    label: str                               # e.g. target_object
    phrase: str                              # e.g. "red cube"
    mask: np.ndarray                         # (H, W) bool
    score: float
    box: tuple[int, int, int, int]           # x, y, width, height in pixels


def box_of(mask: np.ndarray) -> tuple[int, int, int, int]:
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if len(rows) == 0:
        return 0, 0, 0, 0
    return int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1)


class PerceptionBackend(ABC):
    #: The backend reads the simulator's segmentation: frames are processed only once it matches the image.
    uses_segmentation: bool = False

    def __init__(self):
        self.queries: dict[str, str] = {}

    def set_queries(self, queries: dict[str, str]) -> None:
        """New things to look for (label -> phrase); a backend re-detects on the next frame."""
        self.queries = dict(queries)

    @abstractmethod
    def process(self, frame: PerceptionFrame) -> list[Detection]:
        """Masks for the current queries in this frame; labels not found are left out."""

    def track_states(self) -> dict[str, str]:
        """Label -> detected | tracked | occluded | lost for every query of the last processed frame; a
        backend without tracking leaves it empty (found objects are then `detected`, the others `lost`)."""
        return {}

    def request_redetect(self) -> bool:
        """Look for the objects afresh on the next frame; False if the backend has nothing to redo."""
        return False

    def diagnostics(self) -> dict[str, str]:
        """Key -> value of the last processed frame (e.g. per-stage milliseconds) for /diagnostics."""
        return {}


PERCEPTION_BACKENDS: Registry[PerceptionBackend] = Registry("perception backend", "hamster_runtime.perception_backends")
