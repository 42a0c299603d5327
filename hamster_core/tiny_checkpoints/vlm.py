"""A tiny LLaVA image-text-to-text checkpoint (CLIP vision tower + Llama decoder), built offline.

LLaVA is the simplest family here: a slow (PIL) CLIP image processor that needs no torchvision, a fixed number
of image tokens, and a plain causal decoder. The tokenizer is a byte-level BPE trained on the spot on HAMSTER
prompts and answers, so both tokenize into few tokens and every text round-trips. The processor carries a
small chat template, so the backend's chat-template path runs as with a real checkpoint.

`build_tiny_vlm` writes a randomly initialised model (its answers are gibberish); `build_trained_tiny_vlm`
then fine-tunes it for a few hundred steps to answer every HAMSTER prompt with one fixed path, so a demo
shows a real generate() call whose answer parses.

    python -m hamster_core.tiny_checkpoints.vlm OUT_DIR [--trained]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hamster_core.path2d import GRIPPER_POSITION_LINE, HAMSTER_PROMPT_TEMPLATE, build_prompt

SEED = 0
IMAGE_SIZE = 32          # the vision tower sees 32 x 32 images: 16 patches of 8 x 8
PATCH_SIZE = 8
IMAGE_TOKEN = "<image>"
SPECIAL_TOKENS = ["<pad>", "<s>", "</s>", "<unk>", IMAGE_TOKEN]
CHAT_TEMPLATE = (
    "{% for message in messages %}<s>{{ message['role'] }}: "
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] %}{% if part['type'] == 'image' %}<image>\n"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}{% endfor %}{% endif %}{{ '\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}assistant: {% endif %}"
)
# The answer the trained checkpoint gives: reach, grasp, lift, move right, release.
FIXED_ANSWER = ("<ans>[(0.50, 0.20), (0.40, 0.55), <action>Close Gripper</action>, (0.42, 0.35), (0.65, 0.40), "
                "<action>Open Gripper</action>]</ans>")


def _training_texts() -> list[str]:
    """What the tokenizer should compress well: the prompt, answers and instructions of the simulator."""
    import random

    rng = random.Random(SEED)
    texts = [HAMSTER_PROMPT_TEMPLATE, GRIPPER_POSITION_LINE, FIXED_ANSWER, CHAT_TEMPLATE]
    for _ in range(200):
        points = ", ".join(f"({rng.random():.2f}, {rng.random():.2f})" for _ in range(rng.randint(2, 8)))
        texts.append(f"<ans>[{points}, <action>Close Gripper</action>, <action>Open Gripper</action>]</ans>")
    colors = "red green blue yellow purple orange".split()
    shapes = "cube cylinder sphere block bowl plate box".split()
    for _ in range(100):
        texts.append(f"pick up the {rng.choice(colors)} {rng.choice(shapes)} and put it in the "
                     f"{rng.choice(colors)} {rng.choice(shapes)}")
    return texts


def build_tokenizer(vocab_size: int = 600, special_tokens=None, tokenizer_class: str | None = None, **named):
    """A byte-level BPE (every string encodes, decoding restores it) trained on HAMSTER texts. LLaVA's tokens
    by default; another family passes its `special_tokens` (ids 0.. in order) and named ones (bos_token=...,
    extra_special_tokens={"image_token": ...}), and the class name its tokenizer_config.json carries."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    if special_tokens is None:
        special_tokens = SPECIAL_TOKENS
        named = dict(bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>",
                     extra_special_tokens={"image_token": IMAGE_TOKEN}, **named)
    tokenizer = Tokenizer(models.BPE(unk_token=None))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(special_tokens), show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(_training_texts(), trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, model_max_length=2048, **named)
    if tokenizer_class:
        fast.init_kwargs["tokenizer_class"] = tokenizer_class
    return fast


def _config(tokenizer):
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig

    vision = CLIPVisionConfig(image_size=IMAGE_SIZE, patch_size=PATCH_SIZE, hidden_size=32, intermediate_size=64,
                              num_hidden_layers=1, num_attention_heads=2, projection_dim=32)
    text = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                       bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                       pad_token_id=tokenizer.pad_token_id)
    return LlavaConfig(vision_config=vision, text_config=text,
                       image_token_id=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
                       vision_feature_select_strategy="default", vision_feature_layer=-1)


