"""How a model is asked for a path and how its answer is read: one AnswerFormat per answer format.

- `hamster`: HAMSTER's `<ans>[(x, y), <action>Close Gripper</action>, ...]</ans>` (hamster_core.path2d), for its
  fine-tuned model.
- `qwen_points`: Qwen2.5-VL's grounding output, a JSON list `[{"point_2d": [x, y], "label": "grasp"}, ...]` with x, y
  in pixels of the image the model was given, i.e. after its processor's smart_resize (both sides rounded to
  multiples of 28 within min_pixels..max_pixels), for zero-shot use of an off-the-shelf Qwen2.5-VL.
- `molmo_points`: Molmo's pointing output, `<point x="61.5" y="40.2" alt="grasp">grasp</point>` and
  `<points x1="" y1="" x2="" y2="" alt="">...</points>`, x and y in percent of the image.

The point formats have no action tags: a point's label says what the gripper does there (`grasp`/`close`/`pick`
closes it after the point, `release`/`open`/`place`/`drop` opens it, anything else is a waypoint). For Molmo's
`<points>` the label applies to its last point. Each format's prompt asks for exactly that. Every parser has the
strictness of the `<ans>` parser: bounded length, finite plain numbers, nothing outside the image (never
clipped), at most max_points points, and only PathParseError for bad text; none evaluates the text.

The named prompt templates are what a `prompt_template` parameter may name instead of spelling a template out.
"""
from __future__ import annotations

import itertools
import json
import math
import re
from dataclasses import dataclass
from typing import Callable

import numpy as np

from hamster_core.path2d import (HAMSTER_PAPER_PROMPT_TEMPLATE, HAMSTER_PROMPT_TEMPLATE, INSTRUCTION_PLACEHOLDER,
                                 GripperState, Path2D, PathParseError, PathSteps, check_answer_text,
                                 check_prompt_template, parse_hamster_answer)

QWEN_POINTS_PROMPT_TEMPLATE = (
    "You control a robot gripper seen in this image. Task: {instruction}.\n"
    "Plan the path of the gripper as the points it moves through, in order: first the point where it grasps "
    "the object, then the points it carries it through, then the point where it releases it.\n"
    'Answer with a JSON list only, one entry per point: {"point_2d": [x, y], "label": "grasp"}, with the label '
    '"grasp" where the gripper closes, "release" where it opens and "move" everywhere else.'
)
MOLMO_POINTS_PROMPT_TEMPLATE = (
    "Point to the path a robot gripper should follow to {instruction}: in order, first the point where it grasps "
    "the object (alt \"grasp\"), then the points it carries it through (alt \"move\"), then the point where it "
    "releases it (alt \"release\")."
)

# name -> template. `hamster` is the released client's text, `hamster_paper` the paper's Figure 10.
PROMPT_TEMPLATES: dict[str, str] = {
    "hamster": HAMSTER_PROMPT_TEMPLATE,
    "hamster_paper": HAMSTER_PAPER_PROMPT_TEMPLATE,
    "qwen_points": QWEN_POINTS_PROMPT_TEMPLATE,
    "molmo_points": MOLMO_POINTS_PROMPT_TEMPLATE,
}

_CLOSE_LABEL = re.compile(r"\s*(grasp|close|pick)", re.IGNORECASE)
_OPEN_LABEL = re.compile(r"\s*(release|open|place|drop)", re.IGNORECASE)


def label_action(label: str) -> int | None:
    """The gripper state a point's label asks for, or None for a waypoint."""
    if _CLOSE_LABEL.match(label):
        return int(GripperState.CLOSED)
    if _OPEN_LABEL.match(label):
        return int(GripperState.OPEN)
    return None


def _labelled_path(points: list[tuple[float, float, str]], size: tuple[float, float], max_points: int,
                   unit: str) -> Path2D:
    """(x, y, label) in units of `size` -> the path; every coordinate must lie in [0, size]."""
    if not points:
        raise PathParseError("the answer has no points")
    steps = PathSteps(max_points)
    for index, (x, y, label) in enumerate(points):
        if not (0.0 <= x <= size[0] and 0.0 <= y <= size[1]):
            raise PathParseError(f"point {index} ({x:g}, {y:g}) is outside the {unit}")
        steps.point((x / size[0], y / size[1]))
        action = label_action(label)
        if action is not None:
            steps.action(action, f"at point {index}")
    return steps.path(np.clip(np.array(steps.coordinates, dtype=np.float64), 0.0, 1.0))


