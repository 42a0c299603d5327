"""Detectors: `grounding_dino` and `owlv2` (transformers, any checkpoint folder or hub id). The simulator's
`sim_ground_truth` detector lives with the simulator (hamster_sim.ground_truth_perception)."""
from __future__ import annotations

import re

import numpy as np

from hamster_core.perception.backend import PerceptionFrame
from hamster_core.perception.stages import (DETECTORS, BoxDetection, Detector, ModelLoadError, Stopwatch,
                                            check_checkpoint, check_rgb, check_threshold, clip_box, torch_device)


def load_pretrained(kind: str, checkpoint: str, load):
    """`load(checkpoint)` with every failure turned into one ModelLoadError naming the checkpoint."""
    check_checkpoint(kind, checkpoint)
    try:
        return load(checkpoint)
    except Exception as error:  # missing files, wrong model type, offline hub, corrupt weights, ...
        raise ModelLoadError(f"cannot load the {kind} checkpoint {checkpoint!r}: {type(error).__name__}: "
                             f"{str(error).strip().splitlines()[0] if str(error).strip() else ''}") from error


def load_model(kind: str, checkpoint: str, model_class, model_types: tuple[str, ...]):
    """`model_class.from_pretrained(checkpoint)` after checking the checkpoint's model_type: transformers loads
    a checkpoint of another family with a warning and random weights, which must be an error here."""
    from transformers import AutoConfig
    config = load_pretrained(kind, checkpoint, AutoConfig.from_pretrained)
    if config.model_type not in model_types:
        raise ModelLoadError(f"the {kind} checkpoint {checkpoint!r} holds a {config.model_type!r} model, not "
                             f"{' or '.join(repr(t) for t in model_types)}")
    return load_pretrained(kind, checkpoint, model_class.from_pretrained)


IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


class PlainPreprocessing:
    """A plain resize to the checkpoint's size and mean/std normalisation, read from its preprocessor_config.json
    (`defaults` where it says nothing): what SAM 2's and SAM 3's image processors do. transformers implements
    those processors with torchvision only, and no working torchvision exists for this torch."""

    def __init__(self, kind: str, checkpoint: str, size: int = 1024, **defaults):
        config = load_pretrained(kind, checkpoint, self._read)
        config = {**defaults, **config}
        side = config.get("size", {"height": size, "width": size})
        self.size = (int(side.get("height", side.get("longest_edge", size))),
                     int(side.get("width", side.get("longest_edge", size))))
        self.mean = np.array(config["image_mean"], np.float32)
        self.std = np.array(config["image_std"], np.float32)
        self.rescale = float(config.get("rescale_factor", 1 / 255))

    @staticmethod
    def _read(checkpoint: str) -> dict:
        import json
        from pathlib import Path
        local = Path(checkpoint) / "preprocessor_config.json"
        if local.is_file():
            return json.loads(local.read_text())
        from huggingface_hub import hf_hub_download
        return json.loads(Path(hf_hub_download(checkpoint, "preprocessor_config.json")).read_text())

    def pixels(self, rgb: np.ndarray):
        """(3, height, width) float tensor of the image at the model's input size."""
        import cv2
        import torch
        resized = cv2.resize(rgb, (self.size[1], self.size[0]), interpolation=cv2.INTER_LINEAR).astype(np.float32)
        return torch.from_numpy(((resized * self.rescale - self.mean) / self.std).transpose(2, 0, 1))

    def scale(self, width: int, height: int) -> np.ndarray:
        """Multiplies (x0, y0, x1, y1) image pixels into model-input pixels."""
        return np.array([self.size[1] / width, self.size[0] / height] * 2, np.float32)


def _phrase_text(phrase: str) -> str:
    """Grounding DINO's prompt convention: lower case, phrases separated by ' . '."""
    text = re.sub(r"\s+", " ", phrase.lower().replace(".", " ")).strip()
    if not text:
        raise ValueError(f"empty query phrase {phrase!r}")
    return text


