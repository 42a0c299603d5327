"""The transformers detector and segmenter stages on tiny random checkpoints: real loading, pre/post-processing
and forward passes (outputs are meaningless, their shapes and ranges are not)."""
import hashlib

import numpy as np
import pytest

from hamster_core.tiny_checkpoints.perception import build_all, build_sam
from hamster_core.perception.backend import PerceptionFrame
from hamster_core.perception.stages import DETECTORS, SEGMENTERS, ModelLoadError

QUERIES = {"target_object": "red cube", "placement_area": "blue bowl", "extra": "green cylinder"}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    return build_all(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def image():
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)
    rgb[100:150, 60:120] = (220, 30, 30)
    return rgb


def _assert_boxes_in_image(found, width, height):
    assert set(found) <= set(QUERIES)
    for detection in found.values():
        x0, y0, x1, y1 = detection.box
        assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height
        assert 0.0 <= detection.score <= 1.0


@pytest.mark.parametrize("name, thresholds", [("grounding_dino", {"box_threshold": 0.0, "text_threshold": 0.0}),
                                              ("owlv2", {"threshold": 0.0})])
def test_detectors_give_one_box_per_label_inside_the_image(checkpoints, image, name, thresholds):
    detector = DETECTORS.create(name, checkpoint=str(checkpoints[name]), **thresholds)
    found = detector.detect(PerceptionFrame(0.0, image), QUERIES)
    assert found, "with zero thresholds the tiny model must return boxes"
    _assert_boxes_in_image(found, 320, 240)
    assert detector.forward_ms > 0
    # A non-square, wider image: boxes scale to it.
    wide = np.ascontiguousarray(np.concatenate([image, image], axis=1))
    _assert_boxes_in_image(detector.detect(PerceptionFrame(0.0, wide), QUERIES), 640, 240)
    assert detector.detect(PerceptionFrame(0.0, image), {}) == {}


def test_detector_thresholds_filter_and_are_validated(checkpoints, image):
    strict = DETECTORS.create("grounding_dino", checkpoint=str(checkpoints["grounding_dino"]), box_threshold=1.0)
    assert strict.detect(PerceptionFrame(0.0, image), QUERIES) == {}
    with pytest.raises(ValueError, match="box_threshold.*1.5"):
        DETECTORS.create("grounding_dino", checkpoint=str(checkpoints["grounding_dino"]), box_threshold=1.5)
    with pytest.raises(ValueError, match="threshold.*-0.1"):
        DETECTORS.create("owlv2", checkpoint=str(checkpoints["owlv2"]), threshold=-0.1)
    with pytest.raises(ValueError, match="device 'tpu:9'"):
        DETECTORS.create("owlv2", checkpoint=str(checkpoints["owlv2"]), device="tpu:9")


@pytest.mark.parametrize("name", ["grounding_dino", "owlv2", "sam", "sam2"])
def test_a_checkpoint_that_does_not_load_is_named(tmp_path, checkpoints, name):
    registry = DETECTORS if name in ("grounding_dino", "owlv2") else SEGMENTERS
    with pytest.raises(ModelLoadError, match=f"{name}.*{tmp_path / 'missing'}"):
        registry.create(name, checkpoint=str(tmp_path / "missing"))
    other = "sam" if name != "sam" else "owlv2"  # a real checkpoint of another family
    with pytest.raises(ModelLoadError, match=str(checkpoints[other])):
        registry.create(name, checkpoint=str(checkpoints[other]))


@pytest.mark.parametrize("name", ["sam", "sam2"])
def test_segmenters_embed_the_image_once_for_all_boxes(checkpoints, image, name):
    segmenter = SEGMENTERS.create(name, checkpoint=str(checkpoints[name]))
    calls = []
    segmenter.model.vision_encoder.register_forward_hook(lambda *args: calls.append(1))
    boxes = {"a": (60.0, 100.0, 120.0, 150.0), "b": (0.0, 0.0, 320.0, 240.0), "c": (200.5, 10.2, 250.7, 90.9)}
    results = segmenter.segment(image, boxes)
    assert len(calls) == 1
    assert set(results) == set(boxes)
    for result in results.values():
        assert result.mask.shape == (240, 320) and result.mask.dtype == bool
        assert 0.0 <= result.score <= 1.0
    segmenter.segment(image, {"a": boxes["a"]})
    assert len(calls) == 2
    assert segmenter.segment(image, {}) == {}


def test_segment_anything_without_the_package_names_the_checkpoint(tmp_path):
    checkpoint = tmp_path / "sam_vit_b_01ec64.pth"
    with pytest.raises(ModelLoadError, match="segment_anything.*sam_vit_b_01ec64.pth.*torchvision"):
        SEGMENTERS.create("segment_anything", checkpoint=str(checkpoint))


def test_tiny_checkpoints_are_deterministic(tmp_path):
    first, second = build_sam(tmp_path / "one"), build_sam(tmp_path / "two")
    digest = [hashlib.sha256((path / "model.safetensors").read_bytes()).hexdigest() for path in (first, second)]
    assert digest[0] == digest[1]


LONG = "the very big shiny red ceramic coffee mug with a chipped handle standing next to the old wooden chair " * 4


@pytest.mark.parametrize("name, thresholds", [("grounding_dino", {"box_threshold": 0.0, "text_threshold": 0.0}),
                                              ("owlv2", {"threshold": 0.0})])
def test_phrases_longer_than_the_text_model_are_cut_not_fatal(checkpoints, image, name, thresholds):
    """Issue 20: a long phrase failed in the text encoder (Grounding DINO's max_text_len, OWLv2's 16 tokens)."""
    detector = DETECTORS.create(name, checkpoint=str(checkpoints[name]), **thresholds)
    found = detector.detect(PerceptionFrame(0.0, image), {"target_object": LONG, "placement_area": "blue bowl"})
    _assert_boxes_in_image(found, 320, 240)
    assert found


def test_fit_phrases_shares_the_token_budget(checkpoints):
    from transformers import AutoProcessor
    from perception_node.detectors import fit_phrases
    tokenizer = AutoProcessor.from_pretrained(str(checkpoints["grounding_dino"])).tokenizer
    assert fit_phrases(["red cube", "blue bowl"], tokenizer, 64) == ["red cube", "blue bowl"]
    cut = fit_phrases([LONG.strip(), "blue bowl"], tokenizer, 64)
    assert cut[1] == "blue bowl" and LONG.startswith(cut[0]) and len(cut[0]) < len(LONG)
    text = ". ".join(cut) + "."
    assert len(tokenizer(text)["input_ids"]) <= 64
    with pytest.raises(ValueError, match="do not fit"):
        fit_phrases(["a"] * 40, tokenizer, 64)
