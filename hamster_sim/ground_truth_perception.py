"""`sim_ground_truth` perception, straight from the simulator's segmentation: the reference the learned
detectors, segmenters and trackers are measured against. Registered twice under that name, through the
entry points in setup.py: as a whole perception backend (masks) and as a detector stage (boxes, for the
`pipeline` backend's trackers). Both match queried phrases to scene objects by name in one place."""
from __future__ import annotations

import re

import numpy as np

from hamster_core.perception.backend import PERCEPTION_BACKENDS, Detection, PerceptionBackend, PerceptionFrame, box_of
from hamster_core.perception.stages import DETECTORS, BoxDetection, Detector, mask_box
from hamster_sim.ground_truth import decode_scene_payload


def normalize_phrase(phrase: str) -> str:
    words = re.sub(r"[^a-z0-9 ]", " ", phrase.lower()).split()
    return " ".join(word for word in words if word not in ("the", "a", "an"))


class SceneObjectMasks:
    """Each queried phrase's visible pixels in a frame's segmentation, matched to a scene object by name."""

    def __init__(self):
        self._ids_text: str | None = None
        self._ids: dict[str, int] = {}

    def __call__(self, frame: PerceptionFrame, queries: dict[str, str]) -> dict[str, np.ndarray]:
        if frame.segmentation is None or frame.scene_json is None:
            raise ValueError("sim_ground_truth needs the simulator's segmentation image and scene message")
        if frame.segmentation.shape != frame.rgb.shape[:2]:
            raise ValueError(f"segmentation {frame.segmentation.shape} does not match the image "
                             f"{frame.rgb.shape[:2]}")
        if frame.scene_json != self._ids_text:  # decode once per scene, not per frame
            _, ids = decode_scene_payload(frame.scene_json)
            self._ids = {normalize_phrase(name): value for name, value in ids.items()}
            self._ids_text = frame.scene_json
        masks = {}
        for label, phrase in queries.items():
            object_id = self._ids.get(normalize_phrase(phrase))
            if object_id is not None:
                masks[label] = frame.segmentation == object_id
        return masks


@PERCEPTION_BACKENDS.register("sim_ground_truth")
class SimGroundTruthBackend(PerceptionBackend):
    uses_segmentation = True

    def __init__(self):
        super().__init__()
        self._masks = SceneObjectMasks()

    def process(self, frame: PerceptionFrame) -> list[Detection]:
        return [Detection(label, self.queries[label], mask, 1.0, box_of(mask))
                for label, mask in self._masks(frame, self.queries).items() if mask.any()]


@DETECTORS.register("sim_ground_truth")
class SimGroundTruthDetector(Detector):
    """The box around each queried object's pixels in the simulator's segmentation (visible pixels only, so an
    occluded object's box shrinks and a hidden one is not found)."""
    uses_segmentation = True

    def __init__(self, min_pixels: int = 1):
        if not isinstance(min_pixels, int) or min_pixels < 1:
            raise ValueError(f"min_pixels must be a positive integer, got {min_pixels!r}")
        self.min_pixels = min_pixels
        self._masks = SceneObjectMasks()

    def detect(self, frame: PerceptionFrame, queries: dict[str, str]) -> dict[str, BoxDetection]:
        return {label: BoxDetection(mask_box(mask), 1.0)
                for label, mask in self._masks(frame, queries).items() if mask.sum() >= self.min_pixels}
