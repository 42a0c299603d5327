"""Drawing 2D paths and grounding masks on RGB images.

`draw_path` reproduces `draw_lines_on_image_cv` of HAMSTER's released client (gradio_server_example.py in
github.com/liyi14/HAMSTER_beta), the overlay its low-level policies were trained on, pixel for pixel:
- points go to pixels by truncation, int(x * width), int(y * height);
- the path is resampled to 100 points evenly spaced by arc length measured in those pixels (the gripper changes
  are not kept: only the rings show them), truncated to integers, and drawn as 8-connected line segments
  coloured by progress with the jet colormap, dark blue at the start to dark red at the end (segment i gets
  the colour of sample i);
- a ring marks the first point and every point whose gripper state differs from the point before: blue where
  the gripper is closed, red where it is open. The reference reads an answer with the gripper CLOSED until its
  first action (its `action_flag` starts at GRIPPER_CLOSE), so the points before the path's first gripper
  change are drawn in `start_state` (CLOSED by default, as the reference; OPEN draws the runtime's own
  semantics). For the usual answer (reach, Close, carry, Open) the start ring is therefore blue and the grasp
  gets no ring. An explicit "Open Gripper" written before any close leaves no trace in a Path2D and is not drawn;
- sizes scale with s = max(min(width, height) / 512, 1): line thickness max(1, int(2 s)), ring radius
  int(7 s), ring thickness max(1, int(2 s)); images smaller than 512 px keep the 512 px sizes;
- rings are drawn first and the path over them, in HAMSTER's order.
Where the reference divides by zero (two equal consecutive points under a sample) the sample takes the point
itself; a single-point path gets its ring only (the reference fails on both). `antialias=True` draws the same
path anti-aliased at sub-pixel precision instead (no truncation), which is not what the model was trained on.

`draw_path_channels` is the other conditioning the HAMSTER paper compares: the path as extra input channels
next to the RGB image instead of painted over it (see its docstring for the channel layout).
"""
from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

from hamster_core.path2d import GripperState, Path2D, resample

# RGB, as the images here are RGB: blue where the gripper closes, red where it opens (HAMSTER's drawing). The rviz
# markers (hamster_ros/markers.py) colour the lifted path and the grasp/place arrows from these.
GRIPPER_RING_COLORS = {GripperState.CLOSED: (0, 0, 255), GripperState.OPEN: (255, 0, 0)}

# tab10 in RGB: distinct colours for up to ten masks, then they repeat.
MASK_COLORS = np.array([
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
], dtype=np.float64)

_SHIFT = 4  # cv2 fixed-point bits for sub-pixel drawing
_SUBPIXEL = 1 << _SHIFT


def drawing_scale(width: int, height: int) -> float:
    """HAMSTER's size factor relative to a 512 x 512 image, never below 1."""
    return max(min(width, height) / 512.0, 1.0)


@lru_cache(maxsize=8)
def _colormap(name: str) -> np.ndarray:
    import matplotlib  # imported lazily: only drawing needs it

    try:
        colormap = matplotlib.colormaps[name]
    except KeyError as error:
        raise ValueError(f"unknown matplotlib colormap {name!r}") from error
    return colormap


