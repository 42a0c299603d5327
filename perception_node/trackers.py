"""OpenCV trackers (`csrt`, `kcf`, `mil`; opencv-contrib, no weights), one per object.

OpenCV's own failure flag differs by tracker (MIL never reports one), so every tracker here also compares the
tracked patch's colour histogram with the one it started from: `confidence` is that agreement, and the box
counts as lost when OpenCV says so, the box leaves the image or degenerates, or confidence falls below
`min_confidence`."""
from __future__ import annotations

import cv2
import numpy as np

from hamster_core.perception.stages import TRACKERS, Box, Tracker, TrackUpdate, check_rgb, check_threshold, clip_box

_FACTORIES = {"csrt": cv2.TrackerCSRT.create, "kcf": cv2.TrackerKCF.create, "mil": cv2.TrackerMIL.create}
_HIST_BINS = [16, 8]


def _histogram(rgb: np.ndarray, box: Box) -> np.ndarray | None:
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    patch = rgb[max(y0, 0):max(y1, 0), max(x0, 0):max(x1, 0)]
    if patch.size == 0:
        return None
    hsv = cv2.cvtColor(np.ascontiguousarray(patch), cv2.COLOR_RGB2HSV)
    hist = cv2.calcHist([hsv], [0, 1], None, _HIST_BINS, [0, 180, 0, 256])
    return cv2.normalize(hist, hist, 1.0, 0.0, cv2.NORM_L1)


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
        self._reference = _histogram(rgb, (x0, y0, x1, y1))

    def update(self, rgb: np.ndarray) -> TrackUpdate:
        if self._tracker is None:
            raise RuntimeError("update() before start()")
        rgb = check_rgb(rgb)
        ok, (x, y, w, h) = self._tracker.update(rgb)
        height, width = rgb.shape[:2]
        box = clip_box((x, y, x + w, y + h), width, height)
        if not ok or box[2] - box[0] < self.min_size_px or box[3] - box[1] < self.min_size_px:
            return TrackUpdate(box, 0.0, True)
        current = _histogram(rgb, box)
        confidence = 0.0 if current is None else float(np.clip(
            cv2.compareHist(self._reference, current, cv2.HISTCMP_INTERSECT), 0.0, 1.0))
        return TrackUpdate(box, confidence, confidence < self.min_confidence)


for _kind in _FACTORIES:
    TRACKERS.register(_kind)(lambda _kind=_kind, **config: OpenCvTracker(_kind, **config))
