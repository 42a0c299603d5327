"""Grounding mode (RoboGround): the instruction split into target and placement phrases, the perception
stack's detector and segmenter run once on a frame. Tiny random checkpoints: the real loading and code paths."""
import numpy as np
import pytest

from hamster_core.chat_server import ChatServer
from hamster_core.instruction import GROUNDING_PROMPT_TEMPLATE, PLACEMENT_LABEL, TARGET_LABEL
from hamster_core.tiny_checkpoints.perception import build_grounding_dino, build_sam
from hamster_core.vlm import VLM_BACKENDS
from hamster_vlm_node.grounding import Grounder, GroundingError, PhraseExtractor

INSTRUCTION = "pick up the red cube and put it in the blue bowl"


@pytest.fixture(scope="module")
def grounder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny_grounding")
    # Zero thresholds: the random detector's best box per phrase is always kept.
    return Grounder(detector="grounding_dino", detector_checkpoint=str(build_grounding_dino(folder)),
                    segmenter="sam", segmenter_checkpoint=str(build_sam(folder)), box_threshold=0.0,
                    text_threshold=0.0)


def test_grounds_target_and_placement_with_masks_of_the_image_size(grounder):
    rgb = np.random.default_rng(0).integers(0, 256, size=(120, 160, 3), dtype=np.uint8)
    detections, timing = grounder.ground(rgb, INSTRUCTION, stamp=1.0)
    by_label = {d.label: d for d in detections}
    assert set(by_label) == {TARGET_LABEL, PLACEMENT_LABEL}
    assert by_label[TARGET_LABEL].phrase == "red cube" and by_label[PLACEMENT_LABEL].phrase == "blue bowl"
    for detection in detections:
        assert detection.mask.shape == (120, 160) and detection.mask.dtype == bool
        x, y, width, height = detection.box
        assert 0 <= x and 0 <= y and x + width <= 160 and y + height <= 120
    assert timing["grounding_sec"] > 0 and "grounding_detect_ms" in timing
    assert "grounding_dino:" in grounder.model_id and "+sam:" in grounder.model_id


def test_an_instruction_without_target_and_placement_is_a_grounding_error(grounder):
    with pytest.raises(GroundingError, match="not a pick-and-place instruction"):
        grounder.ground(np.zeros((60, 80, 3), np.uint8), "wave hello")


def language_model(answer):
    """A chat server answering `answer` (a function of the prompt) and an openai backend asking it."""
    server = ChatServer(lambda chat: answer(chat.prompt), model="m").start()
    return server, VLM_BACKENDS.create("openai", base_url=server.base_url, model="m", retries=0,
                                       gripper_position=True)


def test_phrases_come_from_the_language_model_as_strict_json(grounder):
    prompts = []
    server, backend = language_model(lambda prompt: prompts.append(prompt) or
                                     '```json\n{"target": "the crimson block", "placement": "the dish"}\n```')
    try:
        rgb = np.zeros((60, 80, 3), np.uint8)
        extractor = PhraseExtractor(backend)
        instruction = "Put the crimson block, which is on the left, onto the dish"
        assert extractor.phrases(rgb, instruction) == ({TARGET_LABEL: "crimson block", PLACEMENT_LABEL: "dish"},
                                                       {"phrases_from": "model"})
        # The grounding question in its own words, without the path prompt's gripper line.
        assert prompts == [GROUNDING_PROMPT_TEMPLATE.replace("{instruction}", instruction)]
        grounder.phrases = extractor  # as Grounder(backend, ...) sets it up
        try:
            detections, timing = grounder.ground(rgb, instruction)
        finally:
            grounder.phrases = PhraseExtractor(None)
        assert {d.phrase for d in detections} <= {"crimson block", "dish"} and timing["phrases_from"] == "model"
    finally:
        server.stop()


