"""Trackers without weights, one per object: `template` (normalised cross-correlation, the default) and the
OpenCV trackers `csrt`, `kcf`, `mil` (opencv-contrib).

OpenCV's own failure flag differs by tracker (MIL never reports one), so every tracker here also compares the
tracked patch's colour histogram with the one it started from: `confidence` is that agreement, and the box
counts as lost when OpenCV says so, the box leaves the image or degenerates, or confidence falls below
`min_confidence`."""
from __future__ import annotations

import cv2
import numpy as np

from hamster_core.perception.stages import TRACKERS, Box, Tracker, TrackUpdate, check_rgb, check_threshold, clip_box
from hamster_core.perception.track_state import hs_histogram, match_template

_FACTORIES = {"csrt": cv2.TrackerCSRT.create, "kcf": cv2.TrackerKCF.create, "mil": cv2.TrackerMIL.create}
class OpenCvTracker(Tracker):
    def __init__(self, kind: str, min_confidence: float = 0.3, min_size_px: float = 2.0):
        if kind not in _FACTORIES:
            raise ValueError(f"unknown OpenCV tracker {kind!r}; known: {', '.join(_FACTORIES)}")
        self.kind = kind
        self.min_confidence = check_threshold("min_confidence", min_confidence)
        if not min_size_px > 0:
            raise ValueError(f"min_size_px must be positive, got {min_size_px!r}")
        self.min_size_px = float(min_size_px)
        self._tracker = None
        self._reference = None

    def start(self, rgb: np.ndarray, box: Box) -> None:
        rgb = check_rgb(rgb)
        x0, y0, x1, y1 = clip_box(box, rgb.shape[1], rgb.shape[0])
        if x1 - x0 < self.min_size_px or y1 - y0 < self.min_size_px:
            raise ValueError(f"box {box} is too small to track")
        self._tracker = _FACTORIES[self.kind]()
        self._tracker.init(rgb, (int(round(x0)), int(round(y0)), max(1, int(round(x1 - x0))),
                                 max(1, int(round(y1 - y0)))))
        self._reference = hs_histogram(rgb, (x0, y0, x1, y1))

    def update(self, rgb: np.ndarray) -> TrackUpdate:
        if self._tracker is None:
            raise RuntimeError("update() before start()")
        rgb = check_rgb(rgb)
        ok, (x, y, w, h) = self._tracker.update(rgb)
        height, width = rgb.shape[:2]
        box = clip_box((x, y, x + w, y + h), width, height)
        if not ok or box[2] - box[0] < self.min_size_px or box[3] - box[1] < self.min_size_px:
            return TrackUpdate(box, 0.0, True)
        current = hs_histogram(rgb, box)
        confidence = 0.0 if current is None else float(np.clip(
            cv2.compareHist(self._reference, current, cv2.HISTCMP_INTERSECT), 0.0, 1.0))
        return TrackUpdate(box, confidence, confidence < self.min_confidence)


for _kind in _FACTORIES:
    TRACKERS.register(_kind)(lambda _kind=_kind, **config: OpenCvTracker(_kind, **config))


@TRACKERS.register("template")
class TemplateTracker(Tracker):
    """The object's patch found again in every frame by normalised cross-correlation, in a window around its
    last box moved by its last velocity (coarse at a reduced scale, refined at full resolution). No scale
    change; about 0.5 ms per object at 640x480, where CSRT takes ~13 ms. `confidence` is the correlation
    peak; the patch adapts slowly on frames that match it well."""

    def __init__(self, min_confidence: float = 0.3, min_size_px: float = 2.0, reach: float = 1.0,
                 learning_rate: float = 0.05):
        self.min_confidence = check_threshold("min_confidence", min_confidence)
        self.learning_rate = check_threshold("learning_rate", learning_rate)
        if not min_size_px > 0:
            raise ValueError(f"min_size_px must be positive, got {min_size_px!r}")
        if not reach > 0:
            raise ValueError(f"reach must be positive, got {reach!r}")
        self.min_size_px, self.reach = float(min_size_px), float(reach)
        self._template = None
        self._box = None
        self._velocity = np.zeros(2)

    def start(self, rgb: np.ndarray, box: Box) -> None:
        rgb = check_rgb(rgb)
        x0, y0, x1, y1 = (int(round(v)) for v in clip_box(box, rgb.shape[1], rgb.shape[0]))
        if x1 - x0 < self.min_size_px or y1 - y0 < self.min_size_px:
            raise ValueError(f"box {box} is too small to track")
        self._template = rgb[y0:y1, x0:x1].copy()
        self._box = (float(x0), float(y0), float(x1), float(y1))
        self._velocity = np.zeros(2)

    def update(self, rgb: np.ndarray) -> TrackUpdate:
        if self._template is None:
            raise RuntimeError("update() before start()")
        rgb = check_rgb(rgb)
        dx, dy = self._velocity
        x0, y0, x1, y1 = self._box
        w, h = x1 - x0, y1 - y0
        region = clip_box((x0 + dx - self.reach * w, y0 + dy - self.reach * h, x1 + dx + self.reach * w,
                           y1 + dy + self.reach * h), rgb.shape[1], rgb.shape[0])
        found = match_template(rgb, self._template, region)
        if found is None:
            return TrackUpdate(self._box, 0.0, True)
        box, score = found
        if score < self.min_confidence:
            return TrackUpdate(box, max(score, 0.0), True)
        self._velocity = np.array([box[0] - x0, box[1] - y0])
        self._box = box
        if score > 0.8:
            patch = rgb[int(box[1]):int(box[3]), int(box[0]):int(box[2])]
            if patch.shape == self._template.shape:
                self._template = cv2.addWeighted(self._template, 1 - self.learning_rate, patch, self.learning_rate, 0)
        return TrackUpdate(box, score, False)
