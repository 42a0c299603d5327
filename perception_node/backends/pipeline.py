"""`pipeline`: an open-vocabulary detector, a tracker and a segmenter composed (hamster_core.perception.pipeline)."""
from __future__ import annotations

from hamster_core.perception.backend import PERCEPTION_BACKENDS, Detection, PerceptionBackend, PerceptionFrame
from hamster_core.perception.pipeline import PipelineOutput, build_pipeline


@PERCEPTION_BACKENDS.register("pipeline")
class PipelineBackend(PerceptionBackend):
    def __init__(self, **config):
        """`config`: build_pipeline's keywords (detector, detector_checkpoint, segmenter, tracker, ...)."""
        super().__init__()
        self.pipeline = build_pipeline(**config)
        self.uses_segmentation = self.pipeline.uses_segmentation
        self.last_output: PipelineOutput | None = None

    def set_queries(self, queries: dict[str, str]) -> None:
        super().set_queries(queries)
        self.pipeline.set_queries(queries)

    def request_redetect(self) -> bool:
        self.pipeline.request_redetect()
        return True

    def process(self, frame: PerceptionFrame) -> list[Detection]:
        self.last_output = self.pipeline.process(frame)
        return self.last_output.detections

    def diagnostics(self) -> dict[str, str]:
        out = self.last_output
        if out is None:
            return {}
        values = {f"{stage}_ms": f"{ms:.2f}" for stage, ms in out.timings_ms.items()}
        values.update(detected=str(out.detected).lower(), detect_reason=out.reason,
                      segmented=str(out.segmented).lower())
        values.update({f"track_confidence/{label}": f"{c:.2f}" for label, c in out.tracking.items()})
        return values
