"""Fuzzing of every parser that reads external text or bytes: 100,000+ generated inputs in total.

Mutation-based and seeded (a failure names the input that caused it): valid inputs are mutated with the
characters and edits that matter to each format, plus pure noise. The contract for every parser: it returns
something valid or raises its documented error (a ValueError subclass); it never crashes with anything else,
and it never accepts something invalid.
"""
import numpy as np
import pytest
import yaml
from sensor_msgs.msg import Image, PointCloud2, PointField

from hamster_core.answer_formats import parse_molmo_points, parse_qwen_points
from hamster_core.instruction import parse_pick_place_instruction
from hamster_core.path2d import Path2D, PathParseError, format_hamster_answer, parse_hamster_answer
from hamster_core.geometry import Pose
from hamster_bag.bag_episode import BagError, TopicMapping, _custom_data
from hamster_ros.conversions import ConversionError, image_to_numpy, pointcloud2_to_numpy
from hamster_apps.graph import CONFIG_DIR
from hamster_apps.graph import _remappings
from hamster_sim.ground_truth import decode_scene_payload

ANSWER_INPUTS = 60_000
POINT_ANSWER_INPUTS = 12_000  # per point format
INSTRUCTION_INPUTS = 10_000
SCENE_INPUTS = 8_000
IMAGE_INPUTS = 8_000
CLOUD_INPUTS = 8_000
REMAP_INPUTS = 6_000
MAPPING_INPUTS = 3_000
METADATA_INPUTS = 2_000
assert (ANSWER_INPUTS + 2 * POINT_ANSWER_INPUTS + INSTRUCTION_INPUTS + SCENE_INPUTS + IMAGE_INPUTS + CLOUD_INPUTS
        + REMAP_INPUTS + MAPPING_INPUTS + METADATA_INPUTS) >= 100_000

# Characters that matter to the answer grammar, and look-alikes a model or an attacker may produce.
ANSWER_ALPHABET = list("()<>[],./ -+eE0123456789\n\t") + ["ans", "action", "Open Gripper", "Close Gripper", "nan",
                                                        "inf", "1e309", "٣", "１", "\x00", "__import__('os')"]


def mutate(text: str, rng: np.random.Generator, alphabet: list[str]) -> str:
    for _ in range(rng.integers(1, 6)):
        position = int(rng.integers(0, len(text) + 1))
        edit = rng.integers(0, 5)
        if edit == 0:      # insert
            text = text[:position] + str(rng.choice(alphabet)) + text[position:]
        elif edit == 1:    # delete a span
            text = text[:position] + text[position + int(rng.integers(1, 8)):]
        elif edit == 2:    # duplicate a span
            span = text[position:position + int(rng.integers(1, 40))]
            text = text[:position] + span * int(rng.integers(1, 4)) + text[position:]
        elif edit == 3:    # truncate
            text = text[:position]
        else:              # replace a character
            text = text[:position] + str(rng.choice(alphabet)) + text[position + 1:]
    return text


def random_answer(rng) -> str:
    points = rng.uniform(0, 1, size=(int(rng.integers(1, 12)), 2))
    gripper = rng.integers(0, 2, size=len(points)).astype(np.uint8)
    text = format_hamster_answer(Path2D(points, gripper), decimals=int(rng.integers(1, 4)))
    return str(rng.choice(["", "Sure! ", "The path is: "])) + text + str(rng.choice(["", " Done.", "\n"]))


def check_answer(text: str, max_points: int, image_size) -> None:
    try:
        path = parse_hamster_answer(text, max_points=max_points, image_size=image_size)
    except PathParseError:
        return
    points = path.points
    assert 1 <= len(points) <= max_points, text
    assert np.all(np.isfinite(points)) and np.all((points >= 0) & (points <= 1)), text
    assert set(np.unique(path.gripper).tolist()) <= {0, 1}, text
    # Whatever was accepted reads back the same after formatting: the parse kept no hidden state.
    again = parse_hamster_answer(format_hamster_answer(path, decimals=12), max_points=max_points)
    assert np.allclose(again.points, points, atol=1e-9) and np.array_equal(again.gripper, path.gripper), text


