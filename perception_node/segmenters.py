"""Segmenters: `sam` and `sam2` (transformers), `segment_anything` (Meta's package with an official .pth
checkpoint), and `box` (the box itself as the mask: no model, for trackers alone).

Every model computes the image embedding once per frame (`get_image_embeddings`) and decodes all boxes from it
in one mask-decoder call."""
from __future__ import annotations


import numpy as np

from perception_node.detectors import IMAGENET_MEAN, IMAGENET_STD, PlainPreprocessing, load_model, load_pretrained
from hamster_core.perception.stages import (SEGMENTERS, Box, ModelLoadError, SegmentedBox, Segmenter, Stopwatch, box_mask,
                                    check_rgb, torch_device)


def _box_list(boxes: dict[str, Box]) -> tuple[list[str], list[list[float]]]:
    labels = list(boxes)
    return labels, [[float(v) for v in boxes[label]] for label in labels]


@SEGMENTERS.register("box")
class BoxSegmenter(Segmenter):
    def __init__(self):
        pass

    def segment(self, rgb: np.ndarray, boxes: dict[str, Box]) -> dict[str, SegmentedBox]:
        height, width = check_rgb(rgb).shape[:2]
        return {label: SegmentedBox(box_mask(box, height, width), 1.0) for label, box in boxes.items()}


@SEGMENTERS.register("sam")
class SamSegmenter(Segmenter):
    def __init__(self, checkpoint: str, device: str = "cpu"):
        self.device = torch_device(device)
        from transformers import SamModel, SamProcessor
        self.model = load_model("sam", checkpoint, SamModel, ("sam",)).to(self.device).eval()
        self.processor = load_pretrained("sam", checkpoint, SamProcessor.from_pretrained)
        self.checkpoint = checkpoint

    def segment(self, rgb: np.ndarray, boxes: dict[str, Box]) -> dict[str, SegmentedBox]:
        import torch
        rgb = check_rgb(rgb)
        if not boxes:
            return {}
        labels, box_list = _box_list(boxes)
        inputs = self.processor(images=rgb, input_boxes=[box_list], return_tensors="pt",
                                input_data_format="channels_last").to(self.device)
        watch = Stopwatch()
        with torch.no_grad(), watch:
            embeddings = self.model.get_image_embeddings(inputs["pixel_values"])
            outputs = self.model(image_embeddings=embeddings, input_boxes=inputs["input_boxes"],
                                 multimask_output=False)
        self.forward_ms = watch.ms
        masks = self.processor.image_processor.post_process_masks(
            outputs.pred_masks.cpu(), inputs["original_sizes"].cpu(), inputs["reshaped_input_sizes"].cpu())[0]
        scores = outputs.iou_scores[0, :, 0].cpu().numpy()
        return {label: SegmentedBox(masks[i, 0].numpy().astype(bool), float(np.clip(scores[i], 0, 1)))
                for i, label in enumerate(labels)}


@SEGMENTERS.register("sam2")
class Sam2Segmenter(Segmenter):
    """transformers has only a torchvision image processor for SAM 2 (and no working torchvision exists for
    this torch), so the image is resized and normalized by PlainPreprocessing from the checkpoint's
    preprocessor_config.json; masks are upsampled straight to the image size."""

    def __init__(self, checkpoint: str, device: str = "cpu"):
        self.device = torch_device(device)
        from transformers import Sam2Model
        self.model = load_model("sam2", checkpoint, Sam2Model, ("sam2",)).to(self.device).eval()
        self.checkpoint = checkpoint
        self.preprocessing = PlainPreprocessing("sam2", checkpoint, image_mean=IMAGENET_MEAN, image_std=IMAGENET_STD)

    def segment(self, rgb: np.ndarray, boxes: dict[str, Box]) -> dict[str, SegmentedBox]:
        import torch
        rgb = check_rgb(rgb)
        if not boxes:
            return {}
        height, width = rgb.shape[:2]
        pixel_values = self.preprocessing.pixels(rgb).unsqueeze(0).to(self.device)
        labels, box_list = _box_list(boxes)
        scale = self.preprocessing.scale(width, height)
        input_boxes = torch.from_numpy(np.array(box_list, np.float32) * scale).unsqueeze(0).to(self.device)
        watch = Stopwatch()
        with torch.no_grad(), watch:
            embeddings = self.model.get_image_embeddings(pixel_values)
            outputs = self.model(image_embeddings=embeddings, input_boxes=input_boxes, multimask_output=False)
        self.forward_ms = watch.ms
        logits = torch.nn.functional.interpolate(outputs.pred_masks[0].float(), size=(height, width),
                                                 mode="bilinear", align_corners=False)    # (boxes, 1, H, W)
        masks = (logits[:, 0] > 0).cpu().numpy()
        scores = outputs.iou_scores[0, :, 0].cpu().numpy()
        return {label: SegmentedBox(masks[i], float(np.clip(scores[i], 0, 1))) for i, label in enumerate(labels)}


@SEGMENTERS.register("segment_anything")
class SegmentAnythingSegmenter(Segmenter):
    """Meta's `segment_anything` package with an official checkpoint (sam_vit_b_01ec64.pth, ...). The package
    imports torchvision; where it (or a working torchvision) is missing this fails at construction, naming
    the checkpoint, instead of on the first frame."""

    def __init__(self, checkpoint: str, device: str = "cpu", model_type: str = "vit_b"):
        self.device = torch_device(device)
        try:
            from segment_anything import SamPredictor, sam_model_registry
        except Exception as error:  # ImportError, or torchvision's own failure to import
            raise ModelLoadError(
                f"segmenter segment_anything (checkpoint {checkpoint!r}) needs the segment-anything package and "
                f"a working torchvision: {type(error).__name__}: {error}. Use segmenter 'sam' with a transformers "
                f"checkpoint (e.g. facebook/sam-vit-base) instead") from error
        if model_type not in sam_model_registry:
            raise ValueError(f"unknown segment_anything model_type {model_type!r}; known: "
                             f"{', '.join(sam_model_registry)}")
        try:
            model = sam_model_registry[model_type](checkpoint=checkpoint).to(self.device).eval()
        except Exception as error:
            raise ModelLoadError(f"cannot load the segment_anything checkpoint {checkpoint!r}: "
                                 f"{type(error).__name__}: {error}") from error
        self.predictor = SamPredictor(model)

    def segment(self, rgb: np.ndarray, boxes: dict[str, Box]) -> dict[str, SegmentedBox]:
        import torch
        rgb = check_rgb(rgb)
        if not boxes:
            return {}
        labels, box_list = _box_list(boxes)
        watch = Stopwatch()
        with torch.no_grad(), watch:
            self.predictor.set_image(rgb)                    # the embedding, once
            transformed = self.predictor.transform.apply_boxes_torch(
                torch.tensor(box_list, device=self.device), rgb.shape[:2])
            masks, scores, _ = self.predictor.predict_torch(None, None, boxes=transformed, multimask_output=False)
        self.forward_ms = watch.ms
        return {label: SegmentedBox(masks[i, 0].cpu().numpy().astype(bool), float(scores[i, 0]))
                for i, label in enumerate(labels)}
