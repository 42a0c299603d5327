"""HAMSTER-style 2D end-effector paths: the data type, the VLM answer parser and formatter, the prompt,
and the path operations the runtime needs (RDP simplification, arc-length resampling, pixel conversion).

Conventions
- Points are normalized image coordinates in [0, 1]: x along the width (to the right), y along the height
  (down), with (0, 0) the top-left corner of the image and (1, 1) the bottom-right corner. Pixel coordinates
  use the same corner convention as `hamster_core.camera` (pixel = normalized * (width, height)).
- `gripper[i]` is the gripper state once the end effector reaches point i; while it moves from point i to
  point i + 1 the gripper keeps `gripper[i]`. Before the path starts the gripper is taken to be OPEN.
- In a HAMSTER answer an `<action>` written after point i therefore sets the state at point i, and the state
  carries over to the following points until the next action.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from hamster_core.geometry import distances_to_segment


class GripperState(IntEnum):
    """Same values as the GRIPPER_* constants of hamster_msgs/Path2D."""

    OPEN = 0
    CLOSED = 1


class PathError(ValueError):
    """A path that violates the Path2D invariants."""


class PathParseError(PathError):
    """A VLM answer that cannot be read as a path; the message says why and where."""


@dataclass(frozen=True, eq=False)
class Path2D:
    """A 2D end-effector path with the gripper state at every point (see the module docstring).

    `points` (N, 2) float64 in [0, 1] and `gripper` (N,) uint8 of GripperState values, N >= 1. Both are
    stored as read-only arrays so the frozen dataclass is immutable in practice. `gripper=None` means the
    gripper stays OPEN along the whole path.
    """

    points: np.ndarray
    gripper: np.ndarray | None = None

    def __post_init__(self):
        try:
            points = np.array(self.points, dtype=np.float64)
        except (TypeError, ValueError) as error:
            raise PathError(f"points must be numeric, got {self.points!r}") from error
        if points.ndim != 2 or points.shape[1] != 2:
            raise PathError(f"points must have shape (N, 2), got {points.shape}")
        if len(points) == 0:
            raise PathError("a path needs at least one point")
        if not np.all(np.isfinite(points)):
            bad = points[~np.isfinite(points).all(axis=1)][0]
            raise PathError(f"points must be finite, got {bad.tolist()}")
        outside = (points < 0.0) | (points > 1.0)
        if np.any(outside):
            index = int(np.flatnonzero(outside.any(axis=1))[0])
            raise PathError(f"point {index} {tuple(points[index].tolist())} is outside the normalized range [0, 1]")

        if self.gripper is None:
            gripper = np.full(len(points), GripperState.OPEN, dtype=np.uint8)
        else:
            raw = np.asarray(self.gripper)
            if raw.shape != (len(points),):
                raise PathError(f"gripper must have shape ({len(points)},) to match the points, got {raw.shape}")
            valid = np.isin(raw, (GripperState.OPEN, GripperState.CLOSED))
            if raw.dtype.kind not in "biuf" or not np.all(valid):
                bad = raw[~valid][0].item() if raw.dtype.kind in "biuf" else raw.dtype
                raise PathError(f"gripper values must be 0 (OPEN) or 1 (CLOSED), got {bad!r}")
            gripper = raw.astype(np.uint8)

        points.setflags(write=False)
        gripper.setflags(write=False)
        object.__setattr__(self, "points", points)
        object.__setattr__(self, "gripper", gripper)

    def __len__(self) -> int:
        return len(self.points)

    def __eq__(self, other) -> bool:
        if not isinstance(other, Path2D):
            return NotImplemented
        return np.array_equal(self.points, other.points) and np.array_equal(self.gripper, other.gripper)

    __hash__ = None  # arrays are not hashable; equality is by value

    def gripper_change_indices(self) -> np.ndarray:
        """Indices i where gripper[i] differs from the state before it (OPEN before the path starts)."""
        previous = np.concatenate(([GripperState.OPEN], self.gripper[:-1]))
        return np.flatnonzero(self.gripper != previous)

    def arc_length(self) -> np.ndarray:
        """Cumulative length along the path at every point, in normalized units; starts at 0."""
        steps = np.linalg.norm(np.diff(self.points, axis=0), axis=1)
        return np.concatenate(([0.0], np.cumsum(steps)))

    def to_pixels(self, width: int, height: int) -> np.ndarray:
        """Points as (N, 2) pixel coordinates (u along the width, v along the height)."""
        return self.points * _image_scale(width, height)


def path_from_pixels(pixels, gripper, width: int, height: int) -> Path2D:
    """A path from (N, 2) pixel coordinates on a width x height image; `gripper` as in Path2D."""
    pixels = np.asarray(pixels, dtype=np.float64)
    return Path2D(pixels / _image_scale(width, height), gripper)


def _image_scale(width: int, height: int) -> np.ndarray:
    if not (isinstance(width, (int, np.integer)) and isinstance(height, (int, np.integer))) \
            or width <= 0 or height <= 0:
        raise ValueError(f"image size must be two positive integers, got width={width!r} height={height!r}")
    return np.array([width, height], dtype=np.float64)


def _forced_indices(path: Path2D) -> np.ndarray:
    """Points every derived path keeps: both ends and every gripper change."""
    return np.union1d([0, len(path) - 1], path.gripper_change_indices())


# --------------------------------------------------------------------------------------------------------
# Prompt

# The prompt HAMSTER's released client sends its fine-tuned VILA model (gradio_server_example.py in
# github.com/liyi14/HAMSTER_beta), byte for byte: a leading newline, one paragraph per line. A fine-tuned model is
# asked in the words it was served with.
HAMSTER_PROMPT_TEMPLATE = (
    "\nIn the image, please execute the command described in <quest>{instruction}</quest>.\n"
    "Provide a sequence of points denoting the trajectory of a robot gripper to achieve the goal.\n"
    "Format your answer as a list of tuples enclosed by <ans> and </ans> tags. For example:\n"
    "<ans>[(0.25, 0.32), (0.32, 0.17), (0.13, 0.24), <action>Open Gripper</action>, (0.74, 0.21), "
    "<action>Close Gripper</action>, ...]</ans>\n"
    "The tuple denotes point x and y location of the end effector in the image. "
    "The action tags indicate gripper actions.\n"
    "Coordinates should be floats between 0 and 1, representing relative positions.\n"
    "Remember to provide points between <ans> and </ans> tags and think step by step."
)

# Figure 10 of the HAMSTER paper: the same request in the paper's wording (no leading newline, no last line).
HAMSTER_PAPER_PROMPT_TEMPLATE = (
    "In the image, please execute the command described in <quest>{instruction}</quest>.\n"
    "Provide a sequence of points denoting the trajectory of a robot gripper to achieve the goal.\n"
    "Format your answer as a list of tuples enclosed by <ans> and </ans> tags. For example:\n"
    "<ans>[(0.25, 0.32), (0.32, 0.17), (0.13, 0.24), <action>Open Gripper</action>, (0.74, 0.21), "
    "<action>Close Gripper</action>, ...]</ans>\n"
    "The tuple denotes the x and y location of the end effector of the gripper in the image. "
    "The action tags indicate the gripper action.\n"
    "The coordinates should be floats ranging between 0 and 1, indicating the relative locations of the "
    "points in the image."
)

# Wording of the RT-Trajectory prompt (HAMSTER paper, Figure 11) minus its "Do not include this point":
# HAMSTER's training paths start at the gripper, so the model may well repeat it.
GRIPPER_POSITION_LINE = "The current position of the robot gripper is: ({x:.2f}, {y:.2f})."


INSTRUCTION_PLACEHOLDER = "{instruction}"


def check_prompt_template(template: str) -> str:
    """`template` if it is usable as a prompt template, else ValueError. Only the literal `{instruction}` is
    substituted (no str.format): other braces, e.g. a JSON example in the prompt, stay as written."""
    if not isinstance(template, str) or INSTRUCTION_PLACEHOLDER not in template:
        raise ValueError(f"prompt template must contain {INSTRUCTION_PLACEHOLDER}, got {template!r}")
    return template


def build_prompt(instruction: str, gripper_xy: tuple[float, float] | None = None,
                 template: str = HAMSTER_PROMPT_TEMPLATE) -> str:
    """The prompt for `instruction` (HAMSTER's unless `template` is given), optionally telling the model where
    the gripper is now (normalized image coordinates)."""
    if not isinstance(instruction, str) or not instruction.strip():
        raise ValueError(f"instruction must be a non-empty string, got {instruction!r}")
    # One line, so the instruction cannot add paragraphs of its own to the prompt.
    prompt = check_prompt_template(template).replace(INSTRUCTION_PLACEHOLDER, " ".join(instruction.split()))
    if gripper_xy is not None:
        x, y = (float(value) for value in gripper_xy)
        if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
            raise ValueError(f"gripper_xy must be normalized coordinates in [0, 1], got {gripper_xy!r}")
        prompt += "\n" + GRIPPER_POSITION_LINE.format(x=x, y=y)
    return prompt


# --------------------------------------------------------------------------------------------------------
# Parsing and formatting HAMSTER answers

MAX_ANSWER_CHARS = 20_000

_ANS_OPEN = re.compile(r"<\s*ans\s*>", re.IGNORECASE)
_ANS_CLOSE = re.compile(r"<\s*/\s*ans\s*>", re.IGNORECASE)
# Inner lengths are bounded so a malicious answer cannot make the scanner quadratic.
_TOKEN = re.compile(
    r"(?P<space>[\s,]+)"
    r"|(?P<tuple>\((?P<tuple_body>[^()<>\[\]]{0,200})\))"
    r"|(?P<action><\s*action\s*>(?P<action_body>[^<>]{0,64})<\s*/\s*action\s*>)"
    r"|(?P<end>\])",
    re.IGNORECASE,
)
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")  # ASCII digits only
_INTEGER = re.compile(r"[+-]?[0-9]+")
_ACTION_NAME = re.compile(r"(open|close)[\s_-]*gripper", re.IGNORECASE)
_ACTION_STATE = {"open": GripperState.OPEN, "close": GripperState.CLOSED}


def _excerpt(text: str, position: int, length: int = 30) -> str:
    return repr(text[position:position + length])


def check_answer_text(text) -> None:
    """A model's answer is a string of at most MAX_ANSWER_CHARS (PathParseError otherwise), before any parser scans
    it."""
    if not isinstance(text, str):
        raise PathParseError(f"answer must be a string, got {type(text).__name__}")
    if len(text) > MAX_ANSWER_CHARS:
        raise PathParseError(f"answer is {len(text)} characters long, the limit is {MAX_ANSWER_CHARS}")


def parse_hamster_answer(text: str, *, max_points: int = 64,
                         image_size: tuple[int, int] | None = None) -> Path2D:
    """Read a HAMSTER answer such as
    ``<ans>[(0.25, 0.32), (0.32, 0.17), <action>Close Gripper</action>, (0.74, 0.21), ...]</ans>``.

    Accepted variations: text before `<ans>` and after `</ans>`; a missing `</ans>` or `]` (text after `]`
    is ignored when `</ans>` is missing); whitespace anywhere; case-insensitive tags and action names with
    any spacing, `_` or `-` between the two words ("close gripper", "OpenGripper"); commas and whitespace
    as separators in any number; the same action repeated with no point between (collapsed). An action before
    the first point sets the state at the first point, which is what an action right after it would do.

    Pixel coordinates (any coordinate > 1) are accepted only with `image_size=(width, height)` and only when
    every coordinate is written as an integer, and are then divided by it; otherwise, and whenever a
    normalized coordinate falls outside [0, 1], the answer is rejected (never clipped). So (0.2, 1.7) is an
    out-of-range normalized point, never a pixel near the corner. If every coordinate is <= 1 the answer is
    read as normalized even with `image_size`.

    Raises PathParseError with the reason for anything else: no `<ans>` block, an empty path, a tuple that
    is not two plain decimal numbers, non-finite numbers, an unknown action, two different actions with no
    point between them, any other text inside the list, more than `max_points` points, or an answer longer
    than MAX_ANSWER_CHARS. Never evaluates the text.
    """
    if max_points < 1:
        raise ValueError(f"max_points must be >= 1, got {max_points}")
    scale = None if image_size is None else _image_scale(*image_size)
    check_answer_text(text)

    opening = _ANS_OPEN.search(text)
    if opening is None:
        raise PathParseError("no <ans> block in the answer")
    closing = _ANS_CLOSE.search(text, opening.end())
    body_end = len(text) if closing is None else closing.start()
    position = opening.end()
    while position < body_end and text[position].isspace():
        position += 1
    if position >= body_end or text[position] != "[":
        raise PathParseError(f"expected '[' after <ans>, found {_excerpt(text, position)}")
    position += 1

    steps = PathSteps(max_points)
    all_integers = True  # every coordinate written without a fraction or exponent: possibly pixels
    closed_list = False
    while position < body_end:
        token = _TOKEN.match(text, position, body_end)
        if token is None:
            what = {"(": "malformed or unterminated point", "<": "malformed tag"}.get(text[position], "unexpected text")
            raise PathParseError(f"{what} in the path at position {position}: {_excerpt(text, position)}")
        kind = token.lastgroup  # the outermost group of the alternative that matched
        if kind == "end":
            closed_list = True
            position = token.end()
            break
        if kind == "tuple":
            steps.check_room()
            point, integers = _parse_point(token.group("tuple_body"), position)
            steps.point(point)
            all_integers = all_integers and integers
        elif kind == "action":
            steps.action(_parse_action(token.group("action_body"), position), f"at position {position}")
        position = token.end()

    if closed_list and closing is not None and text[position:body_end].strip():
        raise PathParseError(f"unexpected text between ']' and </ans>: {_excerpt(text, position)}")
    if not steps.coordinates:
        raise PathParseError("the path has no points")

    coordinates = steps.coordinates
    points = np.array(coordinates, dtype=np.float64)
    in_pixels = bool(np.any(points > 1.0))
    if in_pixels:
        if scale is None:
            raise PathParseError(
                f"coordinate {points.max():g} is outside [0, 1]; pixel coordinates need image_size=(width, height)")
        if not all_integers:  # e.g. (0.2, 1.7): a normalized point out of range, not a pixel
            raise PathParseError(f"coordinate {points.max():g} is outside [0, 1]; pixel coordinates must all be "
                                 f"written as integers")
        points = points / scale
    outside = ((points < 0.0) | (points > 1.0)).any(axis=1)
    if np.any(outside):
        index = int(np.flatnonzero(outside)[0])
        where = f" of the {image_size[0]}x{image_size[1]} image" if in_pixels else " [0, 1]"
        raise PathParseError(f"point {index} {coordinates[index]} is outside{where}")
    return steps.path(points)


class PathSteps:
    """Points and gripper actions in the order an answer gives them -> the gripper state at every point (the
    module's convention: OPEN before the path, an action after point i sets the state at point i and after it,
    an action before the first point sets it at the first point). Shared by every answer format."""

    def __init__(self, max_points: int):
        self.max_points = max_points
        self.coordinates: list[tuple[float, float]] = []
        self.states: list[int] = []
        self._state = int(GripperState.OPEN)
        self._pending: int | None = None  # an action seen since the last point

    def check_room(self) -> None:
        if len(self.coordinates) == self.max_points:
            raise PathParseError(f"the path has more than max_points={self.max_points} points")

    def point(self, xy: tuple[float, float]) -> None:
        self.check_room()
        self.coordinates.append(xy)
        self.states.append(self._state)
        self._pending = None

    def action(self, state: int, where: str) -> None:
        if self._pending is not None and state != self._pending:
            raise PathParseError(f"conflicting gripper actions with no point between them {where}")
        self._pending = self._state = int(state)
        if self.states:
            self.states[-1] = self._state  # an action after point i applies at point i

    def path(self, points: np.ndarray) -> Path2D:
        """The path of `points` (the coordinates, normalized) with the states; PathParseError if invalid."""
        try:
            return Path2D(points, np.array(self.states, dtype=np.uint8))
        except PathError as error:  # keep the promise that bad text only ever raises PathParseError
            raise PathParseError(str(error)) from error


def _parse_point(body: str, position: int) -> tuple[tuple[float, float], bool]:
    """The point's two coordinates, and whether both are written as integers."""
    parts = [part.strip() for part in body.split(",")]
    if len(parts) != 2:
        raise PathParseError(f"a point must have 2 coordinates, got {len(parts)} in ({body}) at position {position}")
    values = []
    for part in parts:
        if not _NUMBER.fullmatch(part):
            raise PathParseError(f"coordinate {part!r} is not a plain decimal number at position {position}")
        value = float(part)
        if not math.isfinite(value):
            raise PathParseError(f"coordinate {part!r} is not finite at position {position}")
        values.append(value)
    return (values[0], values[1]), all(_INTEGER.fullmatch(part) for part in parts)


def _parse_action(body: str, position: int) -> int:
    name = _ACTION_NAME.fullmatch(body.strip())
    if name is None:
        raise PathParseError(f"unknown gripper action {body.strip()!r} at position {position}")
    return int(_ACTION_STATE[name.group(1).lower()])


_ACTION_TEXT = {GripperState.OPEN: "<action>Open Gripper</action>",
                GripperState.CLOSED: "<action>Close Gripper</action>"}


def format_hamster_answer(path: Path2D, decimals: int = 2) -> str:
    """The canonical HAMSTER answer for `path`: each gripper change is written right after its point."""
    if not isinstance(decimals, int) or decimals < 0:
        raise ValueError(f"decimals must be a non-negative integer, got {decimals!r}")
    changes = set(path.gripper_change_indices().tolist())
    items = []
    for index, (x, y) in enumerate(path.points):
        items.append(f"({x:.{decimals}f}, {y:.{decimals}f})")
        if index in changes:
            items.append(_ACTION_TEXT[GripperState(path.gripper[index])])
    return "<ans>[" + ", ".join(items) + "]</ans>"


# --------------------------------------------------------------------------------------------------------
# Simplification and resampling

def simplify_rdp(path: Path2D, epsilon: float = 0.05) -> Path2D:
    """Ramer-Douglas-Peucker simplification in normalized coordinates (HAMSTER uses epsilon = 0.05).

    Both ends and every gripper-change point are always kept, and RDP runs separately on each stretch
    between them. That alone keeps the states right: the points between two kept changes all share one
    state, so whichever of them survive carry the state they had. Distances are to the segment, not to its
    infinite line, so a path that doubles back on itself (reach down, lift up) keeps its turning point.
    """
    if not math.isfinite(epsilon) or epsilon < 0:
        raise ValueError(f"epsilon must be a finite non-negative number, got {epsilon!r}")
    points = path.points
    keep = np.zeros(len(path), dtype=bool)
    forced = _forced_indices(path)
    keep[forced] = True
    stack = list(zip(forced[:-1].tolist(), forced[1:].tolist()))  # iterative: no recursion limit
    while stack:
        start, end = stack.pop()
        if end - start < 2:
            continue
        distances = distances_to_segment(points[start + 1:end], points[start], points[end])
        farthest = int(np.argmax(distances))
        if distances[farthest] > epsilon:
            split = start + 1 + farthest
            keep[split] = True
            stack.append((start, split))
            stack.append((split, end))
    return Path2D(points[keep], path.gripper[keep])


def resample(path: Path2D, n: int) -> Path2D:
    """`n` points spread evenly by arc length, with the path's ends and gripper changes kept exactly.

    How the changes are kept: each forced point (first, last, every gripper change) is assigned the sample
    index nearest to its arc-length fraction (pushed apart by one where two would collide) and the sample
    there is the original point itself with its state. Between two forced points the free samples are spaced
    evenly by arc length, so spacing is exactly even when the path has no gripper change and piecewise even
    otherwise. A sample on the stretch from forced point a up to (not including) forced point b gets
    gripper[a], the state the gripper holds along that stretch. A path of zero length (the arm standing still)
    places its forced points by point index instead of arc length. Needs n >= the number of forced points.
    """
    forced = _forced_indices(path)
    if not isinstance(n, (int, np.integer)) or n < 2 or n < len(forced):
        raise ValueError(f"n must be an integer >= 2 and >= {len(forced)} (ends plus gripper changes), got {n!r}")
    if len(path) == 1:
        return Path2D(np.repeat(path.points, n, axis=0), np.repeat(path.gripper, n))

    arc = path.arc_length()
    total = arc[-1]
    fraction = arc[forced] / total if total > 0 else forced / (len(path) - 1)
    # Sample index per forced point: nearest to its fraction, then strictly increasing (t_k - k
    # non-decreasing) and leaving room for the forced points after it (t_k - k <= n - K).
    count = len(forced)
    offsets = np.arange(count)
    slots = np.rint(fraction * (n - 1)).astype(int) - offsets
    slots = np.minimum(np.maximum.accumulate(slots), n - count) + offsets
    slots[0], slots[-1] = 0, n - 1

    sample = np.arange(n)
    stretch = np.clip(np.searchsorted(slots, sample, side="right") - 1, 0, count - 2)
    start_slot, end_slot = slots[stretch], slots[stretch + 1]
    start_arc, end_arc = arc[forced[stretch]], arc[forced[stretch + 1]]
    sample_arc = start_arc + (sample - start_slot) / (end_slot - start_slot) * (end_arc - start_arc)

    segment = np.clip(np.searchsorted(arc, sample_arc, side="right") - 1, 0, len(path) - 2)
    segment_length = arc[segment + 1] - arc[segment]
    with np.errstate(invalid="ignore", divide="ignore"):
        along = np.where(segment_length > 0, (sample_arc - arc[segment]) / segment_length, 0.0)
    along = np.clip(along, 0.0, 1.0)
    points = path.points[segment] + along[:, None] * (path.points[segment + 1] - path.points[segment])
    points[slots] = path.points[forced]
    gripper = path.gripper[forced[stretch]]
    gripper[slots] = path.gripper[forced]
    # A convex combination of points in [0, 1] can land one ulp outside it.
    return Path2D(np.clip(points, 0.0, 1.0), gripper)
