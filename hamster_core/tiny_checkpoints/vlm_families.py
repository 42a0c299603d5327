"""Tiny random image-text-to-text checkpoints of the families labs use, built offline, laid out as the real
folders on the hub are: config.json + generation_config.json + model.safetensors, tokenizer.json +
tokenizer_config.json with the family's special tokens and tokenizer class, preprocessor_config.json with the
family's image processor type and keys, and the chat template where the family ships one (chat_template.json).
No video processor config: the real Qwen2-VL / Qwen2.5-VL / SmolVLM releases carry none either, and building
one needs torchvision.

The weights are random (answers are gibberish); what these test is that the `transformers` backend loads each
family's folder and runs generate() end to end on this venv (no torchvision). `--trained` then fine-tunes it to
answer every HAMSTER prompt with one fixed path (tiny_checkpoints.vlm.train_to_answer; Qwen2.5-VL: 150 steps,
~30 s on one CPU thread), so the answer parses.

    python -m hamster_core.tiny_checkpoints.vlm_families FAMILY OUT_DIR [--trained [--steps N]]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from hamster_core.tiny_checkpoints.vlm import SEED, build_tiny_vlm, build_tokenizer, train_to_answer

# Qwen2-VL / Qwen2.5-VL's chat template (the one their releases ship in chat_template.json).
QWEN2_VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}<|im_start|>system\n"
    "You are a helpful assistant.<|im_end|>\n{% endif %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n{% else %}"
    "{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}Picture {{ image_count.value }}: "
    "{% endif %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
QWEN_SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
                       "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
                       "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>"]

# SmolVLM's chat template (SmolVLM-256M/500M-Instruct).
SMOLVLM_CHAT_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{message['role'] | capitalize}}"
    "{% if message['content'][0]['type'] == 'image' %}{{':'}}{% else %}{{': '}}{% endif %}"
    "{% for line in message['content'] %}{% if line['type'] == 'text' %}{{line['text']}}"
    "{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}<end_of_utterance>\n{% endfor %}"
    "{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)
SMOLVLM_SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<fake_token_around_image>", "<image>",
                          "<end_of_utterance>", "<global-img>"] + \
    [f"<row_{row}_col_{col}>" for row in range(1, 7) for col in range(1, 7)]

PALIGEMMA_SPECIAL_TOKENS = ["<pad>", "<eos>", "<bos>", "<unk>", "<image>"] + [f"<loc{i:04d}>" for i in range(16)]
FLORENCE2_SPECIAL_TOKENS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>", "<image>", "<OD>", "</OD>"]

CLIP_MEAN, CLIP_STD = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n")


def _save(model, tokenizer, path: Path, preprocessor: dict, chat_template: str | None = None,
          processor_config: dict | None = None) -> Path:
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    _write_json(path / "preprocessor_config.json", preprocessor)
    if chat_template is not None:
        _write_json(path / "chat_template.json", {"chat_template": chat_template})
    if processor_config is not None:
        _write_json(path / "processor_config.json", processor_config)
    return path


def _qwen(path: Path, version: str) -> Path:
    import transformers

    tokenizer = build_tokenizer(700, QWEN_SPECIAL_TOKENS, "Qwen2Tokenizer", eos_token="<|im_end|>",
                                pad_token="<|endoftext|>")
    ids = tokenizer.convert_tokens_to_ids
    prefix = "Qwen2_5_VL" if version == "2.5" else "Qwen2VL"
    text = dict(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
                rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": [2, 3, 3]},
                bos_token_id=ids("<|endoftext|>"), eos_token_id=ids("<|im_end|>"))
    vision = dict(depth=1, hidden_size=32, intermediate_size=64, num_heads=2, patch_size=14, spatial_merge_size=2,
                  temporal_patch_size=2)
    if version == "2.5":
        vision.update(out_hidden_size=64, window_size=56, fullatt_block_indexes=[0])
    else:
        vision.update(embed_dim=32, mlp_ratio=2, hidden_size=64)
    config = getattr(transformers, f"{prefix}Config")(
        text_config=text, vision_config=vision, image_token_id=ids("<|image_pad|>"),
        video_token_id=ids("<|video_pad|>"), vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"))
    model = getattr(transformers, f"{prefix}ForConditionalGeneration")(config).eval()
    # The released preprocessor_config.json: Qwen2.5-VL reuses Qwen2-VL's image processor. Few pixels here.
    preprocessor = {"image_processor_type": "Qwen2VLImageProcessor", "processor_class": f"{prefix}Processor",
                    "do_convert_rgb": True, "do_normalize": True, "do_rescale": True, "do_resize": True,
                    "image_mean": CLIP_MEAN, "image_std": CLIP_STD, "rescale_factor": 1 / 255,
                    "min_pixels": 56 * 56, "max_pixels": 112 * 112, "patch_size": 14, "temporal_patch_size": 2,
                    "merge_size": 2}
    return _save(model, tokenizer, path, preprocessor, QWEN2_VL_CHAT_TEMPLATE)


def _smolvlm(path: Path) -> Path:
    from transformers import SmolVLMConfig, SmolVLMForConditionalGeneration

    tokenizer = build_tokenizer(700, SMOLVLM_SPECIAL_TOKENS, "GPT2Tokenizer", bos_token="<|im_start|>",
                                eos_token="<end_of_utterance>", pad_token="<|im_end|>", unk_token="<|endoftext|>",
                                extra_special_tokens={"fake_image_token": "<fake_token_around_image>",
                                                      "image_token": "<image>",
                                                      "end_of_utterance_token": "<end_of_utterance>",
                                                      "global_image_token": "<global-img>"})
    image_size, patch_size, scale_factor = 32, 8, 2
    config = SmolVLMConfig(
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                           image_size=image_size, patch_size=patch_size),
        text_config=dict(model_type="llama", vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=2048, pad_token_id=tokenizer.pad_token_id),
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"), scale_factor=scale_factor)
    model = SmolVLMForConditionalGeneration(config).eval()
    image_seq_len = (image_size // patch_size) ** 2 // scale_factor ** 2
    preprocessor = {"image_processor_type": "SmolVLMImageProcessor", "processor_class": "SmolVLMProcessor",
                    "do_convert_rgb": True, "do_image_splitting": False, "do_normalize": True, "do_pad": True,
                    "do_rescale": True, "do_resize": True, "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5],
                    "max_image_size": {"longest_edge": image_size}, "resample": 1, "rescale_factor": 1 / 255,
                    "size": {"longest_edge": image_size}}
    return _save(model, tokenizer, path, preprocessor, SMOLVLM_CHAT_TEMPLATE,
                 {"image_seq_len": image_seq_len, "processor_class": "SmolVLMProcessor"})


def _paligemma(path: Path) -> Path:
    from transformers import PaliGemmaConfig, PaliGemmaForConditionalGeneration

    tokenizer = build_tokenizer(700, PALIGEMMA_SPECIAL_TOKENS, "GemmaTokenizer", bos_token="<bos>",
                                eos_token="<eos>", pad_token="<pad>", unk_token="<unk>",
                                extra_special_tokens={"image_token": "<image>"})
    image_size, patch_size = 32, 8
    config = PaliGemmaConfig(
        vision_config=dict(model_type="siglip_vision_model", hidden_size=32, intermediate_size=64,
                           num_hidden_layers=1, num_attention_heads=2, image_size=image_size, patch_size=patch_size,
                           projection_dim=64, num_image_tokens=(image_size // patch_size) ** 2),
        text_config=dict(model_type="gemma", vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=1, head_dim=16,
                         max_position_embeddings=2048),
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"), projection_dim=64, hidden_size=64,
        vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id)
    model = PaliGemmaForConditionalGeneration(config).eval()
    preprocessor = {"image_processor_type": "SiglipImageProcessor", "processor_class": "PaliGemmaProcessor",
                    "do_normalize": True, "do_rescale": True, "do_resize": True, "image_mean": [0.5, 0.5, 0.5],
                    "image_std": [0.5, 0.5, 0.5], "image_seq_length": (image_size // patch_size) ** 2,
                    "resample": 3, "rescale_factor": 1 / 255, "size": {"height": image_size, "width": image_size}}
    return _save(model, tokenizer, path, preprocessor)


def _florence2(path: Path) -> Path:
    from transformers import Florence2Config, Florence2ForConditionalGeneration

    tokenizer = build_tokenizer(700, FLORENCE2_SPECIAL_TOKENS, "BartTokenizer", bos_token="<s>", eos_token="</s>",
                                pad_token="<pad>", unk_token="<unk>", mask_token="<mask>",
                                extra_special_tokens={"image_token": "<image>"})
    image_size = 32
    vision = dict(depths=[1], patch_size=[7], patch_stride=[4], patch_padding=[3], patch_prenorm=[False],
                  embed_dim=[32], num_heads=[2], num_groups=[2], window_size=4, projection_dim=64,
                  drop_path_rate=0.0, max_temporal_embeddings=4, max_position_embeddings=16)
    text = dict(vocab_size=len(tokenizer), d_model=64, encoder_layers=1, decoder_layers=1,
                encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=128, decoder_ffn_dim=128,
                max_position_embeddings=512, bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                decoder_start_token_id=tokenizer.eos_token_id, forced_eos_token_id=tokenizer.eos_token_id)
    config = Florence2Config(text_config=text, vision_config=vision,
                             image_token_id=tokenizer.convert_tokens_to_ids("<image>"))
    model = Florence2ForConditionalGeneration(config).eval()
    image_seq_len = (image_size // 4) ** 2 + 1  # one stage of stride 4, plus the pooled token
    preprocessor = {"image_processor_type": "CLIPImageProcessor", "processor_class": "Florence2Processor",
                    "do_center_crop": False, "do_normalize": True, "do_rescale": True, "do_resize": True,
                    "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225], "resample": 3,
                    "rescale_factor": 1 / 255, "size": {"height": image_size, "width": image_size},
                    "crop_size": {"height": image_size, "width": image_size}, "image_seq_length": image_seq_len}
    return _save(model, tokenizer, path, preprocessor,
                 processor_config={"processor_class": "Florence2Processor", "num_additional_image_tokens": 0})


FAMILIES = {
    "llava": build_tiny_vlm,
    "qwen2_vl": lambda path: _qwen(path, "2"),
    "qwen2_5_vl": lambda path: _qwen(path, "2.5"),
    "smolvlm": _smolvlm,
    "paligemma": _paligemma,
    "florence2": _florence2,
}


def build_tiny_family(family: str, out_dir) -> Path:
    """A tiny random checkpoint of `family` (a key of FAMILIES) in OUT_DIR. Seeded."""
    import torch

    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; known: {', '.join(FAMILIES)}")
    path = Path(out_dir)
    path.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(SEED)
    return FAMILIES[family](path)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("family", choices=sorted(FAMILIES))
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--trained", action="store_true", help="fine-tune it to answer a fixed HAMSTER path")
    parser.add_argument("--steps", type=int, default=150, help="fine-tuning steps with --trained")
    args = parser.parse_args(argv)
    path = build_tiny_family(args.family, args.out_dir)
    print(train_to_answer(path, args.steps) if args.trained else path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
