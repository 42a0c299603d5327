"""RoboGround-style grounding: masks of the instruction's target object and placement area, once per episode.

The instruction is split into its target and placement phrases, and the perception stack's open-vocabulary
detector and segmenter run once on the episode's first frame (following the objects afterwards is
perception_node's job). ROS-free; shared by the VLM node and tests.
"""
from __future__ import annotations

import time

from hamster_core.instruction import grounding_queries
from hamster_core.perception.backend import Detection, PerceptionFrame
from hamster_core.perception.pipeline import build_pipeline

# Node parameter `grounding.<name>`: (default, description). The detector/segmenter names and options are
# perception_node's pipeline stages (hamster_core.perception.pipeline.build_pipeline).
GROUNDING_PARAMETERS = {
    "detector": ("grounding_dino", "Open-vocabulary detector: grounding_dino or owlv2."),
    "detector_checkpoint": ("IDEA-Research/grounding-dino-tiny", "Detector checkpoint folder or hub id."),
    "segmenter": ("sam", "Segmenter for the detected boxes: sam, sam2, segment_anything or box."),
    "segmenter_checkpoint": ("facebook/sam-vit-base", "Segmenter checkpoint folder or hub id."),
    "device": ("cpu", "Torch device, e.g. cuda:0."),
    "box_threshold": (0.35, "Minimum detector score."),
    "text_threshold": (0.25, "Grounding DINO: minimum score of the phrase a box is given to."),
}


class GroundingError(ValueError):
    """No masks for the instruction: it names no target/placement, or the detector found neither."""

    stage = "grounding"


class Grounder:
    """Detector + segmenter loaded once; `ground()` runs them on one frame."""

    def __init__(self, **options):
        unknown = sorted(set(options) - set(GROUNDING_PARAMETERS))
        if unknown:
            raise ValueError(f"unknown grounding option(s): {', '.join(unknown)}; known: "
                             f"{', '.join(GROUNDING_PARAMETERS)}")
        config = {name: options.get(name, default) for name, (default, _) in GROUNDING_PARAMETERS.items()}
        self._pipeline = build_pipeline(tracker="none", **config)
        self.model_id = f"{config['detector']}:{config['detector_checkpoint']}+{config['segmenter']}"
        if config["segmenter"] != "box":
            self.model_id += f":{config['segmenter_checkpoint']}"

    def ground(self, rgb, instruction: str, stamp: float = 0.0) -> tuple[list[Detection], dict[str, float]]:
        """Masks for the instruction's labels found in `rgb` (labels not found are left out) and the timing.
        Raises GroundingError when the instruction cannot be split or nothing is found."""
        try:
            queries = grounding_queries(instruction)
        except ValueError as error:
            raise GroundingError(str(error)) from error
        started = time.perf_counter()
        self._pipeline.set_queries(queries)
        output = self._pipeline.process(PerceptionFrame(stamp=stamp, rgb=rgb))
        timing = {f"grounding_{key}_ms": round(value, 3) for key, value in output.timings_ms.items()}
        timing["grounding_sec"] = round(time.perf_counter() - started, 6)
        if not output.detections:
            raise GroundingError(f"found none of {', '.join(repr(p) for p in queries.values())} in the image")
        return output.detections, timing