def fit_phrases(phrases: list[str], tokenizer, max_tokens: int) -> list[str]:
    """Phrases cut (at word-piece ends) so that 'p1. p2. ...' with its special tokens fits in `max_tokens`:
    Grounding DINO's text encoder has a fixed maximum length and fails on a longer prompt. Each phrase gets an
    equal share of the budget; shorter ones leave theirs to the rest."""
    budget = max_tokens - 2 - len(phrases)        # [CLS], [SEP] and one '.' per phrase
    pieces = [tokenizer(p, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"] for p in phrases]
    if sum(len(p) for p in pieces) <= budget:
        return phrases
    if budget < len(phrases):
        raise ValueError(f"{len(phrases)} phrases do not fit in the detector's {max_tokens}-token prompt")
    share, left = {}, budget
    for index in sorted(range(len(phrases)), key=lambda i: len(pieces[i])):
        share[index] = min(len(pieces[index]), left // (len(phrases) - len(share)))
        left -= share[index]
    return [phrase if share[i] >= len(pieces[i]) else phrase[:pieces[i][share[i] - 1][1]].strip()
            for i, phrase in enumerate(phrases)]


@DETECTORS.register("grounding_dino")
class GroundingDinoDetector(Detector):
    """All phrases in one prompt ("red cube. blue bowl."), one forward pass. A box's score for a phrase is the
    highest token probability inside that phrase's span (Grounding DINO's box score); a box goes to the phrase
    that scores it highest if that is above `text_threshold` and any token is above `box_threshold`. The
    processor's own post-processing decodes labels back to text, which cannot tell two phrases sharing words
    ("blue cube", "blue bowl") apart; token spans can."""

    def __init__(self, checkpoint: str, device: str = "cpu", box_threshold: float = 0.35,
                 text_threshold: float = 0.25):
        self.box_threshold = check_threshold("box_threshold", box_threshold)
        self.text_threshold = check_threshold("text_threshold", text_threshold)
        self.device = torch_device(device)
        from transformers import AutoModelForZeroShotObjectDetection, AutoProcessor
        self.model = load_model("grounding_dino", checkpoint, AutoModelForZeroShotObjectDetection,
                                ("grounding-dino", "mm-grounding-dino")).to(self.device).eval()
        self.processor = load_pretrained("grounding_dino", checkpoint, AutoProcessor.from_pretrained)
        self.checkpoint = checkpoint

    def detect(self, frame: PerceptionFrame, queries: dict[str, str]) -> dict[str, BoxDetection]:
        import torch
        rgb = check_rgb(frame.rgb)
        if not queries:
            return {}
        labels = list(queries)
        phrases = fit_phrases([_phrase_text(queries[label]) for label in labels], self.processor.tokenizer,
                              int(getattr(self.model.config, "max_text_len", 256)))
        text, spans = "", []
        for phrase in phrases:
            spans.append((len(text), len(text) + len(phrase)))
            text += phrase + ". "
        text = text.strip()
        inputs = self.processor(images=rgb, text=text, return_tensors="pt",
                                input_data_format="channels_last").to(self.device)
        offsets = self.processor.tokenizer(text, return_offsets_mapping=True)["offset_mapping"]
        watch = Stopwatch()
        with torch.no_grad(), watch:
            outputs = self.model(**inputs)
        self.forward_ms = watch.ms
        probs = outputs.logits[0].sigmoid().cpu().numpy()                  # (queries, max_text_len)
        tokens = min(len(offsets), probs.shape[1])
        height, width = rgb.shape[:2]
        span_scores = np.zeros((probs.shape[0], len(labels)))
        for index, (start, end) in enumerate(spans):
            in_span = [t for t in range(tokens) if offsets[t][1] > offsets[t][0]
                       and offsets[t][0] >= start and offsets[t][1] <= end]
            if in_span:
                span_scores[:, index] = probs[:, in_span].max(axis=1)
        box_scores = probs[:, :tokens].max(axis=1)
        boxes = outputs.pred_boxes[0].cpu().numpy()                         # (queries, 4) cx, cy, w, h in [0, 1]
        best: dict[str, BoxDetection] = {}
        for query in np.flatnonzero(box_scores > self.box_threshold):
            phrase_index = int(np.argmax(span_scores[query]))
            score = float(span_scores[query, phrase_index])
            if score <= self.text_threshold:
                continue
            label = labels[phrase_index]
            if label not in best or score > best[label].score:
                cx, cy, w, h = boxes[query]
                box = clip_box(((cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width,
                                (cy + h / 2) * height), width, height)
                if box[2] - box[0] >= 1 and box[3] - box[1] >= 1:
                    best[label] = BoxDetection(box, score)
        return best


@DETECTORS.register("owlv2")
class Owlv2Detector(Detector):
    """One text query per phrase; the best-scoring patch box per query, if its score is above `threshold`.
    OWLv2 pads the image to a square before resizing, so its boxes are fractions of the padded side."""

    def __init__(self, checkpoint: str, device: str = "cpu", threshold: float = 0.1):
        self.threshold = check_threshold("threshold", threshold)
        self.device = torch_device(device)
        from transformers import Owlv2ForObjectDetection, Owlv2Processor
        self.model = load_model("owlv2", checkpoint, Owlv2ForObjectDetection, ("owlv2",)).to(self.device).eval()
        self.processor = load_pretrained("owlv2", checkpoint, Owlv2Processor.from_pretrained)
        self.checkpoint = checkpoint

    def detect(self, frame: PerceptionFrame, queries: dict[str, str]) -> dict[str, BoxDetection]:
        import torch
        rgb = check_rgb(frame.rgb)
        if not queries:
            return {}
        labels = list(queries)
        # truncation: the text model has a fixed length (16 tokens for the released OWLv2 checkpoints).
        inputs = self.processor(images=rgb, text=[[queries[label] for label in labels]], return_tensors="pt",
                                truncation=True, input_data_format="channels_last").to(self.device)
        watch = Stopwatch()
        with torch.no_grad(), watch:
            outputs = self.model(**inputs)
        self.forward_ms = watch.ms
        scores = outputs.logits[0].sigmoid().cpu().numpy()                 # (patches, queries)
        boxes = outputs.pred_boxes[0].cpu().numpy()
        height, width = rgb.shape[:2]
        side = max(height, width)
        best = {}
        for index, label in enumerate(labels):
            for patch in np.argsort(-scores[:, index]):  # best first; skip boxes outside the image or empty
                score = float(scores[patch, index])
                if score <= self.threshold:
                    break
                cx, cy, w, h = boxes[patch] * side
                box = clip_box((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2), width, height)
                if box[2] - box[0] >= 1 and box[3] - box[1] >= 1:
                    best[label] = BoxDetection(box, score)
                    break
        return best


@DETECTORS.register("sam3")
class Sam3Detector(Detector):
    """SAM 3 (Sam3Model): each phrase is a text prompt against one vision encoding of the frame; an instance's
    score is sigmoid(pred_logits) * sigmoid(presence_logits), as Sam3Processor's post-processing computes it,
    and each label gets the best-scoring instance box above `threshold` (boxes are xyxy fractions of the image).
    Sam3Processor needs torchvision (not available for this torch), so the frame is preprocessed here from the
    checkpoint's preprocessor_config.json (a plain resize, mean/std) and the phrase tokenized as the processor
    does (padded to 32 tokens; cut there instead of failing)."""

    MAX_TOKENS = 32

    def __init__(self, checkpoint: str, device: str = "cpu", threshold: float = 0.3):
        self.threshold = check_threshold("threshold", threshold)
        self.device = torch_device(device)
        from transformers import AutoTokenizer, Sam3Model
        self.model = load_model("sam3", checkpoint, Sam3Model, ("sam3",)).to(self.device).eval()
        self.tokenizer = load_pretrained("sam3", checkpoint, AutoTokenizer.from_pretrained)
        self.preprocessing = PlainPreprocessing("sam3", checkpoint, size=1008, image_mean=[0.5] * 3,
                                                image_std=[0.5] * 3)
        self.checkpoint = checkpoint

    def detect(self, frame: PerceptionFrame, queries: dict[str, str]) -> dict[str, BoxDetection]:
        import torch
        rgb = check_rgb(frame.rgb)
        if not queries:
            return {}
        height, width = rgb.shape[:2]
        pixels = self.preprocessing.pixels(rgb)
        labels = list(queries)
        text = self.tokenizer([queries[label] for label in labels], padding="max_length", truncation=True,
                              max_length=self.MAX_TOKENS, return_tensors="pt").to(self.device)
        watch = Stopwatch()
        best = {}
        with torch.no_grad(), watch:
            vision = self.model.get_vision_features(pixel_values=pixels.unsqueeze(0).to(self.device))
            for index, label in enumerate(labels):
                out = self.model(vision_embeds=vision, input_ids=text["input_ids"][index:index + 1],
                                 attention_mask=text["attention_mask"][index:index + 1])
                scores = out.pred_logits[0].sigmoid()
                if out.presence_logits is not None:
                    scores = scores * out.presence_logits[0].sigmoid()
                query = int(torch.argmax(scores))
                score = float(scores[query])
                if score <= self.threshold:
                    continue
                x0, y0, x1, y1 = out.pred_boxes[0, query].cpu().numpy()
                box = clip_box((x0 * width, y0 * height, x1 * width, y1 * height), width, height)
                if box[2] - box[0] >= 1 and box[3] - box[1] >= 1:
                    best[label] = BoxDetection(box, score)
        self.forward_ms = watch.ms
        return best
