"""Parsing of pick-and-place instructions into the phrases perception has to ground.

Rule-based, for the phrasings of the usual benchmarks (LIBERO, RLBench, CALVIN, Bridge, RoboGround, HAMSTER's
examples): "pick (up) X (,) and put/place/... it in/on/... Y" and "put/place/move/stack/insert/... X in/on/... Y",
with a leading "please"/"can you", a prepositional relation before the placement ("on top of", "to the left
of", "next to", ...), and a trailing clause after the placement ("..., then close the drawer", "... and close
the tap") cut off. `hamster_vlm_node.grounding` asks a language model first when one is configured and falls back
to this.
"""
from __future__ import annotations

import json
import re

# Longest first: the alternation takes the first that fits.
_RELATIONS = ("on top of", "to the left of", "to the right of", "in front of", "next to", "inside of", "into",
              "onto", "inside", "towards", "toward", "to", "in", "on", "at", "near", "behind", "under", "over",
              "beside", "between")
_RELATION = "(?:" + "|".join(re.escape(relation) for relation in _RELATIONS) + ")"
_PLACE_VERB = r"(?:put|place|drop|move|stack|insert|set|lay|transfer|bring|slide|push|hang|throw|dump)"
_PICK_VERB = r"(?:pick|grab|take|lift|get|grasp)"
_PARTICLE = r"(?:(?:away|down|back|up)\s+)?"
_PICK_THEN_PLACE = re.compile(
    rf"^{_PICK_VERB}(?:\s+up)?\s+(?P<target>.+?)\s*,?\s+(?:and\s+)?(?:then\s+)?{_PLACE_VERB}\s+"
    rf"(?:(?:it|them|that|this)\s+)?{_PARTICLE}{_RELATION}\s+(?P<placement>.+)$")
_PLACE = re.compile(rf"^{_PLACE_VERB}\s+{_PARTICLE}(?P<target>.+?)\s+{_PARTICLE}{_RELATION}\s+(?P<placement>.+)$")
_PREFIX = re.compile(r"^(?:(?:please|kindly|now|robot|first|can you|could you|would you|i want you to)\s*,?\s+)+")
# Where a trailing clause starts after the placement.
_CLAUSE_END = re.compile(r"\s*(?:,|;|\.|!|\?|\band then\b|\bthen\b|\band (?=[a-z]+ (?:the|a|an|it|them|this|that)\b))")
_ARTICLES = re.compile(r"^(?:(?:the|a|an|both|both the|some)\s+)+")
_BARE_ARTICLES = {"the", "a", "an", "it", "them", "both"}

MAX_INSTRUCTION_CHARS = 1000  # longer text is no instruction (and would only cost the regexes time)

# Labels of the two things a pick-and-place instruction grounds (GroundingMasks.labels, policy configs).
TARGET_LABEL = "target_object"
PLACEMENT_LABEL = "placement_area"


def _phrase(text: str) -> str:
    return _ARTICLES.sub("", " ".join(text.split())).strip(" ,.;:!?")


def parse_pick_place_instruction(text: str) -> tuple[str, str]:
    """"pick up the red cube, and put it in the blue bowl" -> ("red cube", "blue bowl"); "put the pot in the sink and
    close the tap" -> ("pot", "sink"). The phrases come back lower-case with single spaces and no leading article,
    as scene object names are written. Raises ValueError (quoting the text) when no target and placement are found.
    """
    if not isinstance(text, str):
        raise ValueError(f"instruction must be a string, got {text!r}")
    if len(text) > MAX_INSTRUCTION_CHARS:
        raise ValueError(f"instruction is {len(text)} characters long, the limit is {MAX_INSTRUCTION_CHARS}: "
                         f"{text[:60]!r}...")
    normalized = _PREFIX.sub("", " ".join(text.lower().split()).strip(" .!"))
    match = _PICK_THEN_PLACE.match(normalized) or _PLACE.match(normalized)
    if match is None:
        raise ValueError(f"not a pick-and-place instruction ('pick up the X and put it in the Y', 'put the X on "
                         f"the Y'): {text!r}")
    placement = _CLAUSE_END.split(match["placement"], maxsplit=1)[0]
    target, placement = _phrase(match["target"]), _phrase(placement)
    if not target or not placement or target in _BARE_ARTICLES or placement in _BARE_ARTICLES:
        raise ValueError(f"instruction names no object or no placement: {text!r}")
    return target, placement


def grounding_queries(text: str) -> dict[str, str]:
    """{TARGET_LABEL: target phrase, PLACEMENT_LABEL: placement phrase}; ValueError as parse_pick_place_instruction."""
    target, placement = parse_pick_place_instruction(text)
    return {TARGET_LABEL: target, PLACEMENT_LABEL: placement}


# --------------------------------------------------------------------------------------------------------
# Asking a language model (the "transferring foundation models" pipeline does this with an LLM)

GROUNDING_PROMPT_TEMPLATE = (
    "A robot gets this instruction: {instruction}\n"
    "Which object must it pick up, and where must it put it? Answer with one JSON object and nothing else:\n"
    '{"target": "<the object to pick up, as a short noun phrase>", '
    '"placement": "<the object or area to put it on or in, as a short noun phrase>"}'
)
MAX_PHRASE_CHARS = 80
_JSON_OBJECT = re.compile(r"\{[^{}]{0,1000}\}")


def parse_grounding_answer(answer: str) -> tuple[str, str]:
    """The (target, placement) of a model's answer to GROUNDING_PROMPT_TEMPLATE: exactly one JSON object with the
    two string keys (code fences and prose around it are ignored), each a short phrase of words. ValueError with
    the reason otherwise."""
    if not isinstance(answer, str) or len(answer) > 5000:
        raise ValueError("the grounding answer must be a string of at most 5000 characters")
    objects = _JSON_OBJECT.findall(answer)
    if len(objects) != 1:
        raise ValueError(f"the grounding answer must hold exactly one JSON object, found {len(objects)}")
    try:
        value = json.loads(objects[0])
    except json.JSONDecodeError as error:
        raise ValueError(f"the grounding answer is not valid JSON: {error}") from None
    if not isinstance(value, dict) or set(value) != {"target", "placement"}:
        raise ValueError(f"the grounding answer must have exactly the keys target and placement, got "
                         f"{sorted(value) if isinstance(value, dict) else type(value).__name__}")
    phrases = []
    for key in ("target", "placement"):
        phrase = value[key]
        if not isinstance(phrase, str):
            raise ValueError(f"{key} must be a string, got {phrase!r}")
        phrase = _phrase(phrase.lower())
        if not phrase or len(phrase) > MAX_PHRASE_CHARS or not re.fullmatch(r"[a-z0-9 '\-]+", phrase) \
                or phrase in _BARE_ARTICLES:
            raise ValueError(f"{key} must be a short phrase of words, got {value[key]!r}")
        phrases.append(phrase)
    return phrases[0], phrases[1]