def _check_rgb(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3 or image.shape[0] == 0 \
            or image.shape[1] == 0:
        raise ValueError(f"image must be a non-empty uint8 (H, W, 3) RGB array, got {image.dtype} {image.shape}")
    return image


def _to_cv_fixed_point(pixels: np.ndarray) -> np.ndarray:
    # cv2 puts pixel centres on integers; here the centre of pixel j is at j + 0.5.
    return np.rint((pixels - 0.5) * _SUBPIXEL).astype(np.int32)


def drawn_gripper_states(path: Path2D, start_state: GripperState = GripperState.CLOSED) -> np.ndarray:
    """The gripper state the drawing gives each point: the path's, with the points before its first change in
    `start_state` (see the module docstring)."""
    states = path.gripper.copy()
    changes = path.gripper_change_indices()
    states[:changes[0] if len(changes) else len(path)] = GripperState(start_state)
    return states


def arc_length_samples(pixels: np.ndarray, num_points: int) -> np.ndarray:
    """`num_points` points evenly spaced by arc length along the polyline `pixels` (N >= 2, float32), computed as
    the reference does (float32, the first segment whose end is at or past each sample distance)."""
    steps = np.linalg.norm(np.diff(pixels, axis=0), axis=1)
    arc = np.concatenate((np.zeros(1, np.float32), np.cumsum(steps, dtype=np.float32)))
    distances = np.linspace(0, arc[-1], num_points)
    segment = np.minimum(np.searchsorted(arc[1:], distances, side="left"), len(pixels) - 2)
    length = arc[segment + 1] - arc[segment]
    with np.errstate(invalid="ignore", divide="ignore"):
        t = np.where(length > 0, (distances - arc[segment]) / length, np.float32(0)).astype(np.float32)
    return (1 - t)[:, None] * pixels[segment] + t[:, None] * pixels[segment + 1]


def draw_path(image_rgb: np.ndarray, path: Path2D, *, num_points: int = 100, colormap: str = "jet",
              start_state: GripperState = GripperState.CLOSED, antialias: bool = False) -> np.ndarray:
    """A copy of `image_rgb` with `path` drawn on it as HAMSTER's released client does (module docstring)."""
    image = _check_rgb(image_rgb)
    if num_points < 2:
        raise ValueError(f"num_points must be >= 2, got {num_points}")
    if start_state not in (GripperState.OPEN, GripperState.CLOSED):
        raise ValueError(f"start_state must be a GripperState, got {start_state!r}")
    out = image.copy()
    height, width = out.shape[:2]
    scale = drawing_scale(width, height)
    line_thickness = max(1, int(2 * scale))
    ring_radius = int(7 * scale)
    ring_thickness = max(1, int(2 * scale))
    if antialias:
        pixels = path.to_pixels(width, height).astype(np.float32)
        to_cv = _to_cv_fixed_point
        line_type, shift, unit = cv2.LINE_AA, _SHIFT, _SUBPIXEL
    else:
        pixels = np.trunc(path.to_pixels(width, height)).astype(np.float32)
        to_cv = lambda points: np.trunc(points).astype(np.int32)  # noqa: E731 - the reference's int()
        line_type, shift, unit = cv2.LINE_8, 0, 1

    states = drawn_gripper_states(path, start_state)
    corners = to_cv(pixels)
    for index in range(len(path)):
        if index == 0 or states[index] != states[index - 1]:
            color = GRIPPER_RING_COLORS[GripperState(states[index])]
            cv2.circle(out, tuple(corners[index].tolist()), ring_radius * unit, color, ring_thickness, line_type,
                       shift)

    if len(path) > 1:
        vertices = to_cv(arc_length_samples(pixels, num_points)).tolist()
        progress = np.linspace(0.0, 1.0, len(vertices))
        colors = (_colormap(colormap)(progress)[:, :3] * 255).astype(np.uint8).tolist()
        for start, end, color in zip(vertices[:-1], vertices[1:], colors):
            cv2.line(out, tuple(start), tuple(end), tuple(color), line_thickness, line_type, shift)
    return out


def draw_masks(image_rgb: np.ndarray, masks: dict[str, np.ndarray], alpha: float = 0.4) -> np.ndarray:
    """A copy of `image_rgb` with each mask blended in its own colour (weight `alpha`) and its label written
    inside the top-left corner of the mask's bounding box. Masks are bool or uint8 (non-zero inside), H x W."""
    image = _check_rgb(image_rgb)
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    height, width = image.shape[:2]
    blended = image.astype(np.float32)
    labels = []
    for index, (label, mask) in enumerate(masks.items()):
        mask = np.asarray(mask)
        if mask.shape != (height, width) or mask.dtype not in (np.bool_, np.uint8):
            raise ValueError(f"mask {label!r} must be a bool or uint8 array of shape {(height, width)}, "
                             f"got {mask.dtype} {mask.shape}")
        inside = mask.astype(bool)
        color = MASK_COLORS[index % len(MASK_COLORS)]
        blended[inside] = (1.0 - alpha) * blended[inside] + alpha * color
        rows, cols = np.nonzero(inside.any(axis=1))[0], np.nonzero(inside.any(axis=0))[0]
        if len(rows):
            labels.append((label, (int(cols[0]), int(rows[0]))))
    out = np.rint(blended).astype(np.uint8)

    scale = drawing_scale(width, height)
    font_scale, thickness = 0.5 * scale, max(1, int(scale))
    for label, (left, top) in labels:
        (_, text_height), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, font_scale, thickness)
        origin = (left + 2, top + text_height + 2)
        # White on a black outline stays readable on any mask colour and background.
        cv2.putText(out, label, origin, cv2.FONT_HERSHEY_SIMPLEX, font_scale, (0, 0, 0), thickness + 2, cv2.LINE_AA)
        cv2.putText(out, label, origin, cv2.FONT_HERSHEY_SIMPLEX, font_scale, (255, 255, 255), thickness, cv2.LINE_AA)
    return out


