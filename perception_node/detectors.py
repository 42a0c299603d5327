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
