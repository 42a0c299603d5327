"""Answer formats beside HAMSTER's: Qwen2.5-VL JSON points (pixels of its resized image) and Molmo points
(percent), each with its prompt, read as strictly as the `<ans>` parser."""
import numpy as np
import pytest

from hamster_core.answer_formats import (ANSWER_FORMATS, MOLMO_POINTS_PROMPT_TEMPLATE, QWEN_POINTS_PROMPT_TEMPLATE,
                                         answer_format, parse_molmo_points, parse_qwen_points, qwen_smart_resize)
from hamster_core.chat_server import ChatServer
from hamster_core.path2d import GripperState, PathParseError
from hamster_core.vlm import VLM_BACKENDS, VlmRequest
from hamster_vlm_node.planner import PlanError, Planner

O, C = GripperState.OPEN, GripperState.CLOSED
# A 640 x 480 image: Qwen2.5-VL sees it as 644 x 476 (both sides rounded to multiples of 28).
SIZE = (640, 480)
QWEN_ANSWER = """```json
[
  {"point_2d": [161, 238], "label": "move"},
  {"point_2d": [322, 357], "label": "grasp"},
  {"point_2d": [322, 119], "label": "move"},
  {"point_2d": [483, 119], "label": "release"}
]
```"""
MOLMO_ANSWER = ('<point x="25.0" y="50.0" alt="move">move</point> <point x="50" y="75" alt="grasp">grasp</point> '
                '<points x1="50" y1="25" x2="75.5" y2="25" alt="release">release</points>')


def test_qwen_smart_resize_is_transformers_smart_resize():
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize
    rng = np.random.default_rng(0)
    sizes = [(480, 640), (28, 28), (10, 10), (1080, 1920), (4000, 6000), (56, 5000)] + \
        [tuple(int(v) for v in rng.integers(8, 5000, 2)) for _ in range(300)]
    for height, width in sizes:
        if max(height, width) / min(height, width) > 200:
            continue
        assert qwen_smart_resize(height, width) == smart_resize(height, width, factor=28, min_pixels=56 * 56,
                                                                max_pixels=12_845_056), (height, width)
    assert qwen_smart_resize(480, 640) == (476, 644)


def test_qwen_points_are_read_in_the_resized_image_with_gripper_labels():
    path = parse_qwen_points(QWEN_ANSWER, image_size=SIZE)
    np.testing.assert_allclose(path.points, [[161 / 644, 238 / 476], [0.5, 0.75], [0.5, 0.25], [0.75, 0.25]])
    assert path.gripper.tolist() == [O, C, C, O]
    # Prose around the list, floats, no labels, labels of other words.
    path = parse_qwen_points('Here: [{"point_2d": [10.5, 20]}, {"point_2d": [30, 40], "label": "the cube"}] ok',
                             image_size=SIZE)
    assert len(path) == 2 and path.gripper.tolist() == [O, O]


@pytest.mark.parametrize("answer, reason", [
    ("no list here", "no JSON list"),
    ("[]", "no points"),
    ('[{"point_2d": [645, 10]}]', "outside the 644x476 image the model saw"),
    ('[{"point_2d": [-1, 10]}]', "outside"),
    ('[{"point_2d": [NaN, 10]}]', "finite number"),
    ('[{"point_2d": [Infinity, 10]}]', "finite number"),
    ('[{"point_2d": [true, 10]}]', "finite number"),
    ('[{"point_2d": ["10", 10]}]', "finite number"),
    ('[{"point_2d": [10, 10, 10]}]', "must be \\[x, y\\]"),
    ('[{"bbox_2d": [1, 2, 3, 4]}]', "not an object with point_2d"),
    ('[{"point_2d": [1, 2], "action": "rm -rf"}]', "unknown keys"),
    ('[{"point_2d": [1, 2], "label": 7}]', "label must be a string"),
    ('[{"point_2d": [1, 2], "label": "grasp"}, {"point_2d": [1, 2], "label": "release"}]', None),
    ("[" * 5000 + "]" * 5000, "nested too deeply|not an object"),
    ("[" * 900 + "1," * 9500, "no JSON list"),  # only the first 16 '[' are tried: never quadratic
    ('[' + ', '.join(['{"point_2d": [1, 2]}'] * 65) + ']', "more than max_points=64"),
    ("x" * 20_001, "limit is 20000"),
])
def test_qwen_points_are_strict(answer, reason):
    if reason is None:  # grasp then release on consecutive points: a valid path
        assert parse_qwen_points(answer, image_size=SIZE).gripper.tolist() == [C, O]
        return
    with pytest.raises(PathParseError, match=reason):
        parse_qwen_points(answer, image_size=SIZE)