def test_phrases_fall_back_to_the_rules_when_the_model_answers_anything_else():
    server, backend = language_model(lambda prompt: "The target is the cube.")
    try:
        rgb = np.zeros((60, 80, 3), np.uint8)
        queries, source = PhraseExtractor(backend).phrases(rgb, "put the pot in the sink and close the tap")
        assert queries == {TARGET_LABEL: "pot", PLACEMENT_LABEL: "sink"} and source["phrases_from"] == "rules"
        assert "exactly one JSON object" in source["phrases_model_error"]
        with pytest.raises(GroundingError, match="the model gave no grounding phrases"):
            PhraseExtractor(backend, "model").phrases(rgb, "put the pot in the sink")
        assert PhraseExtractor(backend, "rules").backend is None
    finally:
        server.stop()
    # A backend that takes no prompts (the oracle) or none at all: the rules.
    assert PhraseExtractor(None).phrases(None, "put the cup on the plate")[1] == {"phrases_from": "rules"}
    with pytest.raises(ValueError, match="needs a backend that takes prompts"):
        PhraseExtractor(None, "model")
    with pytest.raises(ValueError, match="auto, model, rules"):
        PhraseExtractor(None, "llm")


def test_unknown_or_bad_options_name_the_value(tmp_path):
    with pytest.raises(ValueError, match="detector_chekpoint"):
        Grounder(detector_chekpoint="x")
    with pytest.raises(ValueError, match="needs a checkpoint"):
        Grounder(detector="grounding_dino", detector_checkpoint="")
    with pytest.raises(ValueError, match="nope"):
        Grounder(detector="nope")


@pytest.mark.graph
@pytest.mark.slow  # the node with tiny models (~10 s)
def test_node_in_masks_mode_publishes_latched_grounding_masks_and_status(tmp_path):
    """The VLM node as a real process, mode masks: one grounding on the first frame after the instruction. With the
    phrases from the rules no VLM is loaded: a transformers backend whose checkpoint does not exist is never built
    (the node used to load it for nothing, and here exit on it)."""
    import json
    import time

    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from sensor_msgs.msg import Image
    from std_msgs.msg import String

    from hamster_msgs.msg import GroundingMasks
    from hamster_ros import interfaces as t
    from hamster_ros.conversions import numpy_to_image
    from hamster_apps.graph import CONFIG_DIR, NodeSpec
    from hamster_apps.runner import GraphRunner, ros_environment
    from hamster_ros.spinner import BackgroundSpinner

    spec = NodeSpec("hamster_vlm_node", "hamster_vlm_node", "hamster_vlm_node.node", (str(CONFIG_DIR / "runtime.yaml"),),
                    {"use_sim_time": False, "mode": "masks", "grounding.phrases": "rules",
                     "backend": "transformers", "transformers.checkpoint": str(tmp_path / "no_vlm_here"),
                     "grounding.detector_checkpoint": str(build_grounding_dino(tmp_path)),
                     "grounding.segmenter_checkpoint": str(build_sam(tmp_path)),
                     "grounding.box_threshold": 0.0, "grounding.text_threshold": 0.0})
    context = rclpy.Context()
    rclpy.init(context=context)
    node = Node("grounding_test", context=context)
    received, statuses = [], []
    node.create_subscription(GroundingMasks, t.GROUNDING, received.append, t.LATCHED)
    node.create_subscription(String, t.VLM_STATUS, lambda m: statuses.append(json.loads(m.data)), t.LATCHED)
    image_pub = node.create_publisher(Image, t.COLOR_IMAGE, t.SENSOR)
    instruction_pub = node.create_publisher(String, t.INSTRUCTION, t.LATCHED)
    pixels = np.random.default_rng(1).integers(0, 256, size=(60, 80, 3), dtype=np.uint8)

    def publish_image():
        msg = numpy_to_image(pixels, "rgb8")
        msg.header.stamp = node.get_clock().now().to_msg()
        image_pub.publish(msg)
    node.create_timer(0.1, publish_image)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    spinner = BackgroundSpinner(executor)
    with GraphRunner([spec], tmp_path / "logs", ros_environment()) as runner:
        try:
            instruction_pub.publish(String(data=INSTRUCTION))
            deadline = time.monotonic() + 90
            while not (received and statuses and statuses[-1]["state"] == "ok") and time.monotonic() < deadline:
                assert not runner.exited(), runner.log_tail("hamster_vlm_node")
                time.sleep(0.1)
            assert received, runner.log_tail("hamster_vlm_node")
            masks = received[-1]
            assert list(masks.labels) == [TARGET_LABEL, PLACEMENT_LABEL]
            assert list(masks.phrases) == ["red cube", "blue bowl"]
            assert all((m.height, m.width, m.encoding) == (60, 80, "mono8") for m in masks.masks)
            status = statuses[-1]
            assert status["state"] == "ok" and status["instruction"] == INSTRUCTION
            assert "grounding_sec" in status["timing"] and "grounding_dino" in status["model_id"]
            assert status["timing"]["phrases_from"] == "rules" and "no_vlm_here" not in status["model_id"]
        finally:
            assert spinner.stop(), "the spin thread did not stop"
            node.destroy_node()
            context.try_shutdown()


