import pytest
from hypothesis import given
from hypothesis import strategies as st

from hamster_core.instruction import parse_grounding_answer, parse_pick_place_instruction

# Instructions as the benchmarks and papers write them, with the phrases perception must ground.
REAL_INSTRUCTIONS = [
    # the simulator's own
    ("pick up the red cube and put it in the blue bowl", ("red cube", "blue bowl")),
    ("Pick up the Red Cube and put it in the Blue Bowl.", ("red cube", "blue bowl")),
    ("pick the corn and place it in the black bowl", ("corn", "black bowl")),
    ("pick up the green cylinder and put it on the plate", ("green cylinder", "plate")),
    ("pick up the green cylinder and put it into the yellow bowl", ("green cylinder", "yellow bowl")),
    ("pick up the cube and place it onto the tray!", ("cube", "tray")),
    ("  pick   up  the  black and white   cube and put it in   the  box  ", ("black and white cube", "box")),
    ("pick up red cube and put it in blue bowl", ("red cube", "blue bowl")),
    # issue 19's list
    ("put the red block in the green bowl", ("red block", "green bowl")),
    ("place the red cube on the plate", ("red cube", "plate")),
    ("Pick up the red cube, and put it in the blue bowl", ("red cube", "blue bowl")),
    ("put the pot in the sink and close the tap", ("pot", "sink")),
    # HAMSTER (DESIGN.md, the released client's examples)
    ("put the corn in the black bowl", ("corn", "black bowl")),
    ("Move the S to the plate the arrow is pointing at", ("s", "plate the arrow is pointing at")),
    # LIBERO
    ("put the black bowl on the plate", ("black bowl", "plate")),
    ("put the bowl on the stove", ("bowl", "stove")),
    ("put the wine bottle on top of the cabinet", ("wine bottle", "cabinet")),
    ("put the cream cheese in the bowl", ("cream cheese", "bowl")),
    ("pick up the alphabet soup and place it in the basket", ("alphabet soup", "basket")),
    ("pick up the ketchup and place it in the basket", ("ketchup", "basket")),
    ("put the white mug on the left plate", ("white mug", "left plate")),
    ("put the yellow and white mug in the microwave", ("yellow and white mug", "microwave")),
    ("put the black bowl in the bottom drawer of the cabinet", ("black bowl", "bottom drawer of the cabinet")),
    ("pick up the book and place it in the back compartment of the caddy", ("book", "back compartment of the caddy")),
    ("put the chocolate pudding to the left of the plate", ("chocolate pudding", "plate")),
    ("stack the left bowl on the right bowl and place them in the tray", ("left bowl", "right bowl")),
    ("put both the alphabet soup and the tomato sauce in the basket", ("alphabet soup and the tomato sauce", "basket")),
    ("put the black bowl in the top drawer of the cabinet and close it", ("black bowl", "top drawer of the cabinet")),
    # RLBench
    ("put the money away in the safe", ("money", "safe")),
    ("put the item in the drawer", ("item", "drawer")),
    ("place the cups on the cup holder", ("cups", "cup holder")),
    ("put the ring on the red spoke", ("ring", "red spoke")),
    ("insert the square peg into the hole", ("square peg", "hole")),
    # CALVIN
    ("put the grasped block in the drawer", ("grasped block", "drawer")),
    ("stack the red block on top of the blue block", ("red block", "blue block")),
    ("grasp the pink block, then put it in the sliding cabinet", ("pink block", "sliding cabinet")),
    # Bridge
    ("put the spoon in the pot", ("spoon", "pot")),
    ("move the yellow cloth to the left side of the table", ("yellow cloth", "left side of the table")),
    ("take the carrot and put it on the plate", ("carrot", "plate")),
    # RoboGround / "transferring foundation models" style, with politeness and trailing clauses
    ("Please place the apple next to the banana.", ("apple", "banana")),
    ("can you put the sponge inside the sink, then turn on the water", ("sponge", "sink")),
    ("pick up the red cube and put it under the blue bowl", ("red cube", "blue bowl")),
    ("grab the mug and then place it on the coaster; be careful", ("mug", "coaster")),
]
assert len(REAL_INSTRUCTIONS) >= 30


@pytest.mark.parametrize("text, expected", REAL_INSTRUCTIONS)
def test_parses_real_instructions(text, expected):
    assert parse_pick_place_instruction(text) == expected


@pytest.mark.parametrize("text", [
    "",
    "pick up the red cube",
    "pick up the red cube and put it",
    "pick up the and put it in the bowl",
    "pick up the red cube and put it in the",
    "open the top drawer",
    "Have the middle block on Jensen Huang",   # HAMSTER's example: no pick or place verb
    "wipe the table",
])
def test_rejects_other_text_and_quotes_it(text):
    with pytest.raises(ValueError) as error:
        parse_pick_place_instruction(text)
    assert repr(text) in str(error.value)


def test_rejects_non_string_and_overlong_text():
    with pytest.raises(ValueError):
        parse_pick_place_instruction(None)
    with pytest.raises(ValueError, match="the limit is 1000"):
        parse_pick_place_instruction("put the cup on the plate " * 50)


words = st.lists(st.sampled_from(["red", "blue", "big", "cube", "bowl", "mug", "corn", "small", "cup"]),
                 min_size=1, max_size=4).map(" ".join)


@given(words, words)
def test_round_trips_generated_instructions(target, placement):
    assert parse_pick_place_instruction(f"pick up the {target} and put it in the {placement}") == (target,
                                                                                                   placement)
    assert parse_pick_place_instruction(f"put the {target} on the {placement}.") == (target, placement)


@pytest.mark.parametrize("answer, expected", [
    ('{"target": "red cube", "placement": "blue bowl"}', ("red cube", "blue bowl")),
    ('```json\n{"target": "The Red Cube", "placement": "the blue bowl"}\n```', ("red cube", "blue bowl")),
    ('Sure! {"placement": "sink", "target": "pot"} Hope it helps.', ("pot", "sink")),
])
def test_grounding_answers_of_a_language_model_are_read_strictly(answer, expected):
    assert parse_grounding_answer(answer) == expected


@pytest.mark.parametrize("answer, reason", [
    ("red cube, blue bowl", "exactly one JSON object, found 0"),
    ('{"target": "a"} {"placement": "b"}', "found 2"),
    ('{"target": "cube", "placement": "bowl", "why": "x"}', "exactly the keys"),
    ('{"target": "cube"}', "exactly the keys"),
    ('{"target": 7, "placement": "bowl"}', "target must be a string"),
    ('{"target": "cube", "placement": ""}', "placement must be a short phrase"),
    ('{"target": "cube<script>", "placement": "bowl"}', "target must be a short phrase"),
    ('{"target": "' + "x" * 100 + '", "placement": "bowl"}', "target must be a short phrase"),
    ('{"target": "cube", placement: "bowl"}', "not valid JSON"),
    ("x" * 5001, "at most 5000"),
])
def test_grounding_answers_that_are_not_strict_json_are_refused(answer, reason):
    with pytest.raises(ValueError, match=reason):
        parse_grounding_answer(answer)
