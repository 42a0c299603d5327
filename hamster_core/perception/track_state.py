"""Whether a track can be believed, decided without the tracker's word: every object on every frame is
`detected`, `tracked`, `occluded` or `lost`.

A tracker's box is accepted (`tracked`) only while checks independent of the tracker agree with it:
- appearance: the box's colour histogram against the object's model (Bhattacharyya coefficient), the model
  updated only on frames that pass every check with a high score;
- size: the box's area may not move away from the model's (a tracker shrinking inside a plain block, or
  growing onto the background);
- motion: the box centre may not jump further than a fraction of the box diagonal from its prediction;
- drift: a box that is not confidently the object may not creep away from where the last confident frame
  predicts it (a tracker sliding off a plain object a pixel per frame passes every per-frame check);
- depth, when an aligned depth image comes with the frame: most of the box may not be clearly in front of the
  object's depth extent (an occluder) or behind it (a box slid onto the background).
A box that fails goes to `occluded` (the last trusted box and depth are kept, the object is expected back);
after `occluded_frames` frames without re-acquisition it is `lost`. While occluded or lost, the object is
searched for by its appearance (template match of its stored patch, then the histogram check) around where it
was predicted to be, the search area growing with the frames it has been away; a match restarts the tracker.

ROS-free; images are RGB uint8 (H, W, 3), boxes (x0, y0, x1, y1) pixel corners.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import cv2
import numpy as np

from hamster_core.perception.stages import Box, box_area, clip_box

HIST_BINS = [16, 8]           # hue x saturation
SEARCH_SIDE_PX = 20           # templates are matched at a scale where their shorter side is about this
MIN_MODEL_PX = 4              # a box smaller than this on a side is too small to learn an appearance from
DRIFT_EXTRAPOLATION_FRAMES = 3  # the drift check extrapolates the last confident motion this far, no further:
                                # a box that keeps moving while not confidently the object is searched for anew


class TrackState(str, Enum):
    DETECTED = "detected"     # the box came from the detector (or a given initial box) on this frame
    TRACKED = "tracked"       # the tracker's (or re-acquisition's) box, confirmed by the independent checks
    OCCLUDED = "occluded"     # not confirmed; expected back, last trusted box kept
    LOST = "lost"             # not seen for too long, or never found

    @property
    def visible(self) -> bool:
        return self in (TrackState.DETECTED, TrackState.TRACKED)


def hs_histogram(rgb: np.ndarray, box: Box, inner: float = 1.0) -> np.ndarray | None:
    """L1-normalised hue-saturation histogram of the box's central `inner` fraction; None for an empty box."""
    x0, y0, x1, y1 = box
    mx, my = (x1 - x0) * (1 - inner) / 2, (y1 - y0) * (1 - inner) / 2
    height, width = rgb.shape[:2]
    x0, y0, x1, y1 = (int(round(v)) for v in clip_box((x0 + mx, y0 + my, x1 - mx, y1 - my), width, height))
    patch = rgb[y0:y1, x0:x1]
    if patch.size == 0:
        return None
    hsv = cv2.cvtColor(np.ascontiguousarray(patch), cv2.COLOR_RGB2HSV)
    hist = cv2.calcHist([hsv], [0, 1], None, HIST_BINS, [0, 180, 0, 256])
    return cv2.normalize(hist, hist, 1.0, 0.0, cv2.NORM_L1)


def similarity(a: np.ndarray | None, b: np.ndarray | None) -> float:
    """Bhattacharyya coefficient of two normalised histograms: 1 identical, 0 disjoint."""
    if a is None or b is None:
        return 0.0
    return float(np.clip(np.sqrt(a * b).sum(), 0.0, 1.0))


def box_depths(depth: np.ndarray | None, box: Box, inner: float = 0.8) -> np.ndarray | None:
    """Valid depths (m) of the box's central `inner` fraction; None without depth or valid pixels."""
    if depth is None:
        return None
    x0, y0, x1, y1 = box
    mx, my = (x1 - x0) * (1 - inner) / 2, (y1 - y0) * (1 - inner) / 2
    height, width = depth.shape[:2]
    x0, y0, x1, y1 = (int(round(v)) for v in clip_box((x0 + mx, y0 + my, x1 - mx, y1 - my), width, height))
    values = depth[y0:y1, x0:x1].astype(np.float32).ravel()
    values = values[np.isfinite(values) & (values > 0)]
    return values if values.size else None


