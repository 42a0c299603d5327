"""The answer parser on answers as real VLMs write them, hostile inputs, and property-based fuzzing; the
configurable prompt. (test_path2d.py covers the grammar case by case.)"""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from hamster_core.path2d import (GRIPPER_POSITION_LINE, HAMSTER_PROMPT_TEMPLATE, Path2D, PathParseError,
                                 build_prompt, check_prompt_template, format_hamster_answer, parse_hamster_answer)

OPEN, CLOSED = 0, 1
POINTS = [[0.25, 0.32], [0.32, 0.17], [0.74, 0.21]]

# Answers in the shapes chat models produce around the HAMSTER format.
REAL_LOOKING = [
    ("<ans>[(0.25, 0.32), (0.32, 0.17), <action>Close Gripper</action>, (0.74, 0.21)]</ans>", POINTS, [0, 1, 1]),
    ("```\n<ans>[(0.25, 0.32), (0.32, 0.17), <action>Close Gripper</action>, (0.74, 0.21)]</ans>\n```",
     POINTS, [0, 1, 1]),                                                            # markdown fence
    ("The trajectory is:\n<ans>[(0.25,0.32),(0.32,0.17),<action>Close Gripper</action>,(0.74,0.21)]</ans>\n"
     "The gripper closes on the corn.", POINTS, [0, 1, 1]),                        # prose around, no spaces
    ("<ans>[ ( 0.25 , 0.32 ) ,  ( 0.32 , 0.17 ) , <action> Close Gripper </action> , ( 0.74 , 0.21 ) ]</ans>",
     POINTS, [0, 1, 1]),                                                           # spaces everywhere
    ("<ans>[(0.25, 0.32), (0.32, 0.17), <action>Close Gripper</action>, (0.74, 0.21)]", POINTS, [0, 1, 1]),
    ("<ans>[(0.25, 0.32), (0.32, 0.17), <action>Close Gripper</action>, (0.74, 0.21)", POINTS, [0, 1, 1]),
    ("<ans>[(0.25, 0.32), (0.32, 0.17), <action>Close Gripper</action>, (0.74, 0.21)]</ans></s>", POINTS, [0, 1, 1]),
    ("<ans>[(0.250, 0.320), (0.320, 0.170), <action>close gripper</action>, (0.740, 0.210)]</ans>", POINTS,
     [0, 1, 1]),
    ("<ANS>[(0.25, 0.32), (0.32, 0.17), <ACTION>CLOSE GRIPPER</ACTION>, (0.74, 0.21)]</ANS>", POINTS, [0, 1, 1]),
    ("<ans>[(0.25, 0.32), (0.32, 0.17), <action>Close Gripper</action>, (0.74, 0.21), <action>Open Gripper</action>]"
     "</ans>", POINTS, [0, 1, 0]),                                                 # a final release
]


@pytest.mark.parametrize("answer, points, gripper", REAL_LOOKING)
def test_real_looking_answers(answer, points, gripper):
    path = parse_hamster_answer(answer)
    np.testing.assert_allclose(path.points, points)
    np.testing.assert_array_equal(path.gripper, gripper)


def test_integer_pixel_coordinates_with_the_image_size():
    answer = "<ans>[(160, 120), (32, 24), <action>Close Gripper</action>, (320, 0)]</ans> trailing words"
    path = parse_hamster_answer(answer, image_size=(320, 240))
    np.testing.assert_allclose(path.points, [[0.5, 0.5], [0.1, 0.1], [1.0, 0.0]])
    np.testing.assert_array_equal(path.gripper, [OPEN, CLOSED, CLOSED])


@pytest.mark.parametrize("answer, image_size, reason", [
    ("<ans>[(0.2, 1.7)]</ans>", (640, 480), "pixel coordinates must all be written as integers"),
    ("<ans>[(160.5, 120)]</ans>", (640, 480), "pixel coordinates must all be written as integers"),
    ("<ans>[(160, 120)]</ans>", None, "need image_size"),
    ("<ans>[(641, 12)]</ans>", (640, 480), "outside of the 640x480 image"),
    ("<ans>[(-0.01, 0.5)]</ans>", None, "outside \\[0, 1\\]"),
    ("<ans>[(1e400, 0.5)]</ans>", None, "not finite"),
    ("<ans>[(NaN, 0.5)]</ans>", None, "not a plain decimal"),
    ("<ans>[(Infinity, 0.5)]</ans>", None, "not a plain decimal"),
    ("<ans>[]</ans>", None, "no points"),
    ("no tags at all: (0.1, 0.2)", None, "no <ans> block"),
    ("<ans>[" + "(0.5, 0.5), " * 65 + "]</ans>", None, "more than max_points=64"),
    ("<ans>[(0.1, 0.2), __import__('os').system('true')]</ans>", None, "unexpected text"),
    ("<ans>[(0.1, 0.2), <script>alert(1)</script>]</ans>", None, "malformed tag"),
    ("<ans>[(0.1, 0.2), <action>Self Destruct</action>]</ans>", None, "unknown gripper action"),
    ("<ans>[(0.1, 0.2)]; rm -rf /</ans>", None, "between '\\]' and </ans>"),
    ("<ans>[(0.1, 0.2), (" + "9" * 300 + ", 0.1)]</ans>", None, "malformed or unterminated point"),
])
def test_hostile_and_out_of_range_answers_are_rejected_with_a_reason(answer, image_size, reason):
    with pytest.raises(PathParseError, match=reason):
        parse_hamster_answer(answer, image_size=image_size)


