"""The `transformers` backend on tiny random checkpoints of each family labs use, laid out as the real folders
(hamster_core.tiny_checkpoints.vlm_families), on this venv without torchvision: real from_pretrained, real
generate(). The answers are gibberish, so the planner must report them as parse failures (hamster-plan exit 4)."""
import json
import shutil
import time

import cv2
import numpy as np
import pytest

from hamster_apps import plan as plan_cli
from hamster_core.tiny_checkpoints.vlm_families import FAMILIES, build_tiny_family
from hamster_core.vlm import VLM_BACKENDS, VlmRequest
from hamster_vlm_node.planner import PlanError, Planner

IMAGE = np.random.default_rng(1).integers(0, 256, (60, 80, 3), dtype=np.uint8)
REQUEST = VlmRequest(image=IMAGE, instruction="pick up the red cube and put it in the blue bowl")
# model_type of each family's config, as on the hub
MODEL_TYPES = {"llava": "llava", "qwen2_vl": "qwen2_vl", "qwen2_5_vl": "qwen2_5_vl", "smolvlm": "smolvlm",
               "paligemma": "paligemma", "florence2": "florence2"}
WITH_VIDEO_PROCESSOR = {"qwen2_vl", "qwen2_5_vl", "smolvlm"}  # bundled by their processors; needs torchvision


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    return {family: build_tiny_family(family, tmp_path_factory.mktemp(family)) for family in FAMILIES}


def test_the_venv_has_no_torchvision():
    from transformers.utils import is_torchvision_available
    assert not is_torchvision_available()  # what the images-only processors are for


def test_folders_are_laid_out_as_the_released_ones(folders):
    for family, folder in folders.items():
        names = {path.name for path in folder.iterdir()}
        # (the LLaVA builder saves its processor with save_pretrained: one processor_config.json)
        preprocessor = "processor_config.json" if family == "llava" else "preprocessor_config.json"
        assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", preprocessor} <= names, \
            family
        assert json.loads((folder / "config.json").read_text())["model_type"] == MODEL_TYPES[family]
        assert "video_preprocessor_config.json" not in names
    qwen = json.loads((folders["qwen2_5_vl"] / "preprocessor_config.json").read_text())
    assert qwen["image_processor_type"] == "Qwen2VLImageProcessor" and qwen["processor_class"] == "Qwen2_5_VLProcessor"
    tokens = json.loads((folders["qwen2_5_vl"] / "tokenizer.json").read_text())["added_tokens"]
    assert {"<|vision_start|>", "<|image_pad|>", "<|vision_end|>", "<|im_start|>", "<|im_end|>"} <= \
        {token["content"] for token in tokens}


@pytest.mark.parametrize("family", list(FAMILIES))
def test_each_family_loads_and_generates_without_torchvision(folders, family):
    backend = VLM_BACKENDS.create("transformers", checkpoint=str(folders[family]), max_new_tokens=12)
    assert backend.model_type == MODEL_TYPES[family] and not backend.model.training
    assert str(backend.device) == "cpu" and str(backend.model.dtype) == "torch.float32"  # no CUDA here
    assert not hasattr(backend.processor, "video_processor")
    family_attributes = type(backend.processor).__mro__[1 if family in WITH_VIDEO_PROCESSOR else 0].get_attributes()
    assert ("video_processor" in family_attributes) == (family in WITH_VIDEO_PROCESSOR)
    started = time.perf_counter()
    first = backend.query(REQUEST)
    elapsed = time.perf_counter() - started
    assert isinstance(first, str) and backend.query(REQUEST) == first  # greedy: deterministic
    assert 1 <= backend.last_call["new_tokens"] <= 12
    print(f"{family}: {elapsed * 1000:.0f} ms per query")  # bench/bench_vlm_families.py keeps the figures
    with pytest.raises(PlanError) as error:
        Planner(backend).plan(REQUEST)
    assert error.value.stage == "parse" and error.value.answer is not None


def test_prompts_follow_each_familys_template(folders):
    text = {family: VLM_BACKENDS.create("transformers", checkpoint=str(folder)).model_text("PROMPT")
            for family, folder in folders.items() if family != "llava"}
    assert text["qwen2_5_vl"] == ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
                                  "<|vision_start|><|image_pad|><|vision_end|>PROMPT<|im_end|>\n"
                                  "<|im_start|>assistant\n")
    assert text["qwen2_vl"] == text["qwen2_5_vl"]
    assert text["smolvlm"] == "<|im_start|>User:<image>PROMPT<end_of_utterance>\nAssistant:"
    assert text["paligemma"] == "<image>PROMPT"   # the processor adds <bos> and the newline
    assert text["florence2"] == "PROMPT"          # the processor adds the image token itself