def _processor(tokenizer):
    from transformers import CLIPImageProcessorPil, LlavaProcessor

    image_processor = CLIPImageProcessorPil(size={"shortest_edge": IMAGE_SIZE},
                                            crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
    return LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=PATCH_SIZE,
                          vision_feature_select_strategy="default", chat_template=CHAT_TEMPLATE,
                          image_token=IMAGE_TOKEN, num_additional_image_tokens=1)  # the CLS token


def build_tiny_vlm(out_dir) -> Path:
    """A ~0.2M-parameter random LlavaForConditionalGeneration with its processor, in OUT_DIR. Seeded."""
    import torch
    from transformers import LlavaForConditionalGeneration

    path = Path(out_dir)
    path.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(SEED)
    tokenizer = build_tokenizer()
    model = LlavaForConditionalGeneration(_config(tokenizer)).eval()
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(path)
    _processor(tokenizer).save_pretrained(path)
    return path


def build_trained_tiny_vlm(out_dir, steps: int = 300, answer: str = FIXED_ANSWER) -> Path:
    """The tiny LLaVA fine-tuned to answer HAMSTER prompts (any instruction, any image) with `answer`."""
    return train_to_answer(build_tiny_vlm(out_dir), steps, answer)


def train_to_answer(path, steps: int = 300, answer: str = FIXED_ANSWER, lr: float = 3e-3) -> Path:
    """Fine-tunes the image-text-to-text checkpoint in `path` (any family the backend loads) to answer HAMSTER
    prompts with `answer`, and saves it back.

    Trains on random images and the simulator's kinds of instructions; the loss covers the answer tokens
    and the end-of-sequence token only. Under a minute on one CPU thread for the tiny models (README, "VLM
    backends")."""
    import random

    import numpy as np
    import torch
    from PIL import Image
    from transformers import AutoModelForImageTextToText

    from hamster_core.vlm_loading import load_processor

    path = Path(path)
    processor = load_processor(str(path))
    model = AutoModelForImageTextToText.from_pretrained(path)
    model.train()
    rng = random.Random(SEED)
    generator = np.random.default_rng(SEED)
    colors = "red green blue yellow purple orange".split()
    shapes = "cube cylinder sphere block bowl plate box".split()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    answer_ids = processor.tokenizer(answer + processor.tokenizer.eos_token, add_special_tokens=False,
                                     return_tensors="pt")["input_ids"]
    batch = 4
    for step in range(steps):
        texts, images = [], []
        for _ in range(batch):
            instruction = (f"pick up the {rng.choice(colors)} {rng.choice(shapes)} and put it in the "
                           f"{rng.choice(colors)} {rng.choice(shapes)}")
            messages = [{"role": "user", "content": [{"type": "image"},
                                                     {"type": "text", "text": build_prompt(instruction)}]}]
            texts.append(processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False))
            images.append(Image.fromarray(generator.integers(0, 256, (48, 64, 3), dtype=np.uint8)))
        inputs = processor(images=images, text=texts, return_tensors="pt", padding=True)
        prompt_ids, prompt_mask = inputs["input_ids"], inputs["attention_mask"]
        # Left-aligned prompts of different lengths: put each answer right after its own prompt.
        lengths = prompt_mask.sum(dim=1)
        total = int(lengths.max()) + answer_ids.shape[1]
        pad = processor.tokenizer.pad_token_id
        input_ids = torch.full((batch, total), pad, dtype=torch.long)
        labels = torch.full((batch, total), -100, dtype=torch.long)
        attention = torch.zeros((batch, total), dtype=torch.long)
        for row in range(batch):
            n = int(lengths[row])
            prompt = prompt_ids[row][prompt_mask[row].bool()]
            input_ids[row, :n] = prompt
            input_ids[row, n:n + answer_ids.shape[1]] = answer_ids[0]
            labels[row, n:n + answer_ids.shape[1]] = answer_ids[0]
            attention[row, :n + answer_ids.shape[1]] = 1
        # The image inputs as the processor gave them (pixel values, and e.g. Qwen's image_grid_thw).
        images_inputs = {key: value for key, value in inputs.items()
                         if key not in ("input_ids", "attention_mask", "token_type_ids", "mm_token_type_ids")}
        loss = model(input_ids=input_ids, attention_mask=attention, labels=labels, **images_inputs).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    model.save_pretrained(path)
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--trained", action="store_true",
                        help="fine-tune it to answer a fixed HAMSTER path (about a minute)")
    parser.add_argument("--steps", type=int, default=300, help="fine-tuning steps with --trained")
    args = parser.parse_args(argv)
    path = build_trained_tiny_vlm(args.out_dir, args.steps) if args.trained else build_tiny_vlm(args.out_dir)
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
