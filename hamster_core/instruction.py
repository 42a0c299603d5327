"""Parsing of pick-and-place instructions into the phrases perception has to ground."""
from __future__ import annotations

import re

_PICK_PLACE = re.compile(
    r"""^\s*pick\s+(?:up\s+)?(?:the\s+)?(?P<target>.+?)
        \s+and\s+(?:put|place|drop|move)\s+it\s+(?:into|onto|inside|in|on)\s+(?:the\s+)?(?P<placement>.+?)
        \s*[.!]?\s*$""",
    re.IGNORECASE | re.VERBOSE | re.DOTALL,
)
_ARTICLES = ("the", "a", "an")

# Labels of the two things a pick-and-place instruction grounds (GroundingMasks.labels, policy configs).
TARGET_LABEL = "target_object"
PLACEMENT_LABEL = "placement_area"


def parse_pick_place_instruction(text: str) -> tuple[str, str]:
    """"pick up the red cube and put it in the blue bowl" -> ("red cube", "blue bowl").

    Also accepts "pick the X and place it on the Y", "into"/"onto"/"inside", any letter case and a trailing
    period. The phrases come back lower-case with single spaces, as scene object names are written.
    Raises ValueError (quoting the text) for anything else.
    """
    if not isinstance(text, str):
        raise ValueError(f"instruction must be a string, got {text!r}")
    match = _PICK_PLACE.match(text)
    if match is None:
        raise ValueError(f"not a pick-and-place instruction ('pick up the X and put it in the Y'): {text!r}")
    target, placement = (" ".join(match[group].lower().split()) for group in ("target", "placement"))
    if target in _ARTICLES or placement in _ARTICLES:  # "pick up the and put it in the bowl"
        raise ValueError(f"instruction names no object or no placement: {text!r}")
    return target, placement


def grounding_queries(text: str) -> dict[str, str]:
    """{TARGET_LABEL: target phrase, PLACEMENT_LABEL: placement phrase}; ValueError as parse_pick_place_instruction."""
    target, placement = parse_pick_place_instruction(text)
    return {TARGET_LABEL: target, PLACEMENT_LABEL: placement}