def _number(value, where: str) -> float:
    # bool is an int in Python, and JSON's true must not read as 1.
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise PathParseError(f"{where} must be a finite number, got {value!r}")
    return float(value)


# --------------------------------------------------------------------------------------------------------
# Qwen2.5-VL JSON points

QWEN_FACTOR = 28                 # patch size 14 x spatial merge 2
QWEN_MIN_PIXELS = 56 * 56        # Qwen2.5-VL's released preprocessor_config.json
QWEN_MAX_PIXELS = 12_845_056
_JSON_START = re.compile(r"\[")


def qwen_smart_resize(height: int, width: int, factor: int = QWEN_FACTOR, min_pixels: int = QWEN_MIN_PIXELS,
                      max_pixels: int = QWEN_MAX_PIXELS) -> tuple[int, int]:
    """(height, width) Qwen2-VL/2.5-VL's processor resizes an image to (transformers' smart_resize): both sides
    multiples of `factor`, the area within [min_pixels, max_pixels], the aspect ratio kept as well as that allows."""
    if height < 1 or width < 1 or max(height, width) / min(height, width) > 200:
        raise ValueError(f"image of {width}x{height} cannot be resized for Qwen (aspect ratio over 200)")
    resized_height = round(height / factor) * factor
    resized_width = round(width / factor) * factor
    if resized_height * resized_width > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        resized_height = max(factor, math.floor(height / beta / factor) * factor)
        resized_width = max(factor, math.floor(width / beta / factor) * factor)
    elif resized_height * resized_width < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        resized_height = math.ceil(height * beta / factor) * factor
        resized_width = math.ceil(width * beta / factor) * factor
    return resized_height, resized_width


MAX_JSON_STARTS = 16  # '[' tried as the start of the list: each try may read to the end of the answer


def _json_list(text: str):
    """The first JSON list in the text (code fences and prose around it are ignored) starting at one of the
    first MAX_JSON_STARTS '[' characters, so hostile text cannot make the search quadratic."""
    decoder = json.JSONDecoder()
    for match in itertools.islice(_JSON_START.finditer(text), MAX_JSON_STARTS):
        try:
            value, _ = decoder.raw_decode(text, match.start())
        except json.JSONDecodeError:
            continue
        except RecursionError:  # "[[[[..." nested deeper than the decoder goes
            raise PathParseError("the JSON in the answer is nested too deeply") from None
        if isinstance(value, list):
            return value
    raise PathParseError("no JSON list in the answer")


def parse_qwen_points(text: str, *, max_points: int = 64, image_size: tuple[int, int] | None = None) -> Path2D:
    """A Qwen2.5-VL point list, ``[{"point_2d": [x, y], "label": "grasp"}, ...]``, on an image of
    `image_size=(width, height)` (the original image: the coordinates are read in its smart_resize'd size)."""
    if max_points < 1:
        raise ValueError(f"max_points must be >= 1, got {max_points}")
    if image_size is None:
        raise ValueError("Qwen points are in pixels: image_size=(width, height) is needed")
    check_answer_text(text)
    width, height = image_size
    resized_height, resized_width = qwen_smart_resize(height, width)
    entries = _json_list(text)
    points = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict) or "point_2d" not in entry:
            raise PathParseError(f"entry {index} is not an object with point_2d: {str(entry)[:60]!r}")
        unknown = sorted(set(entry) - {"point_2d", "label"})
        if unknown:
            raise PathParseError(f"entry {index} has unknown keys {unknown}")
        point, label = entry["point_2d"], entry.get("label", "")
        if not isinstance(point, list) or len(point) != 2:
            raise PathParseError(f"entry {index}: point_2d must be [x, y], got {str(point)[:60]!r}")
        if not isinstance(label, str):
            raise PathParseError(f"entry {index}: label must be a string, got {str(label)[:60]!r}")
        if len(points) == max_points:
            raise PathParseError(f"the path has more than max_points={max_points} points")
        points.append((_number(point[0], f"entry {index} x"), _number(point[1], f"entry {index} y"), label))
    return _labelled_path(points, (resized_width, resized_height), max_points,
                          f"{resized_width}x{resized_height} image the model saw")


# --------------------------------------------------------------------------------------------------------
# Molmo points

_MOLMO_TAG = re.compile(r"<\s*(point|points)\b([^<>]{0,2000})>(.{0,500}?)<\s*/\s*\1\s*>", re.IGNORECASE | re.DOTALL)
_MOLMO_ATTRIBUTE = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]{0,20})\s*=\s*"([^"]{0,200})"')
_PLAIN_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")  # ASCII digits only, no exponent


