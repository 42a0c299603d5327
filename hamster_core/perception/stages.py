"""The three stages the `pipeline` perception backend composes, each chosen by name from its registry:

- a detector finds the best box per queried label (label -> phrase) in a frame;
- a tracker follows one box from frame to frame and says when it has lost it;
- a segmenter turns boxes into masks, computing the image's embedding once for all boxes.

Boxes are (x0, y0, x1, y1) pixel corners as floats, x along the width, inside the image.
ROS-free; the models load lazily inside the stage modules, so importing this is cheap.
"""
from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hamster_core.registry import Registry
from hamster_core.perception.backend import PerceptionFrame

Box = tuple[float, float, float, float]


class ModelLoadError(ValueError):
    """A checkpoint that cannot be loaded. A ValueError, so a node exits with the message instead of a trace."""


@dataclass
class BoxDetection:
    box: Box
    score: float


@dataclass
class SegmentedBox:
    mask: np.ndarray        # (H, W) bool
    score: float            # the segmenter's own quality estimate (predicted IoU), 1.0 when it has none


@dataclass
class TrackUpdate:
    box: Box
    confidence: float       # in [0, 1]: appearance agreement with the box the tracker started from
    lost: bool


class Detector(ABC):
    #: Reads the simulator's segmentation (PerceptionFrame.segmentation) instead of the pixels.
    uses_segmentation = False
    #: Milliseconds of the last call spent in model forward passes (the rest is pre/post-processing).
    forward_ms = 0.0

    @abstractmethod
    def detect(self, frame: PerceptionFrame, queries: dict[str, str]) -> dict[str, BoxDetection]:
        """The best box per label whose phrase was found; labels not found are left out."""


class Segmenter(ABC):
    forward_ms = 0.0

    @abstractmethod
    def segment(self, rgb: np.ndarray, boxes: dict[str, Box]) -> dict[str, SegmentedBox]:
        """One mask of the image's size per box, from one image embedding shared by all boxes."""


class Tracker(ABC):
    #: Milliseconds of the last update spent in model forward passes (video-model trackers).
    forward_ms = 0.0
    #: Carries the object through occlusions itself (a video model's memory): keep updating it while the object
    #: is occluded. Other trackers drift there and are restarted when the object is found again.
    follows_through_occlusion = False

    @abstractmethod
    def start(self, rgb: np.ndarray, box: Box) -> None:
        """Forget the past and follow `box` from this frame on."""

    @abstractmethod
    def update(self, rgb: np.ndarray) -> TrackUpdate:
        """The box in a new frame."""


DETECTORS: Registry[Detector] = Registry("detector", "hamster_runtime.detectors")
SEGMENTERS: Registry[Segmenter] = Registry("segmenter", "hamster_runtime.segmenters")
TRACKERS: Registry[Tracker] = Registry("tracker", "hamster_runtime.trackers")


# ---------------------------------------------------------------------------------------------------- helpers

def clip_box(box, width: int, height: int) -> Box:
    x0, y0, x1, y1 = (float(v) for v in box)
    x0, x1 = sorted((min(max(x0, 0.0), width), min(max(x1, 0.0), width)))
    y0, y1 = sorted((min(max(y0, 0.0), height), min(max(y1, 0.0), height)))
    return x0, y0, x1, y1


def box_area(box: Box) -> float:
    return max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])


def box_iou(a: Box, b: Box) -> float:
    inter = box_area((max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])))
    union = box_area(a) + box_area(b) - inter
    return inter / union if union > 0 else 0.0


def xyxy_to_xywh(box: Box) -> tuple[int, int, int, int]:
    """Float corners -> integer x, y, width, height covering them (Detection.box, RegionOfInterest)."""
    x0, y0 = int(np.floor(box[0])), int(np.floor(box[1]))
    return x0, y0, max(0, int(np.ceil(box[2])) - x0), max(0, int(np.ceil(box[3])) - y0)


def mask_box(mask: np.ndarray) -> Box | None:
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if len(rows) == 0:
        return None
    return float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1)


def box_mask(box: Box, height: int, width: int) -> np.ndarray:
    mask = np.zeros((height, width), bool)
    x0, y0, x1, y1 = clip_box(box, width, height)
    mask[int(round(y0)):int(round(y1)), int(round(x0)):int(round(x1))] = True
    return mask


def carry_mask(mask: np.ndarray, old: Box, new: Box) -> np.ndarray:
    """Move and scale a mask by the motion of its box (old -> new): the every-k segmentation in between."""
    import cv2
    sx = (new[2] - new[0]) / max(old[2] - old[0], 1e-6)
    sy = (new[3] - new[1]) / max(old[3] - old[1], 1e-6)
    # Pixel (i, j) covers [j, j + 1): map its centre, j + 0.5, by the corner mapping.
    affine = np.array([[sx, 0.0, new[0] - sx * old[0] + 0.5 * sx - 0.5],
                       [0.0, sy, new[1] - sy * old[1] + 0.5 * sy - 0.5]], np.float32)
    height, width = mask.shape
    moved = cv2.warpAffine(mask.astype(np.uint8), affine, (width, height), flags=cv2.INTER_NEAREST,
                           borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return moved.astype(bool)


def check_rgb(rgb) -> np.ndarray:
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.shape[0] < 2 or rgb.shape[1] < 2:
        raise ValueError(f"expected a uint8 (H, W, 3) RGB image, got {rgb.dtype} {rgb.shape}")
    return rgb


def check_checkpoint(kind: str, checkpoint) -> str:
    """A checkpoint that names a local path (absolute, ./ ../ ~, or more than one '/') must exist: the hub would
    otherwise report it as a malformed repo id."""
    if not isinstance(checkpoint, str) or not checkpoint.strip():
        raise ValueError(f"{kind} needs a checkpoint (a folder or hub id), got {checkpoint!r}")
    local = checkpoint.startswith(("/", "./", "../", "~")) or checkpoint.count("/") > 1 or "\\" in checkpoint
    if local and not Path(checkpoint).expanduser().exists():
        raise ModelLoadError(f"the {kind} checkpoint {checkpoint!r} does not exist (a local path; hub ids look like "
                         f"'org/name')")
    return checkpoint


def check_threshold(name: str, value) -> float:
    if not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value!r}")
    return float(value)


def torch_device(name: str):
    """A torch device from its name; ValueError naming it when torch does not know it or it is absent."""
    import torch
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as error:
        raise ValueError(f"unknown device {name!r}: {error}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} asked for, but torch sees no CUDA device")
    return device


class Stopwatch:
    """Accumulates the milliseconds spent in `with watch:` blocks (model forward passes)."""

    def __init__(self):
        self.ms = 0.0

    def __enter__(self):
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.ms += 1000 * (time.perf_counter() - self._start)