def depth_range(values: np.ndarray | None) -> tuple[float, float] | None:
    """The object's depth extent as (10th, 90th percentile): a bowl's rim and bottom both belong to it."""
    return None if values is None else (float(np.percentile(values, 10)), float(np.percentile(values, 90)))


def depth_jump(values: np.ndarray | None, reference: tuple[float, float] | None, jump: float) -> str:
    """'nearer' when most of the box is clearly in front of the object's depth extent (an occluder), 'farther'
    when most of it is clearly behind (the box slid onto the table or background), else ''. A small object
    put in or on the object (a cube in a bowl) covers too little of the box to count."""
    if values is None or reference is None:
        return ""
    if np.mean(values < reference[0] - jump) > 0.5:
        return "nearer"
    if np.mean(values > reference[1] + jump) > 0.5:
        return "farther"
    return ""


@dataclass(frozen=True)
class StateConfig:
    min_appearance: float = 0.6       # histogram agreement below this: not the object
    confident_appearance: float = 0.9  # the model learns only from frames at least this similar
    min_match: float = 0.7            # template correlation a re-acquisition needs (with min_appearance)
    max_scale_change: float = 0.35    # box area may differ from the model's by this fraction (either way)
    max_step: float = 0.5             # centre jump per frame, as a fraction of the box diagonal
    max_drift: float = 0.25           # distance from where the last confident frame predicts it, as a fraction
                                      # of the diagonal, a box that is not itself confident may drift
    max_depth_jump_m: float = 0.05    # most of the box this much in front of / behind the object's depth extent
    occluded_frames: int = 15         # occluded this many frames without re-acquisition: lost
    learning_rate: float = 0.1        # appearance/size model update on confident frames

    def __post_init__(self):
        for name in ("min_appearance", "confident_appearance", "min_match", "learning_rate"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value!r}")
        for name in ("max_scale_change", "max_step", "max_drift", "max_depth_jump_m"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"{name} must be positive, got {value!r}")
        if not isinstance(self.occluded_frames, int) or self.occluded_frames < 0:
            raise ValueError(f"occluded_frames must be an integer >= 0, got {self.occluded_frames!r}")


@dataclass
class Verdict:
    ok: bool
    appearance: float
    reason: str = ""          # the first check that failed: tracker, size, motion, appearance, depth
    # What an accepted box was judged on, so `accept` learns from it without computing it again.
    histogram: np.ndarray | None = None
    depths: np.ndarray | None = None


