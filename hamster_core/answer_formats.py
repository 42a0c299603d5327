"""How a model is asked for a path and how its answer is read: one entry per answer format.

`hamster` is HAMSTER's `<ans>[(x, y), <action>Close Gripper</action>, ...]</ans>` (hamster_core.path2d). The
named prompt templates are what a `prompt_template` parameter may name instead of spelling a template out.
"""
from __future__ import annotations

from hamster_core.path2d import (HAMSTER_PAPER_PROMPT_TEMPLATE, HAMSTER_PROMPT_TEMPLATE, INSTRUCTION_PLACEHOLDER,
                                 check_prompt_template)

# name -> template. `hamster` is the released client's text, `hamster_paper` the paper's Figure 10.
PROMPT_TEMPLATES: dict[str, str] = {
    "hamster": HAMSTER_PROMPT_TEMPLATE,
    "hamster_paper": HAMSTER_PAPER_PROMPT_TEMPLATE,
}


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
