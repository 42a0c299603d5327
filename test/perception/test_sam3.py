"""The `sam3` detector (transformers Sam3Model: a text prompt -> instances) on a tiny random checkpoint built
offline: loading, preprocessing and post-processing as transformers' own (torchvision-only) processor does them,
pinned from its source, and the detector chosen by parameter in the pipeline. Scores and boxes are
meaningless with random weights; their form is not."""
import inspect
from pathlib import Path

import numpy as np
import pytest

from hamster_core.perception.backend import PerceptionFrame
from hamster_core.perception.pipeline import build_pipeline
from hamster_core.perception.stages import DETECTORS, ModelLoadError
from hamster_core.tiny_checkpoints.perception import SAM3_PREPROCESSOR, build_sam, build_sam3


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return str(build_sam3(tmp_path_factory.mktemp("tiny")))


def test_preprocessing_and_scoring_follow_transformers_sam3():
    import transformers.models.sam3 as sam3
    folder = Path(inspect.getfile(sam3))
    image_processor = (folder.parent / "image_processing_sam3.py").read_text()
    assert 'size = {"height": 1008, "width": 1008}' in image_processor
    assert "image_mean = IMAGENET_STANDARD_MEAN" in image_processor and "image_std = IMAGENET_STANDARD_STD" in image_processor
    assert "batch_scores = batch_scores * presence_scores" in image_processor   # score = logits x presence
    assert "Boxes are already in xyxy format" in image_processor
    from transformers.image_utils import IMAGENET_STANDARD_MEAN, IMAGENET_STANDARD_STD
    assert SAM3_PREPROCESSOR["image_mean"] == list(IMAGENET_STANDARD_MEAN) == [0.5] * 3
    assert SAM3_PREPROCESSOR["image_std"] == list(IMAGENET_STANDARD_STD)
    processor = (folder.parent / "processing_sam3.py").read_text()
    assert 'padding="max_length", max_length=32' in processor


def test_one_box_per_found_label_inside_the_image(checkpoint):
    detector = DETECTORS.create("sam3", checkpoint=checkpoint, threshold=0.0)
    rgb = np.random.default_rng(2).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    long = "the big red ceramic mug with a chipped handle next to the wooden chair by the window " * 3
    found = detector.detect(PerceptionFrame(0.0, rgb), {"target_object": "red cube", "placement_area": long})
    assert set(found) == {"target_object", "placement_area"}     # threshold 0: the best instance of each
    for detection in found.values():
        x0, y0, x1, y1 = detection.box
        assert 0 <= x0 < x1 <= 160 and 0 <= y0 < y1 <= 120 and 0.0 < detection.score <= 1.0
    assert detector.forward_ms > 0
    assert DETECTORS.create("sam3", checkpoint=checkpoint, threshold=1.0).detect(
        PerceptionFrame(0.0, rgb), {"target_object": "red cube"}) == {}


def test_chosen_by_parameter_and_bad_checkpoints_named(checkpoint, tmp_path):
    pipeline = build_pipeline(detector="sam3", detector_checkpoint=checkpoint, segmenter="box", box_threshold=0.0)
    pipeline.set_queries({"target_object": "red cube"})
    output = pipeline.process(PerceptionFrame(0.0, np.full((120, 160, 3), 100, np.uint8)))
    assert output.reason == "new_queries" and output.states["target_object"].value == "detected"
    with pytest.raises(ModelLoadError, match="holds a 'sam' model"):
        DETECTORS.create("sam3", checkpoint=str(build_sam(tmp_path)))
    with pytest.raises(ValueError, match="sam3 needs a checkpoint"):
        build_pipeline(detector="sam3", segmenter="box")