class TrackMonitor:
    """One object's state, appearance model and motion: `start` (or `restart`) from a detection, then each
    frame `check` the tracker's box and `accept` it, or else `search` for the object and `accept` what is found,
    or `miss` it."""

    def __init__(self, config: StateConfig | None = None):
        self.config = config or StateConfig()
        self.state = TrackState.LOST
        self.box: Box | None = None            # the last trusted box
        self.depth: tuple[float, float] | None = None   # depth extent (m) of the last trusted box
        self.frames_hidden = 0
        self.last_reason = "never_found"
        self._hist = None
        self._template = None                  # RGB patch of the object from a confident frame
        self._area = 0.0
        self._velocity = np.zeros(2)
        self._anchor = None                    # (box, velocity) of the last confident frame
        self._since_anchor = 0

    def start(self, rgb: np.ndarray, box: Box, depth: np.ndarray | None = None) -> None:
        """A detection (or a given box): the model is rebuilt from it, the object counts as `detected`. A box
        under MIN_MODEL_PX on a side gives no model (nothing to check against): the next detection replaces it."""
        tiny = min(box[2] - box[0], box[3] - box[1]) < MIN_MODEL_PX
        self._hist = None if tiny else hs_histogram(rgb, box, inner=0.8)
        self._template = None if tiny else _crop(rgb, box)
        self._area = box_area(box)
        self.restart(box, depth)

    def restart(self, box: Box, depth: np.ndarray | None = None) -> None:
        """A detection of an object already known: `detected` there, its appearance model kept (it was learnt
        from confident frames; a detection's box may be loose or the object partly hidden)."""
        self._velocity = np.zeros(2)
        self._anchor, self._since_anchor = (box, np.zeros(2)), 0
        self.box, self.depth = box, depth_range(box_depths(depth, box))
        self.state, self.frames_hidden, self.last_reason = TrackState.DETECTED, 0, ""

    @property
    def appearance_model(self) -> np.ndarray | None:
        return self._hist

    @property
    def predicted(self) -> Box | None:
        """The last trusted box moved by the last velocity for every frame since (damped while hidden)."""
        if self.box is None:
            return None
        steps = min(self.frames_hidden + 1, 10)
        dx, dy = self._velocity * steps
        return self.box[0] + dx, self.box[1] + dy, self.box[2] + dx, self.box[3] + dy

    def check(self, rgb: np.ndarray, box: Box | None, tracker_lost: bool, depth: np.ndarray | None = None,
              ) -> Verdict:
        """The independent checks on a candidate box (the tracker's), cheapest first."""
        cfg = self.config
        if box is None or tracker_lost or self._hist is None:
            return Verdict(False, 0.0, "tracker")
        area = box_area(box)
        if not (1 - cfg.max_scale_change) * self._area <= area <= self._area / (1 - cfg.max_scale_change):
            return Verdict(False, 0.0, "size")
        predicted = self.predicted
        diagonal = float(np.hypot(predicted[2] - predicted[0], predicted[3] - predicted[1]))
        if np.hypot(*(_centre(box) - _centre(predicted))) > cfg.max_step * max(diagonal, 1.0) * (1 + self.frames_hidden):
            return Verdict(False, 0.0, "motion")
        histogram = hs_histogram(rgb, box, inner=0.8)
        appearance = similarity(self._hist, histogram)
        if appearance < cfg.min_appearance:
            return Verdict(False, appearance, "appearance")
        if appearance < cfg.confident_appearance and self._anchor is not None:
            # Not confidently the object: it may not creep away from where the last confident frame predicts
            # it (a tracker sliding off a plain object one pixel per frame passes every per-frame check).
            anchor, velocity = self._anchor
            expected = _centre(anchor) + velocity * min(self._since_anchor + 1, DRIFT_EXTRAPOLATION_FRAMES)
            if np.hypot(*(_centre(box) - expected)) > cfg.max_drift * max(diagonal, 1.0):
                return Verdict(False, appearance, "drift")
        depths = box_depths(depth, box)
        if depth_jump(depths, self.depth, cfg.max_depth_jump_m):
            return Verdict(False, appearance, "depth")
        return Verdict(True, appearance, histogram=histogram, depths=depths)

    def accept(self, rgb: np.ndarray, box: Box, verdict: Verdict, found: bool = False) -> None:
        """The checks passed: `tracked`; the model learns from the frame only when it is confidently the object.
        `found`: the box comes from the appearance search, which re-anchors the drift check there."""
        cfg = self.config
        if self.box is not None:
            step = (_centre(box) - _centre(self.box)) / (1 + self.frames_hidden)
            self._velocity = 0.5 * self._velocity + 0.5 * step
        if found or verdict.appearance >= cfg.confident_appearance:
            self._anchor, self._since_anchor = (box, self._velocity.copy()), 0
        else:
            self._since_anchor += 1
        self.box, self.state, self.frames_hidden, self.last_reason = box, TrackState.TRACKED, 0, ""
        measured = depth_range(verdict.depths)
        if measured is not None:
            self.depth = measured if self.depth is None else tuple(0.5 * (a + b) for a, b in zip(self.depth, measured))
        if verdict.appearance >= cfg.confident_appearance:
            rate = cfg.learning_rate
            self._hist = (1 - rate) * self._hist + rate * verdict.histogram
            self._area = (1 - rate) * self._area + rate * box_area(box)
            patch = _crop(rgb, box)
            if patch is not None and self._template is not None:
                resized = cv2.resize(patch, self._template.shape[1::-1], interpolation=cv2.INTER_AREA)
                self._template = cv2.addWeighted(self._template, 1 - rate, resized, rate, 0)

    def miss(self, reason: str) -> None:
        """Neither the tracker nor the search found the object on this frame."""
        self.frames_hidden += 1
        self._since_anchor += 1
        self.last_reason = reason
        if self.box is None or self.frames_hidden > self.config.occluded_frames:
            self.state = TrackState.LOST
        else:
            self.state = TrackState.OCCLUDED

    def search(self, rgb: np.ndarray, depth: np.ndarray | None = None) -> tuple[Box, Verdict] | None:
        """The object's stored patch matched around its predicted box (the whole image once lost); the best
        match if it correlates at least `min_match` and passes the appearance and depth checks."""
        if self._template is None or self.box is None or min(self._template.shape[:2]) < 2:
            return None
        height, width = rgb.shape[:2]
        predicted = self.predicted
        box_w, box_h = predicted[2] - predicted[0], predicted[3] - predicted[1]
        if self.state == TrackState.LOST:
            region = (0.0, 0.0, float(width), float(height))
        else:
            reach = 1.0 + 0.5 * min(self.frames_hidden, 10)
            cx, cy = _centre(predicted)
            region = clip_box((cx - box_w * (0.5 + reach), cy - box_h * (0.5 + reach),
                               cx + box_w * (0.5 + reach), cy + box_h * (0.5 + reach)), width, height)
        found = match_template(rgb, self._template, region)
        if found is None:
            return None
        box, score = found
        if score < self.config.min_match:
            return None
        histogram = hs_histogram(rgb, box, inner=0.8)
        appearance = similarity(self._hist, histogram)
        if appearance < self.config.min_appearance:
            return None
        depths = box_depths(depth, box)
        if depth_jump(depths, self.depth, self.config.max_depth_jump_m * (1 + self.frames_hidden)):
            return None
        return box, Verdict(True, appearance, histogram=histogram, depths=depths)