def test_runtime_yaml_documents_every_grounding_option_with_its_default():
    import yaml

    from hamster_apps.graph import CONFIG_DIR
    from hamster_vlm_node.grounding import GROUNDING_PARAMETERS
    section = yaml.safe_load((CONFIG_DIR / "runtime.yaml").read_text())["hamster_vlm_node"]["ros__parameters"]
    assert section["mode"] == "path"
    assert section["grounding"] == {name: default for name, (default, _) in GROUNDING_PARAMETERS.items()}


def test_target_motion_fires_once_past_the_threshold_then_takes_a_new_reference():
    from hamster_vlm_node.target_motion import TargetMotion
    monitor = TargetMotion(0.1)

    def square_at(x):
        mask = np.zeros((100, 100), bool)
        mask[40:50, x:x + 10] = True
        return mask
    assert monitor.moved(square_at(10)) is None          # the reference
    assert monitor.moved(square_at(15)) is None          # 0.05 of the image: not past 0.1
    assert monitor.moved(np.zeros((100, 100), bool)) is None  # hidden says nothing
    assert monitor.moved(square_at(25)) == pytest.approx(0.15)
    assert monitor.moved(square_at(25)) is None          # new reference after firing
    with pytest.raises(ValueError, match="-1"):
        TargetMotion(-1)


@pytest.mark.graph
@pytest.mark.slow  # the node with tiny models (~10 s)
def test_node_in_both_mode_publishes_the_path_when_grounding_fails(tmp_path):
    """mode both: the phrases are asked of the VLM (which answers no JSON) and the rules find none in the
    instruction, so there are no masks; the path is published all the same, the status saying why no masks."""
    import json
    import os

    from std_msgs.msg import String

    from hamster_apps.graph import CONFIG_DIR, NodeSpec
    from hamster_apps.runner import GraphRunner, ros_environment
    from hamster_ros import interfaces as t
    from vlm_harness import Harness
    from waiting import wait_until

    instruction = "open the top drawer"
    path_answer = "<ans>[(0.20, 0.30), <action>Close Gripper</action>, (0.60, 0.40)]</ans>"
    prompts = []

    def answer(chat):
        prompts.append(chat.prompt)
        return "I would rather not say." if "Answer with one JSON object" in chat.prompt else path_answer
    server = ChatServer(answer, model="m").start()
    spec = NodeSpec("hamster_vlm_node", "hamster_vlm_node", "hamster_vlm_node.node",
                    (str(CONFIG_DIR / "runtime.yaml"),),
                    {"use_sim_time": False, "mode": "both", "backend": "openai", "openai.base_url": server.base_url,
                     "openai.model": "m", "openai.retries": 0,
                     "grounding.detector_checkpoint": str(build_grounding_dino(tmp_path)),
                     "grounding.segmenter_checkpoint": str(build_sam(tmp_path))})
    domain = 60 + (os.getpid() + 7) % 30
    runner = GraphRunner([spec], tmp_path / "logs", ros_environment(domain))
    runner.start()
    harness = Harness(domain)
    try:
        publisher = harness.node.create_publisher(String, t.INSTRUCTION, t.LATCHED)
        publisher.publish(String(data=instruction))
        status = wait_until(lambda: next((s for s in harness.statuses if s["state"] in ("ok", "failed")), None)
                            or runner.exited(), "the VLM's answer", timeout=90)
        assert not runner.exited(), runner.log_tail("hamster_vlm_node")
        assert status["state"] == "ok", status
        assert status["message"].startswith("path with 2 points (2 in the answer); no masks: not a pick-and-place")
        assert "not a pick-and-place instruction" in status["timing"]["grounding_error"]
        assert [path.instruction for path in harness.paths] == [instruction]
        assert sum("Answer with one JSON object" in prompt for prompt in prompts) == 1  # the phrases were asked
    finally:
        harness.close()
        runner.stop()
        server.stop()