# Channel layout of `draw_path_channels`.
PATH_CHANNELS = ("progress", "gripper_open", "gripper_closed")
CHANNEL_PROGRESS, CHANNEL_GRIPPER_OPEN, CHANNEL_GRIPPER_CLOSED = range(3)


def draw_path_channels(height: int, width: int, path: Path2D, *, num_points: int = 100,
                       thickness: int | None = None, dtype=np.float32) -> np.ndarray:
    """The path rasterised as separate channels, (height, width, 3), for policies conditioned on path channels
    instead of an RGB overlay.

    Channel 0 `progress`: on the path, the fraction of arc length travelled there, 0 at the start to 1 at the
    end; 0 off the path. Channel 1 `gripper_open` / channel 2 `gripper_closed`: 1 on the stretches where the
    gripper is open / closed (the state `gripper[i]` held from point i to i + 1), 0 elsewhere; their sum is the
    path mask, which tells a start pixel (progress 0) from the background. Gripper-change points get a filled
    disc of the new state (and the progress at the change), so a change stays visible where stretches overlap.
    The path is resampled to `num_points` like `draw_path`; thickness defaults to draw_path's line thickness for
    the image size. Lines are not anti-aliased, so every channel holds exact values. Where stretches cross,
    the later one wins.
    `dtype=np.uint8` scales values to 0..255 (progress rounded).
    """
    if not (isinstance(height, (int, np.integer)) and isinstance(width, (int, np.integer))) \
            or height <= 0 or width <= 0:
        raise ValueError(f"height and width must be positive integers, got {height!r} x {width!r}")
    if num_points < 2:
        raise ValueError(f"num_points must be >= 2, got {num_points}")
    dtype = np.dtype(dtype)
    if dtype not in (np.dtype(np.float32), np.dtype(np.uint8)):
        raise ValueError(f"dtype must be float32 or uint8, got {dtype}")
    if thickness is None:
        thickness = max(1, int(2 * drawing_scale(width, height)))
    if not isinstance(thickness, (int, np.integer)) or thickness < 1:
        raise ValueError(f"thickness must be a positive integer, got {thickness!r}")
    # One pass draws which stretch (or change disc) owns each pixel; the channel values then come from tables.
    # Index 0 is the background, index k > 0 entry k of the tables.
    changes = path.gripper_change_indices()
    samples = resample(path, max(num_points, len(changes) + 2)) if len(path) > 1 else path
    pixels = np.rint(samples.to_pixels(width, height) - 0.5).astype(np.int32)  # nearest pixel centre
    arc = samples.arc_length()
    progress = arc / arc[-1] if arc[-1] > 0 else np.zeros(len(samples))
    owner = np.zeros((height, width), np.int32)
    table_progress, table_closed = [0.0], [False]
    segments = [(0, 0)] if len(samples) == 1 else [(i, i + 1) for i in range(len(samples) - 1)]
    for start, end in segments:
        table_progress.append(float(progress[start]))
        table_closed.append(samples.gripper[start] == GripperState.CLOSED)
        cv2.line(owner, tuple(pixels[start].tolist()), tuple(pixels[end].tolist()), len(table_progress) - 1,
                 thickness, cv2.LINE_8)
    radius = max(thickness, int(3 * drawing_scale(width, height)))
    original_arc = path.arc_length()
    change_pixels = np.rint(path.to_pixels(width, height) - 0.5).astype(np.int32)
    for index in changes.tolist():
        table_progress.append(float(original_arc[index] / original_arc[-1]) if original_arc[-1] > 0 else 0.0)
        table_closed.append(path.gripper[index] == GripperState.CLOSED)
        cv2.circle(owner, tuple(change_pixels[index].tolist()), radius, len(table_progress) - 1, -1)
    rows, cols = np.nonzero(owner)
    entries = owner[rows, cols]
    closed = np.asarray(table_closed)[entries]
    out = np.zeros((height, width, len(PATH_CHANNELS)), np.float32)
    out[rows, cols, CHANNEL_PROGRESS] = np.asarray(table_progress, np.float32)[entries]
    out[rows, cols, CHANNEL_GRIPPER_OPEN] = ~closed
    out[rows, cols, CHANNEL_GRIPPER_CLOSED] = closed
    if dtype == np.uint8:
        return np.rint(out * 255.0).astype(np.uint8)
    return out
