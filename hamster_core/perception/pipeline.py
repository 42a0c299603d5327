"""Detect -> track -> segment on every frame, without ROS (the `pipeline` perception backend and
`hamster-perceive` both run this).

Every queried object has a state on every frame (hamster_core.perception.track_state): `detected`, `tracked`
(the tracker's box confirmed by checks independent of the tracker), `occluded` or `lost`. Only detected and
tracked objects get a mask: a confidently wrong mask is worse than none.

Detection is the expensive, occasional step: it runs on the first frame after new queries, on request, every
`redetect_every_n` frames, and (with `redetect_on_loss`) while an object is lost or was never found, at most
every `lost_redetect_every_n` frames. A detection replaces only the tracks it contradicts (a track that is not
visible, or whose box it does not overlap while the detection's box looks more like the object). An object that
is occluded is first searched for by its appearance around its predicted box, without the detector. Masks come
from the segmenter every `segment_every_k` frames and whenever a visible object has none, from one image
embedding for all boxes; in between, each mask is moved and scaled with its tracked box.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from hamster_core.perception.backend import Detection, PerceptionFrame
from hamster_core.perception.stages import (DETECTORS, SEGMENTERS, TRACKERS, Box, BoxDetection, Detector, Segmenter,
                                            Tracker, box_iou, carry_mask, check_checkpoint, check_rgb,
                                            xyxy_to_xywh)
from hamster_core.perception.track_state import StateConfig, TrackMonitor, TrackState, hs_histogram, similarity

AGREEMENT_IOU = 0.3     # a detection overlapping a visible track at least this much confirms it


@dataclass
class _Track:
    phrase: str
    monitor: TrackMonitor
    tracker: Tracker | None = None
    score: float = 0.0
    confidence: float = 0.0                # the tracker's own confidence on the last frame
    mask: np.ndarray | None = None
    mask_box: Box | None = None            # the box the mask was segmented in


@dataclass
class PipelineOutput:
    detections: list[Detection]             # the visible (detected or tracked) objects with their masks
    detected: bool                          # the detector ran on this frame
    reason: str                             # why it ran: new_queries, requested, every_n, lost, every_frame, ''
    segmented: bool                         # the segmenter ran (else masks were carried along with the boxes)
    timings_ms: dict[str, float] = field(default_factory=dict)   # detect, track, segment, forward, total
    tracking: dict[str, float] = field(default_factory=dict)     # label -> tracker confidence
    states: dict[str, TrackState] = field(default_factory=dict)  # every queried label -> its state
    boxes: dict[str, Box | None] = field(default_factory=dict)   # label -> box while visible, else None
    why: dict[str, str] = field(default_factory=dict)            # label -> failed check while not visible


class PerceptionPipeline:
    def __init__(self, detector: Detector | None, segmenter: Segmenter,
                 tracker_factory: Callable[[], Tracker] | None, redetect_every_n: int = 30,
                 segment_every_k: int = 1, redetect_on_loss: bool = True, lost_redetect_every_n: int = 10,
                 state_config: StateConfig | None = None):
        """tracker_factory None: no tracking, the detector runs on every frame. detector None: tracks start
        only from `start_tracks` boxes and lost objects are found again by appearance search alone."""
        for name, value, low in (("redetect_every_n", redetect_every_n, 0), ("segment_every_k", segment_every_k, 1),
                                 ("lost_redetect_every_n", lost_redetect_every_n, 1)):
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}{' (0: never on a schedule)' if low == 0 else ''}"
                                 f", got {value!r}")
        self.detector, self.segmenter, self.tracker_factory = detector, segmenter, tracker_factory
        self.redetect_every_n, self.segment_every_k = redetect_every_n, segment_every_k
        self.redetect_on_loss, self.lost_redetect_every_n = bool(redetect_on_loss), lost_redetect_every_n
        self.state_config = state_config or StateConfig()
        self.queries: dict[str, str] = {}
        self._tracks: dict[str, _Track] = {}
        self._pending_reason = ""
        self._frames_since_detect = 0
        self._frames_since_segment = 0

    @property
    def uses_segmentation(self) -> bool:
        return self.detector is not None and self.detector.uses_segmentation

    def set_queries(self, queries: dict[str, str]) -> None:
        self.queries = dict(queries)
        self._tracks = {label: _Track(phrase, TrackMonitor(self.state_config)) for label, phrase in queries.items()}
        self._pending_reason = "new_queries" if self.detector is not None else ""

    def request_redetect(self) -> None:
        """Detect again on the next frame (e.g. the scene changed in a way trackers do not notice)."""
        if not self._pending_reason and self.detector is not None:
            self._pending_reason = "requested"

    def start_tracks(self, frame: PerceptionFrame, boxes: dict[str, Box]) -> PipelineOutput:
        """Start the named objects from given boxes on this frame (no detector call): they are `detected`."""
        started = time.perf_counter()
        rgb, depth = self._check_frame(frame)
        unknown = sorted(set(boxes) - set(self.queries))
        if unknown:
            raise ValueError(f"boxes for labels that are not queried: {', '.join(unknown)}")
        self._apply({label: BoxDetection(box, 1.0) for label, box in boxes.items()}, rgb, depth, "init_boxes")
        self._pending_reason = ""
        return self._output(rgb, "", True, dict.fromkeys(("detect", "track", "segment", "forward"), 0.0), started)

    def process(self, frame: PerceptionFrame) -> PipelineOutput:
        started = time.perf_counter()
        rgb, depth = self._check_frame(frame)
        timings = dict.fromkeys(("detect", "track", "segment", "forward"), 0.0)
        if not self.queries:
            return PipelineOutput([], False, "", False, dict(timings, total=0.0))
        self._frames_since_detect += 1
        self._track(rgb, depth, timings)
        reason = self._pending_reason
        if self.detector is not None:
            if not reason and self.tracker_factory is None:
                reason = "every_frame"
            if not reason and self.redetect_every_n and self._frames_since_detect >= self.redetect_every_n:
                reason = "every_n"
            if not reason and self.redetect_on_loss and self._frames_since_detect >= self.lost_redetect_every_n \
                    and any(t.monitor.state == TrackState.LOST for t in self._tracks.values()):
                reason = "lost"
        if reason:
            start = time.perf_counter()
            found = self.detector.detect(frame, self.queries)
            timings["forward"] += self.detector.forward_ms
            self._apply(found, rgb, depth, reason)
            self._pending_reason = ""
            self._frames_since_detect = 0
            timings["detect"] += 1000 * (time.perf_counter() - start)
        return self._output(rgb, reason, bool(reason), timings, started)

    @staticmethod
    def _check_frame(frame: PerceptionFrame):
        rgb = check_rgb(frame.rgb)
        if frame.depth is not None and np.shape(frame.depth)[:2] != rgb.shape[:2]:
            raise ValueError(f"depth {np.shape(frame.depth)} is not aligned with the {rgb.shape[1]}x{rgb.shape[0]} "
                             f"image")
        return rgb, frame.depth

    def _output(self, rgb: np.ndarray, reason: str, resegment: bool, timings: dict, started: float
                ) -> PipelineOutput:
        """Masks for the visible objects (segmented, or carried with their boxes) and every object's state."""
        self._frames_since_segment += 1
        visible = {label: t for label, t in self._tracks.items() if t.monitor.state.visible}
        segment = bool(visible) and (resegment or self._frames_since_segment >= self.segment_every_k
                                     or any(t.mask is None for t in visible.values()))
        self._masks(rgb, visible, segment, timings)
        detections = [Detection(label, track.phrase, track.mask, track.score, xyxy_to_xywh(track.monitor.box))
                      for label, track in visible.items() if track.mask is not None and track.mask.any()]
        timings["total"] = 1000 * (time.perf_counter() - started)
        tracks = self._tracks.items()
        return PipelineOutput(
            detections, bool(reason), reason, segment, {k: round(v, 3) for k, v in timings.items()},
            {label: round(track.confidence, 3) for label, track in tracks},
            {label: track.monitor.state for label, track in tracks},
            {label: track.monitor.box if track.monitor.state.visible else None for label, track in tracks},
            {label: track.monitor.last_reason for label, track in tracks if not track.monitor.state.visible})

    def _track(self, rgb: np.ndarray, depth, timings: dict) -> None:
        """Move every started track: the tracker's box if the independent checks accept it, else the
        object's appearance searched for around its predicted box, else occluded/lost."""
        start = time.perf_counter()
        for track in self._tracks.values():
            monitor = track.monitor
            if monitor.box is None:
                continue    # never found: only a detection starts it
            if self.tracker_factory is None:
                monitor.miss("not_detected")   # detected again on this frame, or not there
                continue
            reason = "tracker"
            tracker = track.tracker
            if tracker is not None and (monitor.state.visible or (monitor.state == TrackState.OCCLUDED
                                                                  and tracker.follows_through_occlusion)):
                update = tracker.update(rgb)
                timings["forward"] += tracker.forward_ms
                track.confidence = update.confidence
                verdict = monitor.check(rgb, update.box, update.lost, depth)
                if verdict.ok:
                    monitor.accept(rgb, update.box, verdict)
                    continue
                reason = verdict.reason
            elif monitor.state.visible:
                reason = "too_small"   # the box could not start a tracker
            if not monitor.state.visible:
                reason = monitor.last_reason   # still hidden: keep the reason it was lost for
            found = monitor.search(rgb, depth)
            if found is None:
                monitor.miss(reason)
                track.mask = None
                continue
            box, verdict = found
            monitor.accept(rgb, box, verdict, found=True)
            track.tracker = self._start_tracker(rgb, box)   # its mask (if it has one) is carried to the box
        timings["track"] += 1000 * (time.perf_counter() - start)

    def _start_tracker(self, rgb: np.ndarray, box: Box) -> Tracker | None:
        if self.tracker_factory is None:
            return None
        tracker = self.tracker_factory()
        try:
            tracker.start(rgb, box)
        except ValueError:   # a box too small to track: the object is searched for by appearance instead
            return None
        return tracker

    def _apply(self, found: dict[str, BoxDetection], rgb: np.ndarray, depth, reason: str) -> None:
        """Detections -> tracks. New queries, a request and given boxes (and every detection without a tracker)
        start the object afresh, appearance model included. Otherwise a detection that overlaps a visible track
        confirms it and changes nothing; one that contradicts a track, or finds a hidden object, takes over only
        if it looks like the object's model (and, against a visible track, more so than the track's box)."""
        for label, detection in found.items():
            track = self._tracks.get(label)
            if track is None:
                continue
            monitor = track.monitor
            afresh = reason in ("new_queries", "requested", "init_boxes") or self.tracker_factory is None \
                or monitor.appearance_model is None
            if not afresh:
                if monitor.state.visible and box_iou(monitor.box, detection.box) >= AGREEMENT_IOU:
                    track.score = max(track.score, detection.score)
                    continue    # the detector agrees with the track: keep the tracker's box
                model = monitor.appearance_model
                agreement = similarity(model, hs_histogram(rgb, detection.box, inner=0.8))
                if agreement < monitor.config.min_appearance:
                    continue    # not what the object looks like (a false detection, or the object half hidden)
                if monitor.state.visible and similarity(model, hs_histogram(rgb, monitor.box, inner=0.8)) > agreement:
                    continue    # the detection looks less like the object than the track does
            if afresh:
                monitor.start(rgb, detection.box, depth)
            else:
                monitor.restart(detection.box, depth)
            track.tracker = self._start_tracker(rgb, detection.box)
            track.score, track.confidence, track.mask = detection.score, 1.0, None

    def _masks(self, rgb: np.ndarray, visible: dict[str, _Track], segment: bool, timings: dict) -> None:
        start = time.perf_counter()
        if segment:
            results = self.segmenter.segment(rgb, {label: track.monitor.box for label, track in visible.items()})
            timings["forward"] += self.segmenter.forward_ms
            for label, result in results.items():
                track = self._tracks[label]
                track.mask, track.mask_box = result.mask, track.monitor.box
            self._frames_since_segment = 0
        else:
            for track in visible.values():
                if track.mask is not None and track.mask_box != track.monitor.box:
                    track.mask = carry_mask(track.mask, track.mask_box, track.monitor.box)
                    track.mask_box = track.monitor.box
        timings["segment"] += 1000 * (time.perf_counter() - start)


