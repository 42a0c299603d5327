"""`transformers`: a local image-text-to-text model (checkpoint folder or hub id) run in this process.

Loaded once, at construction, with the Auto classes (AutoProcessor + AutoModelForImageTextToText). Tested on tiny
checkpoints of LLaVA, Qwen2-VL, Qwen2.5-VL, SmolVLM, PaliGemma and Florence-2 laid out as their real folders
(hamster_core.tiny_checkpoints.vlm_families). Families whose processor bundles a video processor (Qwen2-VL,
Qwen2.5-VL, SmolVLM) need torchvision for it; without torchvision the processor is built from its image
processor (the PIL one) and tokenizer only, which is all a single-image query uses. Encoder-decoder models
(Florence-2) return only the decoder's tokens, so nothing is sliced off their answer.

The prompt goes through the processor's chat template when it has one (the image as a content part before the
text), else the image token goes in front of the prompt the way the family expects (Florence-2's and
PaliGemma's processors add their own). transformers and torch are imported only when this backend is
constructed, so the other backends do not pay for them.
"""
from __future__ import annotations

import math
import time
from pathlib import Path

from hamster_core.vlm import VLM_BACKENDS, PromptedBackend, VlmError, VlmRequest, excerpt
from hamster_core.vlm_loading import load_processor

# "" picks by device: bfloat16 on CUDA when the GPU supports it, else float32. "auto": the checkpoint's own dtype.
DTYPES = ("", "float32", "bfloat16", "float16", "auto")
# The prompt without a chat template, by model_type; others get "{image}\n{prompt}".
PLAIN_PROMPT_LAYOUT = {"florence2": "{prompt}", "paligemma": "{image}{prompt}"}
# Families the project's tests load (hamster_core.tiny_checkpoints.vlm_families); others may work.
TESTED_FAMILIES = ("llava", "qwen2_vl", "qwen2_5_vl", "smolvlm", "paligemma", "florence2")


class CheckpointError(ValueError):
    """The checkpoint cannot be loaded here; the message is one line."""


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def default_dtype(device) -> str:
    import torch

    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return "bfloat16"
    return "float32"


def check_image_text_to_text(source: str) -> None:
    """CheckpointError unless the checkpoint's config names a model family AutoModelForImageTextToText knows."""
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

    model_type = AutoConfig.from_pretrained(source).model_type
    if model_type not in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES:
        raise CheckpointError(f"{source!r} holds a {model_type!r} model, which is not image-text-to-text (tested "
                              f"families: {', '.join(TESTED_FAMILIES)})")


@VLM_BACKENDS.register("transformers")
class TransformersBackend(PromptedBackend):
    def __init__(self, checkpoint: str = "", device: str = "", dtype: str = "",
                 max_new_tokens: int = 128, do_sample: bool = False, num_beams: int = 1, temperature: float = 1.0,
                 top_p: float = 1.0, use_chat_template: bool = True, prompt_template: str = "",
                 gripper_position: bool = False, answer_format: str = "hamster"):
        super().__init__(prompt_template, gripper_position, answer_format)
        if not isinstance(checkpoint, str) or not checkpoint.strip():
            raise ValueError(f"checkpoint must be a checkpoint folder or hub id, got {checkpoint!r}")
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
        for name, value in (("max_new_tokens", max_new_tokens), ("num_beams", num_beams)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if not isinstance(temperature, (int, float)) or not math.isfinite(temperature) or temperature <= 0:
            raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
        if not isinstance(top_p, (int, float)) or not 0 < top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {top_p!r}")
        for name, value in (("do_sample", do_sample), ("use_chat_template", use_chat_template)):
            if not isinstance(value, bool):
                raise ValueError(f"{name} must be a bool, got {value!r}")

        import torch
        from transformers import AutoModelForImageTextToText

        try:
            self.device = torch.device(device or default_device())
        except (RuntimeError, TypeError) as error:
            raise ValueError(f"device {device!r} is not a torch device: {error}") from None
        dtype = dtype or default_dtype(self.device)
        local = Path(checkpoint).expanduser()
        source = str(local) if local.exists() else checkpoint
        started = time.monotonic()
        try:
            check_image_text_to_text(source)
            self.processor = load_processor(source)
            torch_dtype = "auto" if dtype == "auto" else getattr(torch, dtype)
            self.model = AutoModelForImageTextToText.from_pretrained(source, dtype=torch_dtype)
            self.model.to(self.device).eval()  # inference mode: dropout off
        except CheckpointError as error:
            raise CheckpointError(f"cannot load the image-text-to-text checkpoint {checkpoint!r}: {error}") from None
        except (OSError, ValueError, KeyError, RuntimeError, AssertionError, ImportError, TypeError,
                AttributeError) as error:  # CUDA missing: AssertionError; a half-written folder: anything
            # The usual causes: a wrong path, a hub id while offline, a model family that is not image-text-to-text.
            raise CheckpointError(f"cannot load the image-text-to-text checkpoint {checkpoint!r}: "
                                  f"{type(error).__name__}: {excerpt(str(error))}") from None
        self.load_sec = time.monotonic() - started
        self.checkpoint = checkpoint
        self.model_type = self.model.config.model_type
        self.encoder_decoder = bool(getattr(self.model.config, "is_encoder_decoder", False))
        self.use_chat_template = use_chat_template and bool(getattr(self.processor, "chat_template", None))
        self.generation = {"max_new_tokens": max_new_tokens, "do_sample": do_sample, "num_beams": num_beams}
        if do_sample:  # greedy decoding ignores these (and transformers warns when they are given)
            self.generation.update(temperature=float(temperature), top_p=float(top_p))
        tokenizer = getattr(self.processor, "tokenizer", None)
        if tokenizer is not None and tokenizer.pad_token_id is not None:
            self.generation["pad_token_id"] = tokenizer.pad_token_id
        self.model_id = f"transformers:{checkpoint}"
        self.last_call: dict = {}

    def model_text(self, prompt: str) -> str:
        """The text input for the processor: chat-templated, or the image token and the prompt."""
        if self.use_chat_template:
            messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
            return self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        image_token = getattr(self.processor, "image_token", None) or "<image>"
        layout = PLAIN_PROMPT_LAYOUT.get(self.model_type, "{image}\n{prompt}")
        return layout.replace("{image}", image_token).replace("{prompt}", prompt)

    def query(self, request: VlmRequest) -> str:
        import torch
        from PIL import Image

        text = self.model_text(self.prompt(request))
        started = time.monotonic()
        try:
            inputs = self.processor(images=Image.fromarray(request.image), text=text, return_tensors="pt")
            # Floating inputs (pixel values) in the model's dtype, token ids stay integers.
            inputs = inputs.to(self.device, dtype=self.model.dtype)
            with torch.inference_mode():
                output = self.model.generate(**inputs, **self.generation)
            # A decoder-only model returns the prompt and the answer, an encoder-decoder one the answer alone.
            new_tokens = output if self.encoder_decoder else output[:, inputs["input_ids"].shape[1]:]
            answer = self.processor.batch_decode(new_tokens, skip_special_tokens=True)[0]
        except (RuntimeError, ValueError, TypeError, IndexError) as error:
            raise VlmError(f"{self.model_id} generate failed: {type(error).__name__}: {excerpt(str(error))}") \
                from error
        self.last_call = {"generate_sec": time.monotonic() - started, "new_tokens": int(new_tokens.shape[1])}
        return answer