paths = st.integers(min_value=1, max_value=20).flatmap(lambda n: st.builds(
    Path2D,
    st.lists(st.tuples(st.floats(0, 1), st.floats(0, 1)), min_size=n, max_size=n),
    st.lists(st.sampled_from([OPEN, CLOSED]), min_size=n, max_size=n)))


@settings(max_examples=150, deadline=None, database=None)
@given(path=paths, width=st.integers(2, 4000), height=st.integers(2, 4000))
def test_pixel_answers_round_trip(path, width, height):
    """format in integer pixels -> parse with the image size: within half a pixel, same gripper states."""
    pixels = np.rint(path.to_pixels(width, height)).astype(int)
    items = []
    changes = set(path.gripper_change_indices().tolist())
    for index, (u, v) in enumerate(pixels):
        items.append(f"({u}, {v})")
        if index in changes:
            items.append("<action>Close Gripper</action>" if path.gripper[index] else "<action>Open Gripper</action>")
    parsed = parse_hamster_answer("<ans>[" + ", ".join(items) + "]</ans>", max_points=20,
                                  image_size=(width, height))
    np.testing.assert_array_equal(parsed.gripper, path.gripper)
    if (pixels > 1).any():  # all of 0 and 1 reads as normalized, which is also in range
        np.testing.assert_allclose(parsed.points * [width, height], path.to_pixels(width, height), atol=0.5 + 1e-9)


@settings(max_examples=150, deadline=None, database=None)
@given(path=paths, prefix=st.text(max_size=40).filter(lambda t: "<" not in t),
       suffix=st.text(max_size=40), decimals=st.integers(2, 5))
def test_canonical_answers_round_trip_inside_arbitrary_prose(path, prefix, suffix, decimals):
    parsed = parse_hamster_answer(prefix + format_hamster_answer(path, decimals) + suffix, max_points=20)
    np.testing.assert_allclose(parsed.points, path.points, atol=0.5 * 10.0 ** -decimals + 1e-12)
    np.testing.assert_array_equal(parsed.gripper, path.gripper)


@settings(max_examples=300, deadline=None, database=None)
@given(text=st.one_of(st.text(max_size=200), st.binary(max_size=200).map(lambda b: b.decode("latin-1"))),
       image_size=st.sampled_from([None, (640, 480), (1, 1)]), max_points=st.integers(1, 8))
def test_random_and_hostile_strings_only_raise_parse_errors(text, image_size, max_points):
    for candidate in (text, "<ans>[" + text, "<ans>[(0.5, 0.5), " + text + "]</ans>"):
        try:
            path = parse_hamster_answer(candidate, max_points=max_points, image_size=image_size)
        except PathParseError:
            continue
        assert 1 <= len(path) <= max_points and np.all((path.points >= 0) & (path.points <= 1))


# ---------------------------------------------------------------------------------------------- prompt

def test_prompt_template_is_configurable_and_validated():
    assert build_prompt("stack the cups") == HAMSTER_PROMPT_TEMPLATE.replace("{instruction}", "stack the cups")
    custom = "Robot task: {instruction}. Reply as JSON {\"path\": [...]} inside <ans></ans>."
    assert build_prompt("stack\nthe  cups", template=custom) == \
        "Robot task: stack the cups. Reply as JSON {\"path\": [...]} inside <ans></ans>."
    assert build_prompt("go", (0.125, 0.5), template="{instruction}") == \
        "go\n" + GRIPPER_POSITION_LINE.format(x=0.125, y=0.5)
    for bad in ("", "no placeholder", "{Instruction}", None):
        with pytest.raises(ValueError, match="must contain \\{instruction\\}"):
            check_prompt_template(bad)
