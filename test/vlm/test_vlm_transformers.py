"""The `transformers` backend on a tiny random LLaVA checkpoint built offline: real from_pretrained, real
generate(); the answers are gibberish, so the planner must say that they do not parse."""
import shutil

import numpy as np
import pytest

from hamster_core.tiny_checkpoints.vlm import IMAGE_TOKEN, build_tiny_vlm
from hamster_core.vlm import VLM_BACKENDS, VlmRequest
from hamster_vlm_node.planner import PlanError, Planner, planner_from_config

IMAGE = np.random.default_rng(1).integers(0, 256, (60, 80, 3), dtype=np.uint8)
REQUEST = VlmRequest(image=IMAGE, instruction="pick up the red cube and put it in the blue bowl")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return build_tiny_vlm(tmp_path_factory.mktemp("tiny_vlm"))


@pytest.fixture(scope="module")
def backend(checkpoint):
    return VLM_BACKENDS.create("transformers", checkpoint=str(checkpoint), max_new_tokens=24)


def test_checkpoint_loads_once_and_generates_text(backend, checkpoint, tmp_path):
    assert backend.model_id == f"transformers:{checkpoint}"
    assert backend.model.config.model_type == "llava" and not backend.model.training
    # Loaded once: queries work without the files (a copy is moved away and back to keep the fixture).
    moved = tmp_path / "moved"
    shutil.move(str(checkpoint), moved)
    try:
        first = backend.query(REQUEST)
        second = backend.query(REQUEST)
    finally:
        shutil.move(str(moved), str(checkpoint))
    assert isinstance(first, str) and first == second   # greedy decoding is deterministic
    assert 1 <= backend.last_call["new_tokens"] <= 24
    assert backend.last_call["generate_sec"] > 0


def test_prompt_goes_through_the_chat_template_with_the_image(backend, checkpoint):
    text = backend.model_text("PROMPT")
    assert text == f"<s>user: {IMAGE_TOKEN}\nPROMPT\nassistant: "
    plain = VLM_BACKENDS.create("transformers", checkpoint=str(checkpoint), use_chat_template=False)
    assert plain.model_text("PROMPT") == f"{IMAGE_TOKEN}\nPROMPT"
    assert isinstance(plain.query(REQUEST), str)


def test_random_answers_are_reported_as_parse_failures(backend):
    with pytest.raises(PlanError) as error:
        Planner(backend).plan(REQUEST)
    assert error.value.stage == "parse" and "not a valid path" in str(error.value)
    assert error.value.answer is not None and error.value.timing["query_sec"] > 0


def test_sampling_options_reach_generate(checkpoint):
    sampled = planner_from_config({"backend": "transformers", "transformers.checkpoint": str(checkpoint),
                                   "transformers.do_sample": True, "transformers.temperature": 0.7,
                                   "transformers.top_p": 0.9, "transformers.max_new_tokens": 8})
    assert sampled.backend.generation["temperature"] == 0.7 and sampled.backend.generation["do_sample"]
    with pytest.raises(PlanError):
        sampled.plan(REQUEST)
    assert sampled.backend.last_call["new_tokens"] <= 8


@pytest.mark.parametrize("options, reason", [
    ({"checkpoint": ""}, "checkpoint"),
    ({"checkpoint": "/nonexistent/folder"}, "cannot load .*'/nonexistent/folder'"),
    ({"dtype": "int8"}, "dtype"),
    ({"max_new_tokens": 0}, "max_new_tokens"),
    ({"temperature": 0.0}, "temperature"),
    ({"top_p": 1.5}, "top_p"),
    ({"do_sample": "no"}, "do_sample"),
    ({"device": "warp-drive"}, "device 'warp-drive'"),
    ({"prompt_template": "{task}"}, "\\{instruction\\}"),
])
def test_constructor_rejects_bad_options_by_name(checkpoint, options, reason):
    with pytest.raises(ValueError, match=reason):
        VLM_BACKENDS.create("transformers", **{"checkpoint": str(checkpoint), **options})