DETECTOR_CHECKPOINT_KINDS = ("grounding_dino", "owlv2", "sam3")
SEGMENTER_CHECKPOINT_KINDS = ("sam", "sam2", "segment_anything")
TRACKER_CHECKPOINT_KINDS = ("sam2_video",)


def build_pipeline(detector: str = "grounding_dino", detector_checkpoint: str = "", segmenter: str = "sam",
                   segmenter_checkpoint: str = "", tracker: str = "template", tracker_checkpoint: str = "",
                   device: str = "cpu",
                   box_threshold: float = 0.35, text_threshold: float = 0.25, min_track_confidence: float = 0.3,
                   redetect_every_n: int = 30, segment_every_k: int = 1, redetect_on_loss: bool = True,
                   lost_redetect_every_n: int = 10, occluded_frames: int = 15, min_appearance: float = 0.6
                   ) -> PerceptionPipeline:
    """Stages by registered name (tracker 'none': detect every frame; detector 'none': tracks start from given
    boxes only; tracker 'sam2_video' needs tracker_checkpoint). ValueError names a bad value; ModelLoadError (a ValueError) names a checkpoint that does not
    load."""
    detector_config: dict = {}
    if detector == "grounding_dino":
        detector_config = dict(checkpoint=detector_checkpoint, device=device, box_threshold=box_threshold,
                               text_threshold=text_threshold)
    elif detector in ("owlv2", "sam3"):
        detector_config = dict(checkpoint=detector_checkpoint, device=device, threshold=box_threshold)
    segmenter_config = {}
    if segmenter in SEGMENTER_CHECKPOINT_KINDS:
        segmenter_config = dict(checkpoint=segmenter_checkpoint, device=device)
    # Names and plain values first, so a typo fails before any model loads.
    if detector != "none":
        DETECTORS.get(detector)
    elif tracker == "none":
        raise ValueError("detector 'none' needs a tracker: with neither, nothing would follow the given boxes")
    SEGMENTERS.get(segmenter)
    for kind, checkpoint, kinds in ((detector, detector_checkpoint, DETECTOR_CHECKPOINT_KINDS),
                                    (segmenter, segmenter_checkpoint, SEGMENTER_CHECKPOINT_KINDS),
                                    (tracker, tracker_checkpoint, TRACKER_CHECKPOINT_KINDS)):
        if kind in kinds:
            check_checkpoint(kind, checkpoint)
    tracker_factory = None
    if tracker != "none":
        make = TRACKERS.get(tracker)
        tracker_config = dict(checkpoint=tracker_checkpoint, device=device) if tracker in TRACKER_CHECKPOINT_KINDS \
            else {}
        tracker_factory = lambda: make(min_confidence=min_track_confidence, **tracker_config)  # noqa: E731
        tracker_factory()  # validates min_track_confidence (and loads a video model once)
    state_config = StateConfig(occluded_frames=occluded_frames, min_appearance=min_appearance)
    schedule = dict(redetect_every_n=redetect_every_n, segment_every_k=segment_every_k,
                    redetect_on_loss=redetect_on_loss, lost_redetect_every_n=lost_redetect_every_n,
                    state_config=state_config)
    PerceptionPipeline(None, None, None, **schedule)  # validates the schedule
    detector_stage = None if detector == "none" else DETECTORS.create(detector, **detector_config)
    segmenter_stage = SEGMENTERS.create(segmenter, **segmenter_config)
    return PerceptionPipeline(detector_stage, segmenter_stage, tracker_factory, **schedule)


