"""Video-model trackers through transformers: `sam2_video` (Sam2VideoModel), streaming frame by frame. The
object's box prompts the model on the first frame; every later frame is matched against the model's memory of
the last frames (its masks and object pointers), which is what carries an object through an occlusion. The
box is that of the predicted mask; `confidence` is the model's object-presence probability, and the object
counts as lost when that falls below `min_confidence` or the mask is empty.

transformers' Sam2VideoProcessor needs torchvision, which has no build for this torch, so the session is built
here the way the processor builds it (a Sam2VideoInferenceSession, the box as corner points with labels 2
and 3, in model-input pixels) and frames are preprocessed as for the `sam2` segmenter. In a stream the session
would keep every frame's outputs; only the last `keep_frames` are kept (the model reads its `num_maskmem`
memories and `max_object_pointers_in_encoder` pointers from those), plus the prompted frame.

One session per object, so two objects cost two image encodings per frame (a shared encoder is left for later).
The model is loaded once per (checkpoint, device) and shared by the trackers of every object.
EDGETAM (`EdgeTamVideoModel`) is not offered: its RepViT backbone needs timm, which needs torchvision.
"""
from __future__ import annotations

import numpy as np

from hamster_core.perception.stages import (TRACKERS, Box, Tracker, TrackUpdate, check_rgb, check_threshold, clip_box,
                                            mask_box, torch_device)
from perception_node.detectors import IMAGENET_MEAN, IMAGENET_STD, PlainPreprocessing, load_model

_LOADED: dict = {}     # (checkpoint, device) -> (model, preprocessing)


def _load(checkpoint: str, device):
    key = (checkpoint, str(device))
    if key not in _LOADED:
        from transformers import Sam2VideoModel
        model = load_model("sam2_video", checkpoint, Sam2VideoModel, ("sam2_video",)).to(device).eval()
        _LOADED[key] = model, PlainPreprocessing("sam2_video", checkpoint, image_mean=IMAGENET_MEAN,
                                                         image_std=IMAGENET_STD)
    return _LOADED[key]


@TRACKERS.register("sam2_video")
class Sam2VideoTracker(Tracker):
    OBJECT_ID = 1
    follows_through_occlusion = True

    def __init__(self, checkpoint: str = "", device: str = "cpu", min_confidence: float = 0.3,
                 keep_frames: int | None = None):
        self.min_confidence = check_threshold("min_confidence", min_confidence)
        self.device = torch_device(device)
        self.model, self.preprocessing = _load(checkpoint, self.device)
        needed = max(self.model.config.num_maskmem, self.model.config.max_object_pointers_in_encoder)
        if keep_frames is None:
            keep_frames = needed
        if not isinstance(keep_frames, int) or keep_frames < needed:
            raise ValueError(f"keep_frames must be an integer >= {needed} (the model's memory), got {keep_frames!r}")
        self.keep_frames = keep_frames
        self.session = None
        self.frame_index = -1
        self.forward_ms = 0.0

    def start(self, rgb: np.ndarray, box: Box) -> None:
        import torch
        from transformers.models.sam2_video.modeling_sam2_video import Sam2VideoInferenceSession
        rgb = check_rgb(rgb)
        height, width = rgb.shape[:2]
        x0, y0, x1, y1 = clip_box(box, width, height)
        if x1 - x0 < 1 or y1 - y0 < 1:
            raise ValueError(f"box {box} is too small to track")
        self.session = Sam2VideoInferenceSession(video_height=height, video_width=width, inference_device=self.device,
                                                 dtype=torch.float32)
        corners = torch.from_numpy(np.array([x0, y0, x1, y1], np.float32) * self.preprocessing.scale(width, height))
        obj_idx = self.session.obj_id_to_idx(self.OBJECT_ID)
        self.session.add_point_inputs(obj_idx, 0, {"point_coords": corners.reshape(1, 1, 2, 2),
                                                    "point_labels": torch.tensor([[[2, 3]]], dtype=torch.int32)})
        self.session.obj_with_new_inputs = [self.OBJECT_ID]
        self.frame_index = -1
        self._step(rgb)    # the prompted frame: the model's first memory

    def update(self, rgb: np.ndarray) -> TrackUpdate:
        if self.session is None:
            raise RuntimeError("update() before start()")
        return self._step(check_rgb(rgb))

    def _step(self, rgb: np.ndarray) -> TrackUpdate:
        import time
        import torch
        height, width = rgb.shape[:2]
        if (height, width) != (self.session.video_height, self.session.video_width):
            raise ValueError(f"frame {width}x{height} differs from the tracked stream's "
                             f"{self.session.video_width}x{self.session.video_height}")
        self.frame_index += 1
        started = time.perf_counter()
        with torch.no_grad():
            output = self.model(inference_session=self.session, frame_idx=self.frame_index,
                                frame=self.preprocessing.pixels(rgb).to(self.device))
            logits = torch.nn.functional.interpolate(output.pred_masks.float(), size=(height, width),
                                                     mode="bilinear", align_corners=False)[0, 0]
        self.forward_ms = 1000 * (time.perf_counter() - started)
        self._forget_old_frames()
        confidence = float(torch.sigmoid(output.object_score_logits.flatten()[0]))
        box = mask_box((logits > 0).cpu().numpy())
        if box is None:
            return TrackUpdate((0.0, 0.0, 0.0, 0.0), confidence, True)
        return TrackUpdate(box, confidence, confidence < self.min_confidence)

    def _forget_old_frames(self) -> None:
        """Drops frames, outputs and bookkeeping older than `keep_frames` (the prompted frame's outputs stay)."""
        oldest = self.frame_index - self.keep_frames
        stores = [self.session.processed_frames, *self.session.frames_tracked_per_obj.values(),
                  *(outputs["non_cond_frame_outputs"] for outputs in self.session.output_dict_per_obj.values())]
        for store in stores:
            for index in [i for i in store if i < oldest or (store is self.session.processed_frames
                                                             and i < self.frame_index)]:
                del store[index]

    @property
    def stored_frames(self) -> int:
        """Frames whose outputs the session holds (bounded by keep_frames + the prompted frame)."""
        outputs = self.session.output_dict_per_obj[0]
        return len(outputs["non_cond_frame_outputs"]) + len(outputs["cond_frame_outputs"])
