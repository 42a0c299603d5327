"""RVT-2, small-scale: re-render the point cloud into virtual orthographic views, attend across all views'
patches, and let every view vote for the next gripper position with a heatmap.

Why views instead of raw points: a 2D transformer over a few fixed, camera-independent images is cheap and
its heatmaps are translation-equivariant, which is what makes RVT sample-efficient. The 3D point is the one
whose projections score highest summed over all views (each view fixes two coordinates). Rotation is
classified into Euler-angle bins, gripper and done are logits, all from features pooled where the heatmaps
point. With `coarse_to_fine` a second network sees views re-rendered around stage 1's point (RVT-2).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy.spatial.transform import Rotation
from torch import nn

from hamster_core.policies.base import POLICIES
from hamster_core.policies.conditioning import PROPRIO_DIM, feature_channels
from hamster_core.policies.learned import InstructionEncoder, LearnedPolicy, StepEncoder, mlp, normalized_proprio
from hamster_core.policies.rvt2.configuration_rvt2 import VIEW_AXES, RVT2Config

EULER = "xyz"   # extrinsic, scipy's convention


def render_views(points: torch.Tensor, features: torch.Tensor, box_min: torch.Tensor, box_max: torch.Tensor,
                 views: tuple, size: int) -> torch.Tensor:
    """Z-buffered point splatting into orthographic views of the box: (B, N, 3) points with (B, N, C) features,
    box corners (B, 3) -> (B, V, C + 2, size, size). Channels: the nearest point's features (mean on ties),
    its depth from the view's camera face (0 there, 1 at the opposite face; 0 where empty), occupancy.
    Column = along the view's first axis, row = along its second (see VIEW_AXES); points outside the box are
    left out."""
    B, N, C = features.shape
    V, device = len(views), points.device
    axes = torch.tensor([VIEW_AXES[v] for v in views], device=device)
    rel = (points - box_min[:, None]) / (box_max - box_min)[:, None]                  # (B, N, 3), box = [0, 1]
    inside = ((rel >= 0) & (rel <= 1)).all(-1, keepdim=True)                         # (B, N, 1)
    col = (rel[..., axes[:, 0]] * size).floor().clamp(0, size - 1).long()              # (B, N, V)
    row = (rel[..., axes[:, 1]] * size).floor().clamp(0, size - 1).long()
    depth = (1 - rel[..., axes[:, 2]]).clamp(0, 1)                                     # camera on the max face
    cells = B * V * size * size
    batch_view = torch.arange(B, device=device)[:, None, None] * V + torch.arange(V, device=device)[None, None, :]
    flat = ((batch_view * size + row) * size + col).where(inside, torch.full_like(col, cells)).reshape(-1)
    depth = depth.reshape(-1)
    zbuffer = torch.full((cells + 1,), float("inf"), device=device).scatter_reduce(0, flat, depth, "amin")
    nearest = (depth <= zbuffer[flat]) & (flat < cells)
    index = flat[nearest]
    count = torch.zeros(cells, device=device).index_add(0, index, torch.ones(len(index), device=device))
    values = features[:, :, None, :].expand(B, N, V, C).reshape(-1, C)[nearest]
    summed = torch.zeros(cells, C, dtype=features.dtype, device=device).index_add(0, index, values)
    occupied = count > 0
    image = torch.cat([summed / count.clamp(min=1)[:, None],
                       torch.where(occupied, zbuffer[:cells], 0.0)[:, None], occupied.float()[:, None]], dim=1)
    return image.reshape(B, V, size, size, C + 2).permute(0, 1, 4, 2, 3)


def view_pixels(positions: torch.Tensor, box_min: torch.Tensor, box_max: torch.Tensor, views: tuple,
                size: int) -> torch.Tensor:
    """Continuous (column, row) of (B, 3) positions in each view: (B, V, 2), pixel centres at i + 0.5."""
    axes = torch.tensor([VIEW_AXES[v] for v in views], device=positions.device)
    rel = ((positions - box_min) / (box_max - box_min)).clamp(0, 1) * size
    return torch.stack([rel[:, axes[:, 0]], rel[:, axes[:, 1]]], dim=-1)


def lift_heatmaps(logits: torch.Tensor, box_min: torch.Tensor, box_max: torch.Tensor, views: tuple) -> torch.Tensor:
    """(B, V, S, S) heatmap logits -> (B, 3) the cell centre of the box's S^3 grid maximising the summed
    per-view log-probabilities of its projections (the RVT vote)."""
    B, V, S, _ = logits.shape
    log_probs = logits.reshape(B, V, -1).log_softmax(-1).reshape(B, V, S, S)
    score = torch.zeros(B, S, S, S, device=logits.device)
    for k, view in enumerate(views):
        col_axis, row_axis, depth_axis = VIEW_AXES[view]
        grid = log_probs[:, k]                                  # (B, rows = row_axis, cols = col_axis)
        if col_axis < row_axis:
            grid = grid.transpose(1, 2)                         # dims now in increasing axis order
        score = score + grid.unsqueeze(1 + depth_axis)
    best = score.reshape(B, -1).argmax(-1)
    index = torch.stack([best // (S * S), (best // S) % S, best % S], dim=-1)
    return box_min + (index.float() + 0.5) / S * (box_max - box_min)


def euler_bins(quaternions: np.ndarray, bins: int) -> np.ndarray:
    """(..., 4) x, y, z, w -> (..., 3) bin per Euler angle; bin k is centred on -pi + k * 2 pi / bins."""
    angles = Rotation.from_quat(quaternions.reshape(-1, 4)).as_euler(EULER)
    index = np.rint((angles + np.pi) / (2 * np.pi / bins)).astype(np.int64) % bins
    return index.reshape(*quaternions.shape[:-1], 3)


def bins_to_quaternions(index: np.ndarray, bins: int) -> np.ndarray:
    angles = -np.pi + index.reshape(-1, 3) * (2 * np.pi / bins)
    return Rotation.from_euler(EULER, angles).as_quat().reshape(*index.shape[:-1], 4)


class MultiViewTransformer(nn.Module):
    """One RVT stage: patch tokens of every view (+ view and position embeddings), an instruction token and a
    proprioception token (plus the keyframe step with `step_input`), a joint transformer, then per-view heatmaps
    (each token upsampled to its patch's pixels) and rotation / gripper / done logits from each view's features
    pooled under its heatmap."""

    def __init__(self, config: RVT2Config, in_channels: int):
        super().__init__()
        self.config = config
        dim, patch, views = config.dim, config.patch_size, len(config.views)
        self.grid = config.image_size // patch
        self.patch_embed = nn.Conv2d(in_channels, dim, patch, stride=patch)
        self.position = nn.Parameter(torch.randn(1, views, self.grid * self.grid, dim) * 0.02)
        self.instruction = InstructionEncoder(config.vocab_buckets, dim)
        self.proprio = mlp([PROPRIO_DIM, dim, dim])
        self.step = StepEncoder(config.step_input, dim)
        layer = nn.TransformerEncoderLayer(dim, config.heads, 2 * dim, dropout=0.0, batch_first=True, norm_first=True)
        self.transformer = nn.TransformerEncoder(layer, config.depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.heatmap = nn.Linear(dim, patch * patch)
        self.head = mlp([(views + 1) * dim, dim, 3 * config.rotation_bins + 2])

    def forward(self, images: torch.Tensor, tokens: torch.Tensor, proprio: torch.Tensor, step: torch.Tensor) -> dict:
        B, V, C, S, _ = images.shape
        g, p, bins = self.grid, self.config.patch_size, self.config.rotation_bins
        patches = self.patch_embed(images.reshape(B * V, C, S, S)).flatten(2).transpose(1, 2)   # (B V, g g, dim)
        patches = patches.reshape(B, V, g * g, -1) + self.position
        language, state = self.instruction(tokens)[:, None], (self.proprio(proprio) + self.step(step))[:, None]
        x = self.norm(self.transformer(torch.cat([language, state, patches.flatten(1, 2)], dim=1)))
        view_tokens = x[:, 2:].reshape(B, V, g * g, -1)
        heat = self.heatmap(view_tokens).reshape(B, V, g, g, p, p)
        heatmaps = heat.permute(0, 1, 2, 4, 3, 5).reshape(B, V, S, S)
        weights = heatmaps.reshape(B, V, -1).softmax(-1).reshape(B, V, g, p, g, p).sum((3, 5)).reshape(B, V, g * g)
        pooled = torch.einsum("bvt,bvtd->bvd", weights, view_tokens).flatten(1)
        out = self.head(torch.cat([pooled, x[:, 0]], dim=1))
        return {"heatmaps": heatmaps, "rotation": out[:, :3 * bins].reshape(B, 3, bins),
                "gripper": out[:, -2], "done": out[:, -1]}


class RVT2Model(nn.Module):
    def __init__(self, config: RVT2Config):
        super().__init__()
        self.config = config
        channels = feature_channels(config) + 2
        self.register_buffer("box_min", torch.tensor(config.workspace_min, dtype=torch.float32), persistent=False)
        self.register_buffer("box_max", torch.tensor(config.workspace_max, dtype=torch.float32), persistent=False)
        self.stage1 = MultiViewTransformer(config, channels)
        self.stage2 = MultiViewTransformer(config, channels) if config.coarse_to_fine else None

    def _boxes(self, batch_size: int, center: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        if center is None:
            return self.box_min.expand(batch_size, 3), self.box_max.expand(batch_size, 3)
        half = self.config.zoom_half_extent
        return center - half, center + half

    def _stage(self, network, batch: dict, center: torch.Tensor | None) -> dict:
        box_min, box_max = self._boxes(len(batch["points"]), center)
        images = render_views(batch["points"], batch["features"], box_min, box_max, self.config.views,
                              self.config.image_size)
        out = network(images, batch["tokens"], normalized_proprio(batch["proprio"], self.box_min, self.box_max),
                      batch["step"])
        return out | {"box_min": box_min, "box_max": box_max}

    def forward(self, batch: dict, zoom_center: torch.Tensor | None = None) -> dict:
        """Stage outputs: {"stage1": {...}, "stage2": {...} with coarse_to_fine}. Each holds heatmaps (B, V, S, S),
        rotation (B, 3, bins), gripper and done logits (B,) and its box. Stage 2 zooms on `zoom_center` (B, 3)
        when given (training: the target, jittered), else on stage 1's predicted point."""
        outputs = {"stage1": self._stage(self.stage1, batch, None)}
        if self.stage2 is not None:
            if zoom_center is None:
                first = outputs["stage1"]
                zoom_center = lift_heatmaps(first["heatmaps"].detach(), first["box_min"], first["box_max"],
                                            self.config.views)
            outputs["stage2"] = self._stage(self.stage2, batch, zoom_center)
        return outputs

    def compute_loss(self, batch: dict) -> tuple[torch.Tensor, dict]:
        """RVT's losses on the next keyframe (batch from collate + add_targets, horizon 1): heatmap
        cross-entropy against a Gaussian at the target's pixel in every view of every stage, cross-entropy on
        the three Euler bins, binary cross-entropy on gripper (closed) and done, from the last stage."""
        config = self.config
        target = batch["target_position"][:, 0]
        center = None
        if self.stage2 is not None:
            center = target + (torch.rand_like(target) - 0.5) * config.zoom_half_extent  # RVT-2's jittered zoom
        outputs = self(batch, zoom_center=center)
        metrics, loss = {}, torch.zeros(())
        for name, out in outputs.items():
            heat = heatmap_loss(out["heatmaps"], target, out["box_min"], out["box_max"], config)
            metrics[f"{name}_heatmap"] = float(heat.detach())
            loss = loss + heat
        last = outputs["stage2" if self.stage2 is not None else "stage1"]
        quaternions = batch["target_quaternion"][:, 0].detach().double().cpu().numpy()
        bins = torch.from_numpy(euler_bins(quaternions, config.rotation_bins)).to(target.device)
        rotation = F.cross_entropy(last["rotation"].reshape(-1, config.rotation_bins), bins.reshape(-1))
        gripper = F.binary_cross_entropy_with_logits(last["gripper"], batch["target_gripper"][:, 0])
        done = F.binary_cross_entropy_with_logits(last["done"], batch["target_done"])
        metrics.update(rotation=float(rotation.detach()), gripper=float(gripper.detach()), done=float(done.detach()))
        loss = loss + rotation + gripper + done
        metrics["loss"] = float(loss.detach())
        return loss, metrics

    @torch.no_grad()
    def predict(self, batch: dict, generator: torch.Generator | None = None) -> dict:
        """The next keyframe: position (B, 1, 3) from the last stage's heatmap vote, quaternion (B, 1, 4) from
        the Euler bins' argmax, P(gripper closed) (B, 1), P(done) (B,). Deterministic (`generator` unused)."""
        outputs = self(batch)
        last = outputs["stage2" if self.stage2 is not None else "stage1"]
        position = lift_heatmaps(last["heatmaps"], last["box_min"], last["box_max"], self.config.views)
        quaternion = bins_to_quaternions(last["rotation"].argmax(-1).cpu().numpy(), self.config.rotation_bins)
        return {"position": position[:, None], "quaternion": torch.from_numpy(quaternion)[:, None],
                "gripper": last["gripper"].sigmoid()[:, None], "done": last["done"].sigmoid()}


def heatmap_loss(logits: torch.Tensor, target: torch.Tensor, box_min: torch.Tensor, box_max: torch.Tensor,
                 config: RVT2Config) -> torch.Tensor:
    """Cross-entropy between each view's heatmap and a normalised Gaussian at the target's pixel, minus the
    Gaussian's entropy (the same gradients; reads as a KL divergence, 0 when the heatmap matches)."""
    B, V, S, _ = logits.shape
    pixel = view_pixels(target, box_min, box_max, config.views, S)                      # (B, V, 2)
    centres = torch.arange(S, dtype=torch.float32, device=logits.device) + 0.5
    d2 = (centres[None, None, None, :] - pixel[..., 0, None, None]) ** 2 \
        + (centres[None, None, :, None] - pixel[..., 1, None, None]) ** 2                 # (B, V, S rows, S cols)
    goal = torch.exp(-d2 / (2 * config.heatmap_sigma ** 2))
    goal = goal / goal.sum((2, 3), keepdim=True)
    goal, log_probs = goal.reshape(B, V, -1), logits.reshape(B, V, -1).log_softmax(-1)
    return (goal * (goal.clamp(min=1e-12).log() - log_probs)).sum(-1).mean()   # KL: 0 at the optimum


@POLICIES.register("rvt2")
class RVT2Policy(LearnedPolicy):
    name = "rvt2"
    config_class = RVT2Config
    model_class = RVT2Model