# The first chunk (2,000 answers) is part of `make test-fast`; all 30 chunks (60,000) run in `make test`.
@pytest.mark.parametrize("chunk", [0] + [pytest.param(chunk, marks=pytest.mark.slow) for chunk in range(1, 30)])
def test_answer_parser_survives_mutated_and_random_answers(chunk):
    rng = np.random.default_rng(1000 + chunk)
    for _ in range(ANSWER_INPUTS // 30):
        kind = rng.random()
        if kind < 0.8:
            text = mutate(random_answer(rng), rng, ANSWER_ALPHABET)
        elif kind < 0.95:
            text = "".join(str(c) for c in rng.choice(ANSWER_ALPHABET, size=int(rng.integers(0, 60))))
        else:
            text = "<ans>[" + "(0.5, 0.5), " * int(rng.integers(0, 200)) + "]</ans>"
        image_size = None if rng.random() < 0.5 else (int(rng.integers(1, 2000)), int(rng.integers(1, 2000)))
        check_answer(text, int(rng.integers(1, 65)), image_size)


# The point formats (answer_formats): look-alikes and the characters that matter to JSON and to Molmo's tags.
POINT_ALPHABET = list('[]{}:,"<>/=. -+eE0123456789\n') + ["point_2d", "label", "grasp", "release", "NaN", "Infinity",
                                                          "true", "null", "point", "points", "x1", "alt", "1e309",
                                                          "٣", "\x00", "[[[[[[[["]


def random_qwen_answer(rng) -> str:
    entries = [{"point_2d": [int(x), int(y)], "label": str(rng.choice(["move", "grasp", "release"]))}
               for x, y in rng.integers(0, 29, size=(int(rng.integers(1, 10)), 2))]  # inside any resized image
    import json
    return str(rng.choice(["", "```json\n", "Points: "])) + json.dumps(entries) + str(rng.choice(["", "\n```"]))


def random_molmo_answer(rng) -> str:
    tags = []
    for _ in range(int(rng.integers(1, 6))):
        label = str(rng.choice(["move", "grasp", "release"]))
        if rng.random() < 0.7:
            x, y = rng.uniform(0, 100, 2)
            tags.append(f'<point x="{x:.1f}" y="{y:.1f}" alt="{label}">{label}</point>')
        else:
            coords = rng.uniform(0, 100, size=(int(rng.integers(1, 4)), 2))
            attributes = " ".join(f'x{i + 1}="{x:.1f}" y{i + 1}="{y:.1f}"' for i, (x, y) in enumerate(coords))
            tags.append(f'<points {attributes} alt="{label}">{label}</points>')
    return " ".join(tags)


@pytest.mark.parametrize("parser, generate", [(parse_qwen_points, random_qwen_answer),
                                              (parse_molmo_points, random_molmo_answer)])
@pytest.mark.parametrize("chunk", [0] + [pytest.param(chunk, marks=pytest.mark.slow) for chunk in range(1, 6)])
def test_point_format_parsers_survive_mutated_and_random_answers(parser, generate, chunk):
    rng = np.random.default_rng(5000 + chunk)
    outcomes = {"accepted": 0, "rejected": 0}
    for _ in range(POINT_ANSWER_INPUTS // 6):
        kind = rng.random()
        if kind < 0.85:
            text = mutate(generate(rng), rng, POINT_ALPHABET)
        else:
            text = "".join(str(c) for c in rng.choice(POINT_ALPHABET, size=int(rng.integers(0, 80))))
        max_points = int(rng.integers(1, 65))
        image_size = (int(rng.integers(28, 2000)), int(rng.integers(28, 2000)))
        try:
            path = parser(text, max_points=max_points, image_size=image_size)
        except PathParseError:
            outcomes["rejected"] += 1
            continue
        outcomes["accepted"] += 1
        assert 1 <= len(path) <= max_points, text
        assert np.all(np.isfinite(path.points)) and np.all((path.points >= 0) & (path.points <= 1)), text
        assert set(np.unique(path.gripper).tolist()) <= {0, 1}, text
    assert min(outcomes.values()) > 50, outcomes  # the fuzzer reaches both outcomes


def test_instruction_parser_survives_mutations():
    rng = np.random.default_rng(7)
    base = ["pick up the red cube and put it in the blue bowl", "Pick the green cylinder and place it on the tray."]
    alphabet = list(" .!andputitintheon") + ["pick", "up", "and", "put it in", "\n", "\x00", "the"]
    for _ in range(INSTRUCTION_INPUTS):
        text = mutate(str(rng.choice(base)), rng, alphabet)
        try:
            target, placement = parse_pick_place_instruction(text)
        except ValueError:
            continue
        for phrase in (target, placement):
            assert phrase and phrase == " ".join(phrase.split()) and phrase == phrase.lower(), text


def test_scene_payload_decoder_survives_mutations():
    from hamster_sim.scene import sample_scene
    from hamster_sim.ground_truth import encode_scene_payload
    scene = sample_scene(3)
    valid = encode_scene_payload(scene, {obj.name: i + 1 for i, obj in enumerate(scene.objects)})
    rng = np.random.default_rng(11)
    alphabet = list('{}[]":,0123456789.-e ') + ["null", "true", "NaN", "Infinity", '"segmentation_ids"']
    accepted = 0
    for _ in range(SCENE_INPUTS):
        text = mutate(valid, rng, alphabet)
        try:
            decoded, ids = decode_scene_payload(text)
        except ValueError:
            continue
        accepted += 1
        assert all(isinstance(k, str) and isinstance(v, int) for k, v in ids.items()), text
    assert accepted > 0  # mutations that only touch whitespace or numbers still decode


def random_image(rng) -> Image:
    msg = Image()
    msg.encoding = str(rng.choice(["rgb8", "bgr8", "mono8", "16UC1", "32FC1", "rgba8", "8UC3", "32FC9", "jpeg", ""]))
    msg.height, msg.width = int(rng.integers(0, 6)), int(rng.integers(0, 6))
    msg.step = int(rng.integers(0, 40))
    msg.is_bigendian = bool(rng.random() < 0.3)
    msg.data = bytes(rng.integers(0, 256, size=int(rng.integers(0, 200)), dtype=np.uint8))
    return msg


def test_image_decoder_survives_random_messages():
    rng = np.random.default_rng(13)
    decoded = 0
    for _ in range(IMAGE_INPUTS):
        msg = random_image(rng)
        if rng.random() < 0.3 and msg.height and msg.step:  # make the length consistent, so decoding proceeds
            msg.data = bytes(msg.step * msg.height)
        try:
            array = image_to_numpy(msg)
        except ConversionError:
            continue
        decoded += 1
        assert array.shape[:2] == (msg.height, msg.width)
    assert decoded > 0


def random_cloud(rng) -> PointCloud2:
    msg = PointCloud2()
    names = list(rng.choice(["x", "y", "z", "rgb", "rgba", "intensity", "x"], size=int(rng.integers(0, 6))))
    if rng.random() < 0.5:
        names = ["x", "y", "z"] + names
    msg.fields = [PointField(name=str(name), offset=int(rng.integers(0, 24)), datatype=int(rng.integers(0, 10)),
                             count=1) for name in names]
    msg.height, msg.width = int(rng.integers(0, 4)), int(rng.integers(0, 6))
    msg.point_step = int(rng.integers(0, 32))
    msg.row_step = msg.point_step * msg.width + int(rng.integers(0, 3)) * int(rng.random() < 0.3)
    size = msg.row_step * msg.height if rng.random() < 0.7 else int(rng.integers(0, 200))
    raw = rng.integers(0, 256, size=size, dtype=np.uint8)
    if rng.random() < 0.3:  # sprinkle NaN and inf float patterns
        floats = raw[: size - size % 4].view(np.float32)
        floats[rng.random(len(floats)) < 0.3] = rng.choice([np.nan, np.inf, -np.inf])
    msg.data = raw.tobytes()
    msg.is_bigendian = bool(rng.random() < 0.3)
    return msg


def test_pointcloud_decoder_survives_random_messages():
    rng = np.random.default_rng(17)
    decoded = 0
    for _ in range(CLOUD_INPUTS):
        msg = random_cloud(rng)
        try:
            points, colors = pointcloud2_to_numpy(msg)
        except ConversionError:
            continue
        decoded += 1
        assert points.dtype == np.float32 and points.ndim == 2 and points.shape[1] == 3
        assert np.all(np.isfinite(points))  # non-finite points never reach a policy
        assert colors is None or colors.shape == points.shape
    assert decoded > 0


@pytest.mark.slow  # 6,000 files written and read back (seconds); the other readers run in make test-fast
def test_remapping_file_reader_survives_mutations(tmp_path):
    valid = "/robot/cartesian_target: /cartesian_impedance_controller/equilibrium_pose\n/robot/ee_pose: /ee\n"
    rng = np.random.default_rng(19)
    alphabet = list(":/-_ \n\t[]{}'\"&*!|>#%@") + ["null", "!!python/object:os.system", "- a", "? x"]
    path = tmp_path / "remaps.yaml"
    for _ in range(REMAP_INPUTS):
        path.write_text(mutate(valid, rng, alphabet))
        try:
            remaps = _remappings(path)
        except (ValueError, yaml.YAMLError):
            continue
        assert all(isinstance(a, str) and isinstance(b, str) for a, b in remaps)


YAML_ALPHABET = list(":/-_ \n\t[]{},'\"&*!|>#%@.0123456789") + [
    "null", "true", "no", "!!python/object:os.system", "- a", "? x", "nan", "1e999", "topics:", "camera_pose:",
    "gripper_joint_names:", "ignore_distortion:", "position:", "orientation:"]


@pytest.mark.slow  # 3,000 files written and read back (seconds); the other readers run in make test-fast
def test_bag_topic_mapping_reader_survives_mutations(tmp_path):
    valid = (CONFIG_DIR / "bag_topics_realsense_franka.yaml").read_text()
    rng = np.random.default_rng(29)
    path = tmp_path / "mapping.yaml"
    for _ in range(MAPPING_INPUTS):
        text = mutate(valid, rng, YAML_ALPHABET)
        path.write_text(text)
        try:
            mapping = TopicMapping.load(path)
        except BagError:
            continue
        assert all(isinstance(k, str) and k.startswith("/") and isinstance(v, str) and v.startswith("/")
                   for k, v in mapping.topics.items()), text
        assert mapping.camera_pose is None or isinstance(mapping.camera_pose, Pose), text
        assert mapping.gripper_joint_names and all(isinstance(j, str) and j for j in mapping.gripper_joint_names), \
            text
        assert isinstance(mapping.ignore_distortion, bool), text


@pytest.mark.slow  # 2,000 files written and read back (seconds); the other readers run in make test-fast
def test_bag_metadata_reader_survives_mutations(tmp_path):
    valid = yaml.safe_dump({"rosbag2_bagfile_information": {
        "version": 9, "storage_identifier": "mcap", "duration": {"nanoseconds": 1000},
        "custom_data": {"instruction": "pick up the red cube and put it in the blue bowl", "success": "true",
                        "vlm_backend": "oracle"}}})
    rng = np.random.default_rng(31)
    for _ in range(METADATA_INPUTS):
        text = mutate(valid, rng, YAML_ALPHABET)
        (tmp_path / "metadata.yaml").write_text(text)
        custom = _custom_data(tmp_path)  # never raises: a bag without usable custom_data has none
        assert isinstance(custom, dict) and all(isinstance(k, str) and isinstance(v, str)
                                                for k, v in custom.items()), text


def test_fuzzer_mutations_do_reach_both_outcomes():
    """Guards the fuzzer itself: its answers must be accepted and rejected in meaningful numbers."""
    rng = np.random.default_rng(23)
    outcomes = {"accepted": 0, "rejected": 0}
    for _ in range(2000):
        try:
            parse_hamster_answer(mutate(random_answer(rng), rng, ANSWER_ALPHABET))
            outcomes["accepted"] += 1
        except PathParseError:
            outcomes["rejected"] += 1
    assert min(outcomes.values()) > 50, outcomes
