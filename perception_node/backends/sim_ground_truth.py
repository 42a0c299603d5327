"""`sim_ground_truth`: masks straight from the simulator's segmentation, matched to the queried phrases by
object name. The reference the learned detectors and segmenters are measured against."""
from __future__ import annotations

import re

from hamster_sim.ground_truth import decode_scene_payload
from perception_node.backends.base import PERCEPTION_BACKENDS, Detection, PerceptionBackend, PerceptionFrame, box_of


def normalize_phrase(phrase: str) -> str:
    words = re.sub(r"[^a-z0-9 ]", " ", phrase.lower()).split()
    return " ".join(word for word in words if word not in ("the", "a", "an"))


@PERCEPTION_BACKENDS.register("sim_ground_truth")
class SimGroundTruthBackend(PerceptionBackend):
    uses_segmentation = True

    def __init__(self):
        super().__init__()
        self._ids_text: str | None = None
        self._ids: dict[str, int] = {}

    def process(self, frame: PerceptionFrame) -> list[Detection]:
        if frame.segmentation is None or frame.scene_json is None:
            raise ValueError("sim_ground_truth needs the simulator's segmentation image and scene message")
        if frame.segmentation.shape != frame.rgb.shape[:2]:
            raise ValueError(f"segmentation {frame.segmentation.shape} does not match the image "
                             f"{frame.rgb.shape[:2]}")
        if frame.scene_json != self._ids_text:  # decode once per scene, not per frame
            _, ids = decode_scene_payload(frame.scene_json)
            self._ids = {normalize_phrase(name): value for name, value in ids.items()}
            self._ids_text = frame.scene_json
        detections = []
        for label, phrase in self.queries.items():
            object_id = self._ids.get(normalize_phrase(phrase))
            if object_id is None:
                continue
            mask = frame.segmentation == object_id
            if mask.any():
                detections.append(Detection(label, phrase, mask, 1.0, box_of(mask)))
        return detections
