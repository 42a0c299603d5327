"""Detect -> track -> segment on every frame, without ROS (the `pipeline` perception backend and
`hamster-perceive` both run this).

Detection is the expensive, occasional step: it runs on the first frame after new queries, on request, every
`redetect_every_n` frames, and (with `redetect_on_loss`) as soon as a tracker loses its object or a queried
label has no track. Between detections each object's tracker carries its box. Masks come from the segmenter
every `segment_every_k` frames and on every detection, from one image embedding for all boxes; in between,
each mask is moved and scaled with its tracked box.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from hamster_core.perception.backend import Detection, PerceptionFrame
from hamster_core.perception.stages import (DETECTORS, SEGMENTERS, TRACKERS, Box, Detector, Segmenter, Tracker,
                                    carry_mask, check_rgb, xyxy_to_xywh)


@dataclass
class _Track:
    phrase: str
    box: Box
    score: float
    tracker: Tracker | None
    confidence: float = 1.0
    mask: np.ndarray | None = None
    mask_box: Box | None = None            # the box the mask was segmented in


@dataclass
class PipelineOutput:
    detections: list[Detection]
    detected: bool                          # the detector ran on this frame
    reason: str                             # why it ran: new_queries, requested, every_n, lost, missing, ''
    segmented: bool                         # the segmenter ran (else masks were carried along with the boxes)
    timings_ms: dict[str, float] = field(default_factory=dict)   # detect, track, segment, forward, total
    tracking: dict[str, float] = field(default_factory=dict)     # label -> tracker confidence


class PerceptionPipeline:
    def __init__(self, detector: Detector, segmenter: Segmenter, tracker_factory: Callable[[], Tracker] | None,
                 redetect_every_n: int = 30, segment_every_k: int = 1, redetect_on_loss: bool = True):
        """tracker_factory None: no tracking, the detector runs on every frame."""
        if not isinstance(redetect_every_n, int) or redetect_every_n < 0:
            raise ValueError(f"redetect_every_n must be an integer >= 0 (0: never on a schedule), "
                             f"got {redetect_every_n!r}")
        if not isinstance(segment_every_k, int) or segment_every_k < 1:
            raise ValueError(f"segment_every_k must be an integer >= 1, got {segment_every_k!r}")
        self.detector, self.segmenter, self.tracker_factory = detector, segmenter, tracker_factory
        self.redetect_every_n, self.segment_every_k = redetect_every_n, segment_every_k
        self.redetect_on_loss = bool(redetect_on_loss)
        self.queries: dict[str, str] = {}
        self._tracks: dict[str, _Track] = {}
        self._pending_reason = ""
        self._frames_since_detect = 0
        self._frames_since_segment = 0

    @property
    def uses_segmentation(self) -> bool:
        return self.detector.uses_segmentation

    def set_queries(self, queries: dict[str, str]) -> None:
        self.queries = dict(queries)
        self._tracks.clear()
        self._pending_reason = "new_queries"

    def request_redetect(self) -> None:
        """Detect again on the next frame (e.g. the scene changed in a way trackers do not notice)."""
        if not self._pending_reason:
            self._pending_reason = "requested"

    def process(self, frame: PerceptionFrame) -> PipelineOutput:
        started = time.perf_counter()
        rgb = check_rgb(frame.rgb)
        timings = {"detect": 0.0, "track": 0.0, "segment": 0.0, "forward": 0.0}
        if not self.queries:
            return PipelineOutput([], False, "", False, dict(timings, total=0.0))
        reason = self._pending_reason
        self._frames_since_detect += 1
        if not reason and self.tracker_factory is None:
            reason = "every_frame"
        if not reason and self.redetect_every_n and self._frames_since_detect >= self.redetect_every_n:
            reason = "every_n"
        if not reason and self.redetect_on_loss and set(self.queries) - set(self._tracks):
            reason = "missing"
        if not reason:
            reason = self._track(rgb, timings)

        if reason:
            self._detect(frame, timings)
            self._pending_reason = ""
            self._frames_since_detect = 0

        self._frames_since_segment += 1
        segment = bool(reason) or self._frames_since_segment >= self.segment_every_k \
            or any(track.mask is None for track in self._tracks.values())
        self._masks(rgb, segment, timings)

        detections = []
        for label, track in self._tracks.items():
            if track.mask is not None and track.mask.any():
                detections.append(Detection(label, track.phrase, track.mask, track.score, xyxy_to_xywh(track.box)))
        timings["total"] = 1000 * (time.perf_counter() - started)
        return PipelineOutput(detections, bool(reason), reason, segment, {k: round(v, 3) for k, v in timings.items()},
                              {label: round(track.confidence, 3) for label, track in self._tracks.items()})

    def _track(self, rgb: np.ndarray, timings: dict) -> str:
        """Move every track; returns 'lost' when a lost object should be re-detected on this frame."""
        start = time.perf_counter()
        lost = []
        for label, track in self._tracks.items():
            update = track.tracker.update(rgb)
            track.confidence = update.confidence
            if update.lost:
                lost.append(label)
            else:
                track.box = update.box
        timings["track"] += 1000 * (time.perf_counter() - start)
        if lost and self.redetect_on_loss:
            return "lost"
        for label in lost:  # no re-detection: the object is gone until the schedule or a request
            del self._tracks[label]
        return ""

    def _detect(self, frame: PerceptionFrame, timings: dict) -> None:
        start = time.perf_counter()
        found = self.detector.detect(frame, self.queries)
        timings["forward"] += self.detector.forward_ms
        self._tracks = {}
        for label, detection in found.items():
            tracker = None
            if self.tracker_factory is not None:
                tracker = self.tracker_factory()
                try:
                    tracker.start(frame.rgb, detection.box)
                except ValueError:  # a box too small to track: keep it for this frame only
                    tracker = None
            self._tracks[label] = _Track(self.queries[label], detection.box, detection.score, tracker)
        timings["detect"] += 1000 * (time.perf_counter() - start)

    def _masks(self, rgb: np.ndarray, segment: bool, timings: dict) -> None:
        start = time.perf_counter()
        if segment and self._tracks:
            results = self.segmenter.segment(rgb, {label: track.box for label, track in self._tracks.items()})
            timings["forward"] += self.segmenter.forward_ms
            for label, result in results.items():
                track = self._tracks[label]
                track.mask, track.mask_box = result.mask, track.box
            self._frames_since_segment = 0
        elif self._tracks:
            for track in self._tracks.values():
                if track.mask is not None and track.mask_box != track.box:
                    track.mask = carry_mask(track.mask, track.mask_box, track.box)
                    track.mask_box = track.box
        # Tracks without a tracker (box too small to track) live for one frame.
        self._tracks = {label: track for label, track in self._tracks.items()
                        if track.tracker is not None or self.tracker_factory is None or segment}
        timings["segment"] += 1000 * (time.perf_counter() - start)


DETECTOR_CHECKPOINT_KINDS = ("grounding_dino", "owlv2")
SEGMENTER_CHECKPOINT_KINDS = ("sam", "sam2", "segment_anything")


def build_pipeline(detector: str = "grounding_dino", detector_checkpoint: str = "", segmenter: str = "sam",
                   segmenter_checkpoint: str = "", tracker: str = "csrt", device: str = "cpu",
                   box_threshold: float = 0.35, text_threshold: float = 0.25, min_track_confidence: float = 0.3,
                   redetect_every_n: int = 30, segment_every_k: int = 1, redetect_on_loss: bool = True
                   ) -> PerceptionPipeline:
    """Stages by registered name (tracker 'none': detect every frame). ValueError names a bad value;
    ModelLoadError (a ValueError) names a checkpoint that does not load."""
    detector_config: dict = {}
    if detector == "grounding_dino":
        detector_config = dict(checkpoint=detector_checkpoint, device=device, box_threshold=box_threshold,
                               text_threshold=text_threshold)
    elif detector == "owlv2":
        detector_config = dict(checkpoint=detector_checkpoint, device=device, threshold=box_threshold)
    segmenter_config = {}
    if segmenter in SEGMENTER_CHECKPOINT_KINDS:
        segmenter_config = dict(checkpoint=segmenter_checkpoint, device=device)
    # Names and plain values first, so a typo fails before any model loads.
    DETECTORS.get(detector)
    SEGMENTERS.get(segmenter)
    for kind, checkpoint, kinds in ((detector, detector_checkpoint, DETECTOR_CHECKPOINT_KINDS),
                                    (segmenter, segmenter_checkpoint, SEGMENTER_CHECKPOINT_KINDS)):
        if kind in kinds and (not isinstance(checkpoint, str) or not checkpoint.strip()):
            raise ValueError(f"{kind} needs a checkpoint (a folder or hub id), got {checkpoint!r}")
    tracker_factory = None
    if tracker != "none":
        make = TRACKERS.get(tracker)
        tracker_factory = lambda: make(min_confidence=min_track_confidence)  # noqa: E731
        tracker_factory()  # validates min_track_confidence
    PerceptionPipeline(None, None, None, redetect_every_n, segment_every_k)  # validates the schedule
    detector_stage = DETECTORS.create(detector, **detector_config)
    segmenter_stage = SEGMENTERS.create(segmenter, **segmenter_config)
    return PerceptionPipeline(detector_stage, segmenter_stage, tracker_factory, redetect_every_n=redetect_every_n,
                              segment_every_k=segment_every_k, redetect_on_loss=redetect_on_loss)


def annotate(rgb: np.ndarray, detections: list[Detection]) -> np.ndarray:
    """Masks blended in, each object's box outlined in its mask's colour, labels written (overlay topic, CLI)."""
    import cv2
    from hamster_core.drawing import MASK_COLORS, draw_masks
    out = draw_masks(rgb, {d.label: d.mask for d in detections})
    for index, detection in enumerate(detections):
        x, y, w, h = detection.box
        color = tuple(int(c) for c in MASK_COLORS[index % len(MASK_COLORS)])
        cv2.rectangle(out, (x, y), (x + max(w - 1, 0), y + max(h - 1, 0)), color, 2)
    return out


def masked_points(mask: np.ndarray, depth: np.ndarray, camera, stride: int = 1) -> np.ndarray:
    """Base-frame points (N, 3) of the mask's pixels with valid depth, back-projected through `camera`
    (hamster_core.camera.PinholeCamera); every `stride`-th pixel in each direction."""
    if mask.shape != depth.shape or mask.shape != (camera.height, camera.width):
        raise ValueError(f"mask {mask.shape}, depth {depth.shape} and camera {camera.height}x{camera.width} differ")
    if not isinstance(stride, int) or stride < 1:
        raise ValueError(f"stride must be a positive integer, got {stride!r}")
    keep = np.zeros_like(mask, bool)
    keep[::stride, ::stride] = mask[::stride, ::stride]
    rows, cols = np.nonzero(keep)
    z = depth[rows, cols].astype(np.float64)
    valid = np.isfinite(z) & (z > 0)
    pixels = np.stack([cols[valid] + 0.5, rows[valid] + 0.5], axis=1)
    return camera.backproject(pixels, z[valid])