def match_template(rgb: np.ndarray, template: np.ndarray, region: Box) -> tuple[Box, float] | None:
    """Best normalised correlation of `template` inside `region`, computed at a scale where the template's
    shorter side is ~SEARCH_SIDE_PX and refined at full resolution around the coarse peak."""
    t_h, t_w = template.shape[:2]
    x0, y0, x1, y1 = (int(round(v)) for v in region)
    if x1 - x0 < t_w or y1 - y0 < t_h:
        return None
    scale = min(1.0, SEARCH_SIDE_PX / min(t_h, t_w))
    window = rgb[y0:y1, x0:x1]
    if scale < 1.0:
        small_t = cv2.resize(template, (max(2, round(t_w * scale)), max(2, round(t_h * scale))),
                             interpolation=cv2.INTER_AREA)
        small_w = cv2.resize(window, (max(small_t.shape[1], round(window.shape[1] * scale)),
                                      max(small_t.shape[0], round(window.shape[0] * scale))),
                             interpolation=cv2.INTER_AREA)
        scores = cv2.matchTemplate(small_w, small_t, cv2.TM_CCOEFF_NORMED)
        _, _, _, (sx, sy) = cv2.minMaxLoc(scores)
        # Refine at full resolution within one coarse pixel (plus rounding) of the coarse peak.
        slack = int(np.ceil(1 / scale)) + 1
        fx, fy = int(round(sx / scale)), int(round(sy / scale))
        rx0, ry0 = max(x0, x0 + fx - slack), max(y0, y0 + fy - slack)
        rx1, ry1 = min(x1, x0 + fx + t_w + slack), min(y1, y0 + fy + t_h + slack)
        x0, y0, window = rx0, ry0, rgb[ry0:ry1, rx0:rx1]
        if window.shape[0] < t_h or window.shape[1] < t_w:
            return None
    scores = cv2.matchTemplate(window, template, cv2.TM_CCOEFF_NORMED)
    _, best, _, (bx, by) = cv2.minMaxLoc(scores)
    if not np.isfinite(best):
        return None
    return (float(x0 + bx), float(y0 + by), float(x0 + bx + t_w), float(y0 + by + t_h)), float(best)


def _crop(rgb: np.ndarray, box: Box) -> np.ndarray | None:
    height, width = rgb.shape[:2]
    x0, y0, x1, y1 = (int(round(v)) for v in clip_box(box, width, height))
    patch = rgb[y0:y1, x0:x1]
    return np.ascontiguousarray(patch) if patch.size else None


def _centre(box: Box) -> np.ndarray:
    return np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])