def annotate(rgb: np.ndarray, detections: list[Detection], states: dict | None = None) -> np.ndarray:
    """Masks blended in, each object's box outlined in its mask's colour, labels written with their track state
    (`states`: label -> TrackState or str); objects without a mask are listed with their state at the bottom
    left (overlay topic, CLI)."""
    import cv2
    from hamster_core.drawing import MASK_COLORS, draw_masks, drawing_scale
    states = {label: getattr(state, "value", state) for label, state in (states or {}).items()}
    out = draw_masks(rgb, {f"{d.label} {states[d.label]}" if d.label in states else d.label: d.mask
                           for d in detections})
    for index, detection in enumerate(detections):
        x, y, w, h = detection.box
        color = tuple(int(c) for c in MASK_COLORS[index % len(MASK_COLORS)])
        cv2.rectangle(out, (x, y), (x + max(w - 1, 0), y + max(h - 1, 0)), color, 2)
    shown = {d.label for d in detections}
    hidden = [f"{label}: {state}" for label, state in states.items() if label not in shown]
    scale = drawing_scale(out.shape[1], out.shape[0])
    for row, text in enumerate(reversed(hidden)):
        origin = (int(4 * scale), out.shape[0] - int((6 + 16 * row) * scale))
        cv2.putText(out, text, origin, cv2.FONT_HERSHEY_SIMPLEX, 0.5 * scale, (0, 0, 0), max(1, int(scale)) + 2)
        cv2.putText(out, text, origin, cv2.FONT_HERSHEY_SIMPLEX, 0.5 * scale, (255, 255, 255), max(1, int(scale)))
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