def test_molmo_points_are_read_in_percent_with_gripper_labels():
    path = parse_molmo_points(MOLMO_ANSWER)
    np.testing.assert_allclose(path.points, [[0.25, 0.5], [0.5, 0.75], [0.5, 0.25], [0.755, 0.25]])
    assert path.gripper.tolist() == [O, C, C, O]  # <points>' label applies to its last point
    path = parse_molmo_points('Sure. <point x="10" y="90">grasp</point>')  # no alt: the tag's text
    assert path.gripper.tolist() == [C]


@pytest.mark.parametrize("answer, reason", [
    ("no tags", "no <point>"),
    ('<point x="100.5" y="3">a</point>', "outside the image"),
    ('<point x="1e2" y="3">a</point>', "plain decimal"),
    ('<point x="nan" y="3">a</point>', "plain decimal"),
    ('<point x="５" y="3">a</point>', "plain decimal"),
    ('<point x="5">a</point>', "y must be"),
    ('<point x="5" y="5" onload="x">a</point>', "unknown attributes"),
    ('<point x="5" y="5" x="6">a</point>', "repeated"),
    ('<point x=5 y="5">a</point>', "malformed attributes"),
    ('<points x1="5" y1="5" x3="1" y3="1" alt="a">a</points>', "x2 must be"),
    ('<points alt="a">a</points>', "without x1"),
    ('<point x="1" y="1" alt="grasp">g</point><point x="1" y="1" alt="release">r</point>', None),
    ("".join(f'<point x="{i % 100}" y="1">m</point>' for i in range(65)), "more than max_points=64"),
])
def test_molmo_points_are_strict(answer, reason):
    if reason is None:
        assert parse_molmo_points(answer).gripper.tolist() == [C, O]
        return
    with pytest.raises(PathParseError, match=reason):
        parse_molmo_points(answer)


def test_formats_come_with_their_prompts():
    assert set(ANSWER_FORMATS) == {"hamster", "qwen_points", "molmo_points"}
    assert answer_format("qwen_points").prompt_template == QWEN_POINTS_PROMPT_TEMPLATE
    for template in (QWEN_POINTS_PROMPT_TEMPLATE, MOLMO_POINTS_PROMPT_TEMPLATE):
        assert "{instruction}" in template and "grasp" in template and "release" in template
    with pytest.raises(ValueError, match="answer_format must be one of hamster, qwen_points, molmo_points"):
        answer_format("llava")


@pytest.mark.parametrize("name, answer, template", [
    ("qwen_points", QWEN_ANSWER, QWEN_POINTS_PROMPT_TEMPLATE),
    ("molmo_points", MOLMO_ANSWER, MOLMO_POINTS_PROMPT_TEMPLATE),
])
def test_the_planner_asks_and_reads_in_the_chosen_format(name, answer, template):
    prompts = []
    with ChatServer(lambda chat: prompts.append(chat.prompt) or answer, model="m") as server:
        backend = VLM_BACKENDS.create("openai", base_url=server.base_url, model="m", retries=0, answer_format=name)
        image = np.zeros((SIZE[1], SIZE[0], 3), np.uint8)
        result = Planner(backend).plan(VlmRequest(image=image, instruction="put the cube in the bowl"))
        assert prompts == [template.replace("{instruction}", "put the cube in the bowl")]
        assert result.path.gripper.tolist() == [O, C, C, O]
    with pytest.raises(ValueError, match="answer_format"):
        VLM_BACKENDS.create("openai", answer_format="json")


def test_a_hamster_answer_is_rejected_by_the_point_formats():
    with ChatServer(lambda chat: "<ans>[(0.1, 0.2), (0.3, 0.4)]</ans>", model="m") as server:
        for name in ("qwen_points", "molmo_points"):
            backend = VLM_BACKENDS.create("openai", base_url=server.base_url, model="m", retries=0, answer_format=name)
            with pytest.raises(PlanError) as error:
                Planner(backend).plan(VlmRequest(image=np.zeros((48, 64, 3), np.uint8), instruction="x"))
            assert error.value.stage == "parse"
