import pytest
from hypothesis import given
from hypothesis import strategies as st

from hamster_core.instruction import parse_pick_place_instruction


@pytest.mark.parametrize("text, expected", [
    ("pick up the red cube and put it in the blue bowl", ("red cube", "blue bowl")),
    ("Pick up the Red Cube and put it in the Blue Bowl.", ("red cube", "blue bowl")),
    ("pick the corn and place it in the black bowl", ("corn", "black bowl")),
    ("pick up the green cylinder and put it on the plate", ("green cylinder", "plate")),
    ("pick up the green cylinder and put it into the yellow bowl", ("green cylinder", "yellow bowl")),
    ("pick up the cube and place it onto the tray!", ("cube", "tray")),
    ("  pick   up  the  black and white   cube and put it in   the  box  ", ("black and white cube", "box")),
    ("pick up red cube and put it in blue bowl", ("red cube", "blue bowl")),
])
def test_parses_pick_and_place_instructions(text, expected):
    assert parse_pick_place_instruction(text) == expected


@pytest.mark.parametrize("text", [
    "",
    "put the red cube in the blue bowl",
    "pick up the red cube",
    "pick up the red cube and put it",
    "pick up the red cube and put it under the blue bowl",
    "pick up the and put it in the bowl",
    "pick up the red cube and put it in the",
    "please pick up the red cube and put it in the blue bowl",
])
def test_rejects_other_text_and_quotes_it(text):
    with pytest.raises(ValueError) as error:
        parse_pick_place_instruction(text)
    assert repr(text) in str(error.value)


def test_rejects_non_string():
    with pytest.raises(ValueError):
        parse_pick_place_instruction(None)


words = st.lists(st.sampled_from(["red", "blue", "big", "cube", "bowl", "mug", "corn", "small", "cup"]),
                 min_size=1, max_size=4).map(" ".join)


@given(words, words)
def test_round_trips_generated_instructions(target, placement):
    assert parse_pick_place_instruction(f"pick up the {target} and put it in the {placement}") == (target,
                                                                                                   placement)
