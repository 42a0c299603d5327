"""Path2D, the HAMSTER answer parser and formatter, RDP simplification and resampling."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hamster_core.path2d import (
    HAMSTER_PROMPT_TEMPLATE, MAX_ANSWER_CHARS, GripperState, Path2D, PathError, PathParseError, build_prompt,
    format_hamster_answer, parse_hamster_answer, path_from_pixels, resample, simplify_rdp,
)

OPEN, CLOSED = GripperState.OPEN, GripperState.CLOSED
CANONICAL = ("<ans>[(0.25, 0.32), (0.32, 0.17), <action>Close Gripper</action>, (0.74, 0.21), "
             "<action>Open Gripper</action>]</ans>")
CANONICAL_POINTS = [[0.25, 0.32], [0.32, 0.17], [0.74, 0.21]]
CANONICAL_GRIPPER = [OPEN, CLOSED, OPEN]


def assert_path(path, points, gripper):
    np.testing.assert_allclose(path.points, points)
    np.testing.assert_array_equal(path.gripper, gripper)


# ---------------------------------------------------------------------------------------------- Path2D

def test_path_stores_read_only_arrays_and_defaults_to_open():
    path = Path2D([[0.1, 0.2], [0.3, 0.4]])
    assert path.points.dtype == np.float64 and path.gripper.dtype == np.uint8
    np.testing.assert_array_equal(path.gripper, [OPEN, OPEN])
    with pytest.raises(ValueError):
        path.points[0, 0] = 0.5
    assert len(path) == 2


def test_path_equality_is_by_value():
    assert Path2D([[0.1, 0.2]], [1]) == Path2D(np.array([[0.1, 0.2]]), np.array([True]))
    assert Path2D([[0.1, 0.2]], [1]) != Path2D([[0.1, 0.2]], [0])


@pytest.mark.parametrize("points, gripper, reason", [
    (np.zeros((0, 2)), None, "at least one point"),
    ([[0.1, 0.2, 0.3]], None, "shape"),
    ([0.1, 0.2], None, "shape"),
    ([[0.1, np.nan]], None, "finite"),
    ([[0.1, np.inf]], None, "finite"),
    ([[0.1, 1.2]], None, "outside"),
    ([[-0.01, 0.5]], None, "outside"),
    ([["a", "b"]], None, "numeric"),
    ([[0.1, 0.2]], [2], "must be 0 .OPEN. or 1 .CLOSED."),
    ([[0.1, 0.2]], [0.5], "must be 0 .OPEN. or 1 .CLOSED."),
    ([[0.1, 0.2]], [0, 1], "shape"),
])
def test_path_rejects_invalid_data(points, gripper, reason):
    with pytest.raises(PathError, match=reason):
        Path2D(points, gripper)


def test_gripper_change_indices_start_from_open():
    points = np.full((5, 2), 0.5)
    assert Path2D(points, [0, 0, 1, 1, 0]).gripper_change_indices().tolist() == [2, 4]
    assert Path2D(points, [1, 1, 1, 0, 0]).gripper_change_indices().tolist() == [0, 3]
    assert Path2D(points).gripper_change_indices().tolist() == []


def test_pixel_conversions_round_trip():
    pixels = np.array([[0.0, 0.0], [320.0, 240.0], [640.0, 480.0]])
    path = path_from_pixels(pixels, [0, 1, 1], 640, 480)
    assert_path(path, [[0, 0], [0.5, 0.5], [1, 1]], [0, 1, 1])
    np.testing.assert_allclose(path.to_pixels(640, 480), pixels)
    with pytest.raises(PathError):
        path_from_pixels([[641.0, 0.0]], None, 640, 480)
    with pytest.raises(ValueError, match="image size"):
        path.to_pixels(0, 480)


# ---------------------------------------------------------------------------------------------- parsing

def test_parses_the_canonical_answer():
    assert_path(parse_hamster_answer(CANONICAL), CANONICAL_POINTS, CANONICAL_GRIPPER)


@pytest.mark.parametrize("answer", [
    "Sure! Here is the path: " + CANONICAL + " Let me know if you need anything else.",
    CANONICAL.replace("</ans>", ""),                               # missing </ans>
    CANONICAL.replace("]</ans>", "</ans>"),                        # missing ]
    CANONICAL.replace("]</ans>", ""),                              # truncated: neither
    CANONICAL.replace("</ans>", " and then I stop"),               # no </ans>: text after ] ignored
    CANONICAL.replace(", ", " ,\n\t ").replace("(", "( ").replace(")", " )"),
    "<ans>\n[\n  (0.25,0.32),\n  (0.32,0.17),\n  <action>Close Gripper</action>,\n  (0.74,0.21),\n"
    "  <action>Open Gripper</action>\n]\n</ans>",
    CANONICAL.upper().replace("CLOSE GRIPPER", "Close Gripper").replace("OPEN GRIPPER", "open gripper"),
    CANONICAL.replace("<ans>", "< ans >").replace("</ans>", "< / ans >"),
    CANONICAL.replace("<action>Close Gripper</action>", "< Action > close   gripper </ ACTION >"),
    CANONICAL.replace("Close Gripper", "CloseGripper").replace("Open Gripper", "open_gripper"),
    CANONICAL.replace("<action>Close Gripper</action>", "<action>Close Gripper</action>, " * 3),  # collapsed
    CANONICAL.replace("]</ans>", ",]</ans>"),                     # trailing comma
    CANONICAL.replace(", (", " (").replace(", <", " <"),           # whitespace-only separators
    CANONICAL.replace("0.25", "2.5e-1").replace("0.74", ".74").replace("0.32,", "+0.32,"),
    "<ans>[(0.25, 0.32)]</ans> " + CANONICAL,                       # only the first block counts (below)
])
def test_accepts_usual_model_variations(answer):
    path = parse_hamster_answer(answer)
    if answer.startswith("<ans>[(0.25, 0.32)]</ans> "):
        assert_path(path, [[0.25, 0.32]], [OPEN])
    else:
        assert_path(path, CANONICAL_POINTS, CANONICAL_GRIPPER)


def test_an_action_applies_at_the_point_before_it_and_carries_over():
    path = parse_hamster_answer("<ans>[(0.1, 0.1), (0.2, 0.2), <action>Close Gripper</action>, (0.3, 0.3), "
                                "(0.4, 0.4), <action>Open Gripper</action>, (0.5, 0.5)]</ans>")
    np.testing.assert_array_equal(path.gripper, [OPEN, CLOSED, CLOSED, OPEN, OPEN])


def test_an_action_before_the_first_point_applies_at_the_first_point():
    path = parse_hamster_answer("<ans>[<action>Close Gripper</action>, (0.1, 0.1), (0.2, 0.2)]</ans>")
    np.testing.assert_array_equal(path.gripper, [CLOSED, CLOSED])
    assert path == parse_hamster_answer("<ans>[(0.1, 0.1), <action>Close Gripper</action>, (0.2, 0.2)]</ans>")


def test_an_action_restating_the_current_state_is_harmless():
    path = parse_hamster_answer("<ans>[<action>Open Gripper</action>, (0.1, 0.1), (0.2, 0.2)]</ans>")
    np.testing.assert_array_equal(path.gripper, [OPEN, OPEN])


def test_integer_coordinates_in_range_are_normalized_values():
    assert_path(parse_hamster_answer("<ans>[(0, 1), (1, 0)]</ans>"), [[0, 1], [1, 0]], [OPEN, OPEN])


def test_pixel_coordinates_need_image_size():
    answer = "<ans>[(320, 240), <action>Close Gripper</action>, (640, 0)]</ans>"
    with pytest.raises(PathParseError, match="image_size"):
        parse_hamster_answer(answer)
    path = parse_hamster_answer(answer, image_size=(640, 480))
    assert_path(path, [[0.5, 0.5], [1.0, 0.0]], [CLOSED, CLOSED])
    with pytest.raises(PathParseError, match="outside of the 640x480 image"):
        parse_hamster_answer("<ans>[(320, 481)]</ans>", image_size=(640, 480))


@pytest.mark.parametrize("answer, reason", [
    ("[(0.25, 0.32)]", "no <ans> block"),
    ("", "no <ans> block"),
    ("<ans>[]</ans>", "no points"),
    ("<ans></ans>", "expected '\\['"),
    ("<ans>(0.1, 0.2)</ans>", "expected '\\['"),
    ("<ans>[<action>Close Gripper</action>]</ans>", "no points"),
    ("<ans>[(0.25, 1.7)]</ans>", "1.7 is outside \\[0, 1\\]"),
    ("<ans>[(0.25, -0.1)]</ans>", "outside \\[0, 1\\]"),
    ("<ans>[(nan, 0.1)]</ans>", "not a plain decimal number"),
    ("<ans>[(0.1, inf)]</ans>", "not a plain decimal number"),
    ("<ans>[(0.1, 1e999)]</ans>", "not finite"),
    ("<ans>[(0.1, 0x1)]</ans>", "not a plain decimal number"),
    ("<ans>[(0.1, 1_0)]</ans>", "not a plain decimal number"),
    ("<ans>[(0.1, \u0663)]</ans>", "not a plain decimal number"),   # an Arabic-Indic digit
    ("<ans>[(0.1, a)]</ans>", "not a plain decimal number"),
    ("<ans>[(0.1, )]</ans>", "not a plain decimal number"),
    ("<ans>[(0.1, 0.2, 0.3)]</ans>", "2 coordinates, got 3"),
    ("<ans>[(0.1)]</ans>", "2 coordinates, got 1"),
    ("<ans>[()]</ans>", "2 coordinates, got 1|not a plain decimal"),
    ("<ans>[(0.1, 0.2), <action>Jump</action>]</ans>", "unknown gripper action 'Jump'"),
    ("<ans>[(0.1, 0.2), <action>Close Gripper now</action>]</ans>", "unknown gripper action"),
    ("<ans>[(0.1, 0.2), <action>Close Gripper</action>, <action>Open Gripper</action>]</ans>", "conflicting"),
    ("<ans>[(0.1, 0.2), <action>Close Gripper</ans>", "malformed tag"),
    ("<ans>[(0.1, 0.2), move left, (0.3, 0.4)]</ans>", "unexpected text"),
    ("<ans>[(0.1, 0.2), ...]</ans>", "unexpected text"),
    ("<ans>[[0.1, 0.2]]</ans>", "unexpected text"),
    ("<ans>[(0.1, 0.2)] + [(0.3, 0.4)]</ans>", "between '\\]' and </ans>"),
    ("<ans>[(0.1, 0.2), (0.3, 0.4</ans>", "malformed or unterminated point"),
    ("<ans>[(0.1, 0.2), (0.3, 0.4)", None),                      # accepted: see below
])
def test_rejects_malformed_answers_with_a_reason(answer, reason):
    if reason is None:  # a truncated answer whose points are all complete is still a path
        assert len(parse_hamster_answer(answer)) == 2
        return
    with pytest.raises(PathParseError, match=reason):
        parse_hamster_answer(answer)


@pytest.mark.parametrize("template", [
    "<ans>[(__import__('os').system('touch {marker}'), 0.1)]</ans>",
    "<ans>[__import__('os').system('touch {marker}')]</ans>",
    "<ans>[(0.1, 0.2)] ; __import__('os').system('touch {marker}')</ans>",
    "<ans>[(0.1, 0.2), <action>__import__('os').system('touch {marker}')</action>]</ans>",
])
def test_injection_attempts_are_rejected_not_executed(template, tmp_path):
    marker = tmp_path / "executed"
    with pytest.raises(PathParseError):
        parse_hamster_answer(template.format(marker=marker))
    assert not marker.exists()


def test_too_many_points_and_too_long_answers_are_rejected():
    answer = "<ans>[" + ", ".join(["(0.5, 0.5)"] * 65) + "]</ans>"
    with pytest.raises(PathParseError, match="max_points=64"):
        parse_hamster_answer(answer)
    assert len(parse_hamster_answer(answer, max_points=65)) == 65
    with pytest.raises(PathParseError, match="characters long"):
        parse_hamster_answer(CANONICAL + " " * MAX_ANSWER_CHARS)
    with pytest.raises(ValueError, match="max_points"):
        parse_hamster_answer(CANONICAL, max_points=0)


def test_non_string_input_is_a_parse_error():
    with pytest.raises(PathParseError, match="string"):
        parse_hamster_answer(b"<ans>[(0.1, 0.2)]</ans>")


def test_format_writes_actions_after_the_changing_point():
    path = Path2D(CANONICAL_POINTS, CANONICAL_GRIPPER)
    assert format_hamster_answer(path) == CANONICAL
    starts_closed = Path2D([[0.1, 0.2], [0.3, 0.4]], [CLOSED, CLOSED])
    assert format_hamster_answer(starts_closed, decimals=3) == \
        "<ans>[(0.100, 0.200), <action>Close Gripper</action>, (0.300, 0.400)]</ans>"
    with pytest.raises(ValueError, match="decimals"):
        format_hamster_answer(path, decimals=-1)


paths = st.integers(min_value=1, max_value=30).flatmap(lambda n: st.builds(
    Path2D,
    st.lists(st.tuples(st.floats(0, 1), st.floats(0, 1)), min_size=n, max_size=n),
    st.lists(st.sampled_from([0, 1]), min_size=n, max_size=n),
))


@pytest.mark.slow  # 300 hypothesis paths (~2 s); the parser's examples above run in make test-fast
@settings(max_examples=300, deadline=None, database=None)
@given(path=paths, decimals=st.integers(min_value=1, max_value=6))
def test_format_then_parse_round_trips_within_rounding(path, decimals):
    parsed = parse_hamster_answer(format_hamster_answer(path, decimals))
    np.testing.assert_allclose(parsed.points, path.points, atol=0.5 * 10.0 ** -decimals + 1e-12)
    np.testing.assert_array_equal(parsed.gripper, path.gripper)


@settings(max_examples=300, deadline=None, database=None)
@given(text=st.text(max_size=300))
def test_arbitrary_text_only_ever_raises_parse_errors(text):
    for candidate in (text, "<ans>[" + text, "<ans>" + text + "</ans>"):
        try:
            parse_hamster_answer(candidate)
        except PathParseError:
            pass


FRAGMENTS = ["<ans>", "</ans>", "[", "]", "(", ")", ",", " ", "\n", "0.5", "1", "1.7", "-0", "320", "1e5", "nan",
             "<action>", "</action>", "Close Gripper", "open gripper", "<", ">", "/", "ans", "x"]


@settings(max_examples=400, deadline=None, database=None)
@given(parts=st.lists(st.sampled_from(FRAGMENTS), max_size=40), image_size=st.sampled_from([None, (640, 480)]))
def test_answer_like_text_only_ever_raises_parse_errors(parts, image_size):
    try:
        path = parse_hamster_answer("".join(parts), image_size=image_size)
    except PathParseError:
        return
    assert np.all((path.points >= 0) & (path.points <= 1))


# ---------------------------------------------------------------------------------------------- RDP

def test_rdp_reduces_a_dense_straight_line_to_its_ends():
    line = np.linspace([0.1, 0.2], [0.9, 0.7], 200)
    simplified = simplify_rdp(Path2D(line))
    assert_path(simplified, [line[0], line[-1]], [OPEN, OPEN])


def test_rdp_keeps_ends_corners_and_gripper_changes():
    first_leg = np.linspace([0.1, 0.1], [0.5, 0.8], 50)
    second_leg = np.linspace([0.5, 0.8], [0.9, 0.1], 50)[1:]
    points = np.vstack([first_leg, second_leg])
    gripper = np.zeros(len(points), dtype=np.uint8)
    gripper[20:70] = CLOSED  # closes mid-way along the first leg, opens along the second
    simplified = simplify_rdp(Path2D(points, gripper))
    kept = [0, 20, 49, 70, len(points) - 1]
    assert_path(simplified, points[kept], gripper[kept])
    assert simplified.gripper_change_indices().tolist() == [1, 3]


def test_rdp_keeps_the_turning_point_of_a_path_that_doubles_back():
    down_and_up = np.vstack([np.linspace([0.5, 0.2], [0.5, 0.8], 30), np.linspace([0.5, 0.8], [0.5, 0.4], 30)[1:]])
    simplified = simplify_rdp(Path2D(down_and_up))
    assert_path(simplified, [[0.5, 0.2], [0.5, 0.8], [0.5, 0.4]], [OPEN] * 3)


def test_rdp_handles_closed_loops_and_single_points():
    loop = Path2D([[0.2, 0.2], [0.8, 0.2], [0.8, 0.8], [0.2, 0.2]])
    assert len(simplify_rdp(loop)) >= 3
    single = Path2D([[0.3, 0.3]], [CLOSED])
    assert simplify_rdp(single) == single
    with pytest.raises(ValueError, match="epsilon"):
        simplify_rdp(loop, epsilon=-1)


def test_rdp_handles_long_paths_without_recursion():
    t = np.linspace(0, 40 * np.pi, 20_000)
    spiral = 0.5 + 0.45 * np.stack([np.cos(t), np.sin(t)], axis=1) * np.linspace(0.1, 1, len(t))[:, None]
    simplified = simplify_rdp(Path2D(spiral), epsilon=0.001)
    assert 100 < len(simplified) < len(t)


def _distance_to_polyline(points, polyline):
    a, b = polyline[:-1], polyline[1:]
    direction = b - a
    length_squared = np.maximum((direction ** 2).sum(axis=1), 1e-300)
    t = np.clip(((points[:, None, :] - a) * direction).sum(axis=2) / length_squared, 0, 1)
    nearest = a + t[..., None] * direction
    return np.linalg.norm(points[:, None, :] - nearest, axis=2).min(axis=1)


def _is_subsequence(simplified, path):
    """(point, state) pairs of `simplified` appear in `path` in order."""
    remaining = iter(zip(path.points.tolist(), path.gripper.tolist()))
    return all(pair in remaining for pair in zip(simplified.points.tolist(), simplified.gripper.tolist()))


@pytest.mark.slow  # 200 hypothesis paths (~2 s); the RDP examples above run in make test-fast
@settings(max_examples=200, deadline=None, database=None)
@given(path=paths, epsilon=st.floats(0.0, 0.3))
def test_rdp_output_is_a_state_preserving_subsequence_within_epsilon(path, epsilon):
    simplified = simplify_rdp(path, epsilon)
    assert _is_subsequence(simplified, path)
    np.testing.assert_array_equal(simplified.points[[0, -1]], path.points[[0, -1]])
    np.testing.assert_array_equal(simplified.gripper[simplified.gripper_change_indices()],
                                  path.gripper[path.gripper_change_indices()])
    if len(simplified) > 1:
        assert _distance_to_polyline(path.points, simplified.points).max() <= epsilon + 1e-9


# ---------------------------------------------------------------------------------------------- resampling

def test_resample_spaces_points_evenly_by_arc_length():
    path = Path2D([[0.0, 0.0], [0.6, 0.0], [0.6, 0.4]])
    samples = resample(path, 11)
    assert len(samples) == 11
    np.testing.assert_allclose(np.linalg.norm(np.diff(samples.points, axis=0), axis=1), 0.1, atol=1e-12)
    np.testing.assert_array_equal(samples.points[[0, -1]], path.points[[0, -1]])
    np.testing.assert_allclose(samples.points[6], [0.6, 0.0])


def test_resample_keeps_gripper_changes_exactly_with_the_right_states():
    path = Path2D([[0.1, 0.1], [0.33, 0.57], [0.9, 0.2], [0.5, 0.9]], [OPEN, CLOSED, CLOSED, OPEN])
    samples = resample(path, 100)
    changes = samples.gripper_change_indices()
    np.testing.assert_array_equal(samples.points[changes], path.points[[1, 3]])
    np.testing.assert_array_equal(samples.gripper[changes], [CLOSED, OPEN])
    assert changes[-1] == 99
    # Every sample before the close lies on the first segment and is OPEN; the rest up to the open are CLOSED.
    assert np.all(samples.gripper[:changes[0]] == OPEN) and np.all(samples.gripper[changes[0]:99] == CLOSED)


def test_resample_pushes_apart_changes_that_would_share_a_sample():
    path = Path2D([[0.0, 0.0], [0.5, 0.0], [0.5001, 0.0], [0.5002, 0.0], [1.0, 0.0]], [0, 1, 0, 1, 1])
    samples = resample(path, 5)
    np.testing.assert_array_equal(samples.points, path.points)
    np.testing.assert_array_equal(samples.gripper, path.gripper)
    with pytest.raises(ValueError, match=">= 5"):
        resample(path, 4)


def test_resample_degenerate_paths():
    single = resample(Path2D([[0.4, 0.6]], [CLOSED]), 4)
    assert_path(single, [[0.4, 0.6]] * 4, [CLOSED] * 4)
    # A path of zero length places its change by point index: point 1 of 0..2 -> sample 2 of 0..5.
    still = resample(Path2D([[0.4, 0.6]] * 3, [OPEN, CLOSED, CLOSED]), 6)
    assert_path(still, [[0.4, 0.6]] * 6, [OPEN, OPEN] + [CLOSED] * 4)
    with pytest.raises(ValueError):
        resample(Path2D([[0.1, 0.1], [0.2, 0.2]]), 1)


@pytest.mark.slow  # 200 hypothesis paths (~2 s); the resampling examples above run in make test-fast
@settings(max_examples=200, deadline=None, database=None)
@given(path=paths, n=st.integers(min_value=2, max_value=120))
def test_resample_preserves_ends_and_the_sequence_of_changes(path, n):
    forced = len(np.union1d([0, len(path) - 1], path.gripper_change_indices()))
    if n < forced:
        with pytest.raises(ValueError):
            resample(path, n)
        return
    samples = resample(path, n)
    assert len(samples) == n
    np.testing.assert_array_equal(samples.points[[0, -1]], path.points[[0, -1]])
    changes, original = samples.gripper_change_indices(), path.gripper_change_indices()
    np.testing.assert_array_equal(samples.points[changes], path.points[original])
    np.testing.assert_array_equal(samples.gripper[changes], path.gripper[original])


# ---------------------------------------------------------------------------------------------- prompt

def test_prompt_is_hamsters_released_text_with_the_instruction():
    prompt = build_prompt("put the corn in the black bowl")
    assert prompt == HAMSTER_PROMPT_TEMPLATE.format(instruction="put the corn in the black bowl")
    assert prompt.startswith("\nIn the image, please execute the command described in "
                             "<quest>put the corn in the black bowl</quest>.")
    assert "<ans>[(0.25, 0.32), (0.32, 0.17), (0.13, 0.24), <action>Open Gripper</action>" in prompt
    assert prompt.endswith("Remember to provide points between <ans> and </ans> tags and think step by step.")


def test_prompt_with_gripper_position_and_validation():
    prompt = build_prompt("  pick up\nthe {cube}  ", gripper_xy=(0.5, 0.25))
    assert "<quest>pick up the {cube}</quest>" in prompt
    assert prompt.endswith("The current position of the robot gripper is: (0.50, 0.25).")
    with pytest.raises(ValueError, match="instruction"):
        build_prompt("   ")
    with pytest.raises(ValueError, match="gripper_xy"):
        build_prompt("pick", gripper_xy=(1.5, 0.2))