def test_encoder_decoder_answers_are_not_sliced_by_the_prompt_length(folders):
    import torch
    from PIL import Image
    backend = VLM_BACKENDS.create("transformers", checkpoint=str(folders["florence2"]), max_new_tokens=12)
    assert backend.encoder_decoder
    inputs = backend.processor(images=Image.fromarray(IMAGE), text=backend.model_text(backend.prompt(REQUEST)),
                               return_tensors="pt")
    with torch.inference_mode():
        output = backend.model.generate(**inputs, **backend.generation)
    # The decoder's sequence is shorter than the prompt: slicing it by the prompt length would leave nothing.
    assert output.shape[1] < inputs["input_ids"].shape[1]
    assert backend.query(REQUEST) == backend.processor.batch_decode(output, skip_special_tokens=True)[0]
    assert backend.last_call["new_tokens"] == output.shape[1]


def test_a_copied_qwen_folder_answers_through_hamster_plan_with_exit_4(folders, tmp_path, capsys):
    folder = shutil.copytree(folders["qwen2_5_vl"], tmp_path / "Qwen2.5-VL-tiny")
    image = tmp_path / "scene.png"
    cv2.imwrite(str(image), IMAGE)
    code = plan_cli.main(["--image", str(image), "--instruction", "put the cube in the bowl", "--backend",
                          "transformers", "--checkpoint", str(folder), "--max-new-tokens", "8"])
    err = capsys.readouterr().err
    assert code == plan_cli.EXIT_PARSE, err
    assert "parse failed" in err and "Traceback" not in err and "Loading weights" not in err


@pytest.mark.slow  # fine-tunes the tiny Qwen2.5-VL for 150 steps (~30 s)
def test_a_trained_qwen_folder_answers_a_path_through_hamster_plan_with_exit_0(tmp_path, capsys):
    from hamster_core.tiny_checkpoints.vlm import FIXED_ANSWER, train_to_answer
    folder = train_to_answer(build_tiny_family("qwen2_5_vl", tmp_path / "qwen"), steps=150)
    image = tmp_path / "scene.png"
    cv2.imwrite(str(image), np.random.default_rng(5).integers(0, 256, (48, 64, 3), dtype=np.uint8))
    capsys.readouterr()
    code = plan_cli.main(["--image", str(image), "--instruction", "pick up the red cube and put it in the blue bowl",
                          "--backend", "transformers", "--checkpoint", str(folder), "--max-new-tokens", "64"])
    out, err = capsys.readouterr()
    assert code == 0, err
    result = json.loads(out)
    assert result["answer"] == FIXED_ANSWER and result["gripper"] == [0, 1, 1, 0]
    assert result["model_id"] == f"transformers:{folder}"


def test_an_unsupported_folder_is_one_line_and_exit_2(tmp_path, capsys):
    from transformers import GPT2Config, GPT2LMHeadModel
    GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=50, bos_token_id=0, eos_token_id=0)) \
        .save_pretrained(tmp_path / "gpt2")
    with pytest.raises(ValueError) as error:
        VLM_BACKENDS.create("transformers", checkpoint=str(tmp_path / "gpt2"))
    assert "cannot load the image-text-to-text checkpoint" in str(error.value) and "\n" not in str(error.value)
    assert "holds a 'gpt2' model, which is not image-text-to-text" in str(error.value)
    assert len(str(error.value)) < 500
    image = tmp_path / "scene.png"
    cv2.imwrite(str(image), IMAGE)
    capsys.readouterr()  # the save's progress bar
    code = plan_cli.main(["--image", str(image), "--instruction", "go", "--backend", "transformers",
                          "--checkpoint", str(tmp_path / "gpt2")])
    err = capsys.readouterr().err
    assert code == plan_cli.EXIT_USAGE and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_device_and_dtype_defaults():
    import torch
    from hamster_vlm_node.backends.transformers_vlm import default_device, default_dtype
    assert default_device() == ("cuda" if torch.cuda.is_available() else "cpu")
    assert default_dtype(torch.device("cpu")) == "float32"
