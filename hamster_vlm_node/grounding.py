"""RoboGround-style grounding: masks of the instruction's target object and placement area, once per episode.

The instruction is split into its target and placement phrases, and the perception stack's open-vocabulary
detector and segmenter run once on the episode's first frame (following the objects afterwards is
perception_node's job). ROS-free; shared by the VLM node and tests.

The phrases: by default (`phrases: auto`) the configured VLM is asked for them as strict JSON when it is a model
that takes prompts (as the "transferring foundation models" pipeline asks an LLM), with the rule-based parser
(hamster_core.instruction) as the fallback when it fails or answers anything but the two phrases; `rules` uses
the parser alone, `model` fails without the model's answer.
"""
from __future__ import annotations

import time

from hamster_core.instruction import (GROUNDING_PROMPT_TEMPLATE, PLACEMENT_LABEL, TARGET_LABEL, grounding_queries,
                                      parse_grounding_answer)
from hamster_core.perception.backend import Detection, PerceptionFrame
from hamster_core.perception.pipeline import build_pipeline
from hamster_core.vlm import PromptedBackend, VlmBackend, VlmError, VlmRequest, excerpt

PHRASE_SOURCES = ("auto", "model", "rules")

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
    "phrases": ("auto", "Where the target and placement phrases come from: auto (the VLM backend, asked for strict "
                        "JSON, when it takes prompts; the rule-based parser as fallback), model (the VLM only) or "
                        "rules (the parser only)."),
}


class GroundingError(ValueError):
    """No masks for the instruction: it names no target/placement, or the detector found neither."""

    stage = "grounding"


class PhraseExtractor:
    """The target and placement phrases of an instruction: from the VLM as strict JSON, else by rule."""

    def __init__(self, backend: VlmBackend | None, source: str = "auto"):
        if source not in PHRASE_SOURCES:
            raise ValueError(f"grounding phrases must be one of {', '.join(PHRASE_SOURCES)}, got {source!r}")
        prompted = isinstance(backend, PromptedBackend)
        if source == "model" and not prompted:
            raise ValueError("grounding phrases 'model' needs a backend that takes prompts (openai, transformers)")
        self.backend = backend if prompted and source != "rules" else None
        self.source = source

    def phrases(self, rgb, instruction: str) -> tuple[dict[str, str], dict]:
        """({TARGET_LABEL: phrase, PLACEMENT_LABEL: phrase}, {"phrases_from": "model"|"rules", ...}).
        GroundingError when neither gives both phrases."""
        note = {}
        if self.backend is not None:
            try:
                answer = self.backend.query(VlmRequest(image=rgb, instruction=instruction,
                                                       prompt_template=GROUNDING_PROMPT_TEMPLATE))
                target, placement = parse_grounding_answer(answer)
                return {TARGET_LABEL: target, PLACEMENT_LABEL: placement}, {"phrases_from": "model"}
            except (VlmError, ValueError) as error:
                if self.source == "model":
                    raise GroundingError(f"the model gave no grounding phrases: {excerpt(str(error))}") from error
                note["phrases_model_error"] = excerpt(str(error))
        try:
            return grounding_queries(instruction), {"phrases_from": "rules", **note}
        except ValueError as error:
            raise GroundingError(str(error)) from error


class Grounder:
    """Detector + segmenter loaded once; `ground()` runs them on one frame. `backend` is the VLM the phrases may
    be asked of (the `phrases` option)."""

    def __init__(self, backend: VlmBackend | None = None, **options):
        unknown = sorted(set(options) - set(GROUNDING_PARAMETERS))
        if unknown:
            raise ValueError(f"unknown grounding option(s): {', '.join(unknown)}; known: "
                             f"{', '.join(GROUNDING_PARAMETERS)}")
        config = {name: options.get(name, default) for name, (default, _) in GROUNDING_PARAMETERS.items()}
        self.phrases = PhraseExtractor(backend, config.pop("phrases"))
        self._pipeline = build_pipeline(tracker="none", **config)
        self.model_id = f"{config['detector']}:{config['detector_checkpoint']}+{config['segmenter']}"
        if config["segmenter"] != "box":
            self.model_id += f":{config['segmenter_checkpoint']}"

    def ground(self, rgb, instruction: str, stamp: float = 0.0) -> tuple[list[Detection], dict]:
        """Masks for the instruction's labels found in `rgb` (labels not found are left out) and the timing (with
        where the phrases came from). Raises GroundingError when no phrases are found or nothing is detected."""
        started = time.perf_counter()
        queries, source = self.phrases.phrases(rgb, instruction)
        phrases_sec = time.perf_counter() - started
        started = time.perf_counter()
        self._pipeline.set_queries(queries)
        output = self._pipeline.process(PerceptionFrame(stamp=stamp, rgb=rgb))
        timing = {f"grounding_{key}_ms": round(value, 3) for key, value in output.timings_ms.items()}
        timing["grounding_sec"] = round(time.perf_counter() - started, 6)
        timing.update(source, grounding_phrases_sec=round(phrases_sec, 6))
        if not output.detections:
            raise GroundingError(f"found none of {', '.join(repr(p) for p in queries.values())} in the image")
        return output.detections, timing