def _molmo_attributes(body: str, where: str) -> dict[str, str]:
    attributes, position = {}, 0
    while position < len(body.rstrip()):
        match = _MOLMO_ATTRIBUTE.match(body, position)
        if match is None:
            raise PathParseError(f"malformed attributes in {where}: {body[position:position + 30]!r}")
        if match.group(1) in attributes:
            raise PathParseError(f"attribute {match.group(1)!r} repeated in {where}")
        attributes[match.group(1)] = match.group(2)
        position = match.end()
    return attributes


def _percent(attributes: dict[str, str], name: str, where: str) -> float:
    value = attributes.get(name)
    if value is None or not _PLAIN_NUMBER.fullmatch(value.strip()):
        raise PathParseError(f"{where}: {name} must be a plain decimal number, got {value!r}")
    return float(value)


def parse_molmo_points(text: str, *, max_points: int = 64, image_size: tuple[int, int] | None = None) -> Path2D:
    """Molmo's `<point x="" y="" alt="">` and `<points x1="" y1="" ... alt="">` tags, in order, x and y in percent of
    the image (`image_size` is not needed and ignored)."""
    if max_points < 1:
        raise ValueError(f"max_points must be >= 1, got {max_points}")
    check_answer_text(text)
    points = []
    for number, tag in enumerate(_MOLMO_TAG.finditer(text)):
        where = f"tag {number}"
        attributes = _molmo_attributes(tag.group(2), where)
        label = attributes.get("alt", tag.group(3)).strip()
        if tag.group(1).lower() == "point":
            unknown = sorted(set(attributes) - {"x", "y", "alt"})
            coordinates = [(_percent(attributes, "x", where), _percent(attributes, "y", where))]
        else:
            count = sum(1 for name in attributes if re.fullmatch(r"x[0-9]+", name))
            names = {f"{axis}{i}" for i in range(1, count + 1) for axis in "xy"}
            unknown = sorted(set(attributes) - names - {"alt"})
            if count == 0:
                raise PathParseError(f"{where}: <points> without x1, y1")
            coordinates = [(_percent(attributes, f"x{i}", where), _percent(attributes, f"y{i}", where))
                           for i in range(1, count + 1)]
        if unknown:
            raise PathParseError(f"{where} has unknown attributes {unknown}")
        for index, (x, y) in enumerate(coordinates):
            if len(points) == max_points:
                raise PathParseError(f"the path has more than max_points={max_points} points")
            points.append((x, y, label if index == len(coordinates) - 1 else ""))
    if not points:
        raise PathParseError("no <point> or <points> tag in the answer")
    return _labelled_path(points, (100.0, 100.0), max_points, "image (percent coordinates in [0, 100])")


# --------------------------------------------------------------------------------------------------------
# The formats by name

@dataclass(frozen=True)
class AnswerFormat:
    name: str
    prompt_template: str
    parse: Callable[..., Path2D]  # (text, *, max_points, image_size=(width, height)) -> Path2D


ANSWER_FORMATS: dict[str, AnswerFormat] = {
    "hamster": AnswerFormat("hamster", HAMSTER_PROMPT_TEMPLATE, parse_hamster_answer),
    "qwen_points": AnswerFormat("qwen_points", QWEN_POINTS_PROMPT_TEMPLATE, parse_qwen_points),
    "molmo_points": AnswerFormat("molmo_points", MOLMO_POINTS_PROMPT_TEMPLATE, parse_molmo_points),
}


def answer_format(name: str) -> AnswerFormat:
    if name not in ANSWER_FORMATS:
        raise ValueError(f"answer_format must be one of {', '.join(ANSWER_FORMATS)}, got {name!r}")
    return ANSWER_FORMATS[name]


def resolve_prompt_template(value: str, default: str = HAMSTER_PROMPT_TEMPLATE) -> str:
    """The template a `prompt_template` parameter means: empty -> `default`, a name of PROMPT_TEMPLATES -> that
    template, anything else must itself be a template with the {instruction} placeholder (ValueError if not)."""
    if not isinstance(value, str):
        raise ValueError(f"prompt_template must be a string, got {value!r}")
    if not value:
        return default
    if value in PROMPT_TEMPLATES:
        return PROMPT_TEMPLATES[value]
    if INSTRUCTION_PLACEHOLDER not in value:
        raise ValueError(f"prompt_template must be one of {', '.join(PROMPT_TEMPLATES)} or contain "
                         f"{INSTRUCTION_PLACEHOLDER}, got {value!r}")
    return check_prompt_template(value)
