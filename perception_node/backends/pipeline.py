"""`pipeline`: an open-vocabulary detector, a tracker and a segmenter composed (hamster_core.perception.pipeline)."""
from __future__ import annotations

from collections import Counter

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
        self.state_counts: Counter = Counter()    # (label, state) -> frames since the queries were set

    def set_queries(self, queries: dict[str, str]) -> None:
        super().set_queries(queries)
        self.pipeline.set_queries(queries)
        self.state_counts.clear()

    def request_redetect(self) -> bool:
        self.pipeline.request_redetect()
        return True

    def process(self, frame: PerceptionFrame) -> list[Detection]:
        self.last_output = self.pipeline.process(frame)
        self.state_counts.update((label, state.value) for label, state in self.last_output.states.items())
        return self.last_output.detections

    def track_states(self) -> dict[str, str]:
        return {} if self.last_output is None else {label: s.value for label, s in self.last_output.states.items()}

    def diagnostics(self) -> dict[str, str]:
        out = self.last_output
        if out is None:
            return {}
        values = {f"{stage}_ms": f"{ms:.2f}" for stage, ms in out.timings_ms.items()}
        values.update(detected=str(out.detected).lower(), detect_reason=out.reason,
                      segmented=str(out.segmented).lower())
        values.update({f"track_confidence/{label}": f"{c:.2f}" for label, c in out.tracking.items()})
        values.update({f"state/{label}": state.value for label, state in out.states.items()})
        values.update({f"why/{label}": why for label, why in out.why.items()})
        values.update({f"frames_{state}/{label}": str(n) for (label, state), n in sorted(self.state_counts.items())})
        return values
