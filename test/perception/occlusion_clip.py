"""The held-out clip of issue 20, generated here and used only by the tests: a patterned object slides right
behind a thin post (partly hidden), then fully behind a wide panel, then comes out again; a bowl-like second
object stays still. Every frame comes with the object's full box and its visible fraction, from the pixels
drawn, so the tests score against what is really visible. Nothing in hamster_core knows this generator."""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

OBJECT_W, OBJECT_H = 44, 36


@dataclass
class ClipFrame:
    rgb: np.ndarray
    boxes: dict            # label -> full (x0, y0, x1, y1) of the object, hidden parts included
    visible: dict          # label -> visible fraction in [0, 1]
    visible_boxes: dict    # label -> box of the visible pixels, None when fully hidden


def _background(width, height, rng):
    small = rng.integers(70, 190, (height // 10 + 1, width // 10 + 1, 3)).astype(np.uint8)
    big = cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
    return cv2.GaussianBlur(big, (0, 0), 3)


def _object_patch():
    patch = np.zeros((OBJECT_H, OBJECT_W, 3), np.uint8)
    patch[...] = (200, 40, 50)
    cv2.circle(patch, (OBJECT_W // 2, OBJECT_H // 2), 11, (245, 215, 40), -1)
    patch[:, 6:10] = (30, 60, 190)
    patch[:, -10:-6] = (30, 60, 190)
    return patch


def occlusion_clip(width=320, height=240, frames=68, speed=4.0, seed=7, post=(70, 82), panel=(140, 250)):
    """Frames of the clip. The object's left edge starts at x=10 and moves `speed` px per frame, bobbing a
    little up and down; `post` and `panel` are the x ranges of the two occluders (full height)."""
    rng = np.random.default_rng(seed)
    base = _background(width, height, rng)
    patch = _object_patch()
    bowl_box = (int(width * 0.62), int(height * 0.68), int(width * 0.62) + 60, int(height * 0.68) + 40)
    cv2.ellipse(base, ((bowl_box[0] + bowl_box[2]) // 2, (bowl_box[1] + bowl_box[3]) // 2), (30, 20), 0, 0, 360,
                (40, 150, 70), -1)
    cv2.ellipse(base, ((bowl_box[0] + bowl_box[2]) // 2, (bowl_box[1] + bowl_box[3]) // 2), (18, 10), 0, 0, 360,
                (20, 90, 40), -1)
    out = []
    for t in range(frames):
        rgb = base.copy()
        x = int(round(10 + speed * t))
        y = int(round(60 + 8 * np.sin(t / 6.0)))
        drawn = np.zeros((height, width), bool)
        x1, y1 = min(x + OBJECT_W, width), min(y + OBJECT_H, height)
        if x < width:
            rgb[y:y1, x:x1] = patch[:y1 - y, :x1 - x]
            drawn[y:y1, x:x1] = True
        for (a, b), colour in ((post, (90, 85, 80)), (panel, (150, 140, 120))):
            rgb[:, a:b] = colour
            drawn[:, a:b] = False
        rgb[:, panel[0]:panel[1]:9] = (120, 110, 95)       # the panel's planks
        cols = np.flatnonzero(drawn.any(axis=0))
        rows = np.flatnonzero(drawn.any(axis=1))
        visible_box = None if cols.size == 0 else (float(cols[0]), float(rows[0]), float(cols[-1] + 1),
                                                   float(rows[-1] + 1))
        full = (float(x), float(y), float(x + OBJECT_W), float(y + OBJECT_H))
        out.append(ClipFrame(rgb, {"target_object": full, "placement_area": tuple(map(float, bowl_box))},
                             {"target_object": drawn.sum() / (OBJECT_W * OBJECT_H), "placement_area": 1.0},
                             {"target_object": visible_box, "placement_area": tuple(map(float, bowl_box))}))
    return out
