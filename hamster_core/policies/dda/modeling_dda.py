"""3D Diffuser Actor, small-scale: denoise the next keyframe(s) while attending to the scene in 3D.

Why: keyframe distributions are multimodal (which side to grasp, which way to turn) and regression averages
the modes; diffusion samples one. Scene tokens are the points with their features (RGB + path/mask channels);
the query tokens are the noisy keyframes, placed at their own noisy positions, so a rotary 3D encoding makes
every query-scene attention score depend only on *relative* position, which makes the policy translation
equivariant like the paper's. The instruction, proprioception and diffusion timestep condition every layer
(adaptive layer norm); the current gripper is also a scene token at the TCP position. The gripper state is
denoised with the pose (+1 closed / -1 open); a separate logit says whether the task is done.

With `position_head` pointer the clean position is not regressed in absolute coordinates: a final attention
over the scene tokens picks where the keyframe is (the object to grasp, the container, the gripper itself) and
the denoiser adds an offset (above it, beside it). With path channels the pointer's keyframe error on held-out
demonstrations is well below the regression head's (bench/results_learned_policies_ablation.md).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from hamster_core.policies.base import POLICIES
from hamster_core.policies.conditioning import PROPRIO_DIM, feature_channels
from hamster_core.policies.dda.configuration_dda import DDAConfig
from hamster_core.policies.learned import (InstructionEncoder, LearnedPolicy, StepEncoder, denormalize_position,
                                           matrices_to_quaternions, matrix_to_rotation_6d, mlp, normalize_position,
                                           normalized_proprio, quaternion_to_matrix, rotation_6d_to_matrix)

ACTION_DIM = 10          # position (3, normalised to the box), 6D rotation, gripper (+1 closed, -1 open)
MIN_WAVELENGTH = 0.01    # m


def cosine_alphas_cumprod(steps: int, s: float = 0.008) -> torch.Tensor:
    """Nichol & Dhariwal's cosine schedule: cumulative signal fraction at each of `steps` timesteps."""
    t = torch.linspace(0, steps, steps + 1, dtype=torch.float64) / steps
    f = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2
    betas = (1 - f[1:] / f[:-1]).clamp(max=0.999)
    return torch.cumprod(1 - betas, 0).float()


def rotary_3d(x: torch.Tensor, positions: torch.Tensor, frequencies: torch.Tensor) -> torch.Tensor:
    """Rotate (B, heads, T, d) by (B, T, 3) positions: a third of the pairs per axis, one angle per frequency
    (d / 6 of them). q . k of two rotated vectors then depends on the difference of their positions only."""
    angles = (positions[..., :, None] * frequencies).flatten(-2)[:, None]    # (B, 1, T, d / 2)
    cos, sin = angles.cos(), angles.sin()
    even, odd = x[..., 0::2], x[..., 1::2]
    return torch.stack([even * cos - odd * sin, even * sin + odd * cos], dim=-1).flatten(-2)


class RelativeAttention(nn.Module):
    """Multi-head attention whose queries and keys carry 3D rotary position encodings."""

    def __init__(self, dim: int, heads: int, max_wavelength: float):
        super().__init__()
        self.heads = heads
        self.q, self.kv, self.out = nn.Linear(dim, dim), nn.Linear(dim, 2 * dim), nn.Linear(dim, dim)
        pairs = dim // heads // 6
        wavelengths = MIN_WAVELENGTH * (max_wavelength / MIN_WAVELENGTH) ** (torch.arange(pairs) / max(pairs - 1, 1))
        self.register_buffer("frequencies", 2 * math.pi / wavelengths, persistent=False)

    def keys_values(self, context, context_positions) -> tuple[torch.Tensor, torch.Tensor]:
        """Rotated keys and values of a context; a fixed context (the scene) is projected once per sample."""
        B, T, _ = context.shape
        k, v = self.kv(context).reshape(B, T, 2, self.heads, -1).permute(2, 0, 3, 1, 4)
        return rotary_3d(k, context_positions, self.frequencies), v

    def forward(self, x, x_positions, context=None, context_positions=None, keys_values=None):
        B, T, D = x.shape
        k, v = keys_values if keys_values is not None else self.keys_values(context, context_positions)
        q = rotary_3d(self.q(x).reshape(B, T, self.heads, -1).transpose(1, 2), x_positions, self.frequencies)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.out(out.transpose(1, 2).reshape(B, T, D))


class AdaptiveNorm(nn.Module):
    """LayerNorm whose scale and shift come from the conditioning vector (timestep, instruction, state)."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim, elementwise_affine=False)
        self.modulation = nn.Linear(dim, 2 * dim)
        nn.init.zeros_(self.modulation.weight)
        nn.init.zeros_(self.modulation.bias)

    def forward(self, x, condition):
        scale, shift = self.modulation(condition)[:, None].chunk(2, dim=-1)
        return self.norm(x) * (1 + scale) + shift


class DenoiserLayer(nn.Module):
    def __init__(self, config: DDAConfig):
        super().__init__()
        dim = config.dim
        self.norms = nn.ModuleList(AdaptiveNorm(dim) for _ in range(3))
        self.self_attention = RelativeAttention(dim, config.heads, config.max_wavelength)
        self.cross_attention = RelativeAttention(dim, config.heads, config.max_wavelength)
        self.feed_forward = mlp([dim, 2 * dim, dim])

    def forward(self, x, positions, condition, scene_keys_values):
        y = self.norms[0](x, condition)
        x = x + self.self_attention(y, positions, y, positions)
        x = x + self.cross_attention(self.norms[1](x, condition), positions, keys_values=scene_keys_values)
        return x + self.feed_forward(self.norms[2](x, condition))


class SceneLayer(nn.Module):
    def __init__(self, config: DDAConfig):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(config.dim), nn.LayerNorm(config.dim)
        self.attention = RelativeAttention(config.dim, config.heads, config.max_wavelength)
        self.feed_forward = mlp([config.dim, 2 * config.dim, config.dim])

    def forward(self, x, positions):
        y = self.norm1(x)
        x = x + self.attention(y, positions, y, positions)
        return x + self.feed_forward(self.norm2(x))


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    half = dim // 2
    frequencies = torch.exp(-math.log(10_000.0) * torch.arange(half, device=t.device) / half)
    angles = t.float()[:, None] * frequencies
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


class DDAModel(nn.Module):
    def __init__(self, config: DDAConfig):
        super().__init__()
        self.config = config
        dim = config.dim
        self.register_buffer("box_min", torch.tensor(config.workspace_min, dtype=torch.float32), persistent=False)
        self.register_buffer("box_max", torch.tensor(config.workspace_max, dtype=torch.float32), persistent=False)
        self.register_buffer("alphas_cumprod", cosine_alphas_cumprod(config.diffusion_steps), persistent=False)
        self.point_encoder = mlp([feature_channels(config), dim, dim])
        self.gripper_token = mlp([PROPRIO_DIM, dim, dim])
        self.scene_layers = nn.ModuleList(SceneLayer(config) for _ in range(config.scene_layers))
        self.instruction = InstructionEncoder(config.vocab_buckets, dim)
        self.proprio = mlp([PROPRIO_DIM, dim, dim])
        self.step = StepEncoder(config.step_input, dim)
        self.time = mlp([dim, dim, dim])
        self.action_in = nn.Linear(ACTION_DIM, dim)
        self.horizon_embedding = nn.Parameter(torch.randn(config.horizon, dim) * 0.02)
        self.denoiser = nn.ModuleList(DenoiserLayer(config) for _ in range(config.denoiser_layers))
        self.action_norm = AdaptiveNorm(dim)
        self.action_out = nn.Linear(dim, ACTION_DIM)
        self.done_head = mlp([3 * dim, dim, 1])
        if config.position_head == "pointer":
            self.pointer_query, self.pointer_key = nn.Linear(dim, dim), nn.Linear(dim, dim)

    def encode(self, batch: dict) -> dict:
        """Per denoiser layer the rotated keys and values of the scene tokens (the N points and the current
        gripper), the conditioning vector (B, dim) without the timestep, and the done logit: computed once and
        reused by every denoising step."""
        proprio = normalized_proprio(batch["proprio"], self.box_min, self.box_max)
        tcp = torch.minimum(torch.maximum(batch["proprio"][:, :3], self.box_min), self.box_max)
        scene = torch.cat([self.point_encoder(batch["features"]), self.gripper_token(proprio)[:, None]], dim=1)
        positions = torch.cat([batch["points"], tcp[:, None]], dim=1)
        for layer in self.scene_layers:
            scene = layer(scene, positions)
        language, state = self.instruction(batch["tokens"]), self.proprio(proprio) + self.step(batch["step"])
        done = self.done_head(torch.cat([scene.mean(1), language, state], dim=1))[:, 0]
        keys_values = [layer.cross_attention.keys_values(scene, positions) for layer in self.denoiser]
        encoded = {"scene_keys_values": keys_values, "condition": language + state, "done": done}
        if self.config.position_head == "pointer":
            encoded["pointer_keys"], encoded["scene_positions"] = self.pointer_key(scene), positions
        return encoded

    def denoise(self, noisy: torch.Tensor, t: torch.Tensor, encoded: dict) -> torch.Tensor:
        """The clean actions or the noise (config.prediction), (B, H, 10), for noisy actions (B, H, 10) at
        timesteps t (B,)."""
        x = self.action_in(noisy) + self.horizon_embedding
        positions = denormalize_position(noisy[..., :3].clamp(-1, 1), self.box_min, self.box_max)
        condition = encoded["condition"] + self.time(timestep_embedding(t, self.config.dim))
        for layer, keys_values in zip(self.denoiser, encoded["scene_keys_values"]):
            x = layer(x, positions, condition, keys_values)
        x = self.action_norm(x, condition)
        out = self.action_out(x)
        if self.config.position_head == "pointer":
            scores = self.pointer_query(x) @ encoded["pointer_keys"].transpose(1, 2) / math.sqrt(x.shape[-1])
            anchor = scores.softmax(-1) @ encoded["scene_positions"]                  # (B, H, 3) metres
            out = torch.cat([normalize_position(anchor, self.box_min, self.box_max) + out[..., :3],
                             out[..., 3:]], dim=-1)
        return out

    def actions_from_targets(self, batch: dict) -> torch.Tensor:
        """Targets (from add_targets) -> clean actions (B, H, 10) in the denoiser's normalised space."""
        rotation = matrix_to_rotation_6d(quaternion_to_matrix(batch["target_quaternion"]))
        position = normalize_position(batch["target_position"], self.box_min, self.box_max).clamp(-1, 1)
        return torch.cat([position, rotation, batch["target_gripper"][..., None] * 2 - 1], dim=-1)

    def forward(self, batch: dict, noisy: torch.Tensor, t: torch.Tensor) -> dict:
        encoded = self.encode(batch)
        return {"prediction": self.denoise(noisy, t, encoded), "done": encoded["done"]}

    def compute_loss(self, batch: dict, generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict]:
        """Denoising MSE (on the clean actions or the noise, config.prediction) at a random timestep per
        sample, plus BCE on done. `generator` fixes timesteps and noise (for a repeatable evaluation loss)."""
        clean = self.actions_from_targets(batch)
        B = len(clean)
        t = torch.randint(0, self.config.diffusion_steps, (B,), generator=generator).to(clean.device)
        noise = torch.randn(clean.shape, generator=generator).to(clean.device)   # a CPU generator on any device
        signal = self.alphas_cumprod[t][:, None, None]
        out = self(batch, signal.sqrt() * clean + (1 - signal).sqrt() * noise, t)
        diffusion = F.mse_loss(out["prediction"], clean if self.config.prediction == "sample" else noise)
        done = F.binary_cross_entropy_with_logits(out["done"], batch["target_done"])
        loss = diffusion + done
        return loss, {name: float(value.detach()) for name, value in
                      (("loss", loss), ("diffusion", diffusion), ("done", done))}

    @torch.no_grad()
    def sample(self, batch: dict, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """DDIM (eta = 0) from N(0, I) noise drawn with `generator`: clean actions (B, H, 10), done logits (B,).
        The same generator state gives the same actions."""
        encoded = self.encode(batch)
        B, config = len(batch["points"]), self.config
        device = batch["points"].device
        x = torch.randn((B, config.horizon, ACTION_DIM), generator=generator).to(device)
        steps = torch.linspace(config.diffusion_steps - 1, 0, config.inference_steps).round().long().tolist()
        for i, t in enumerate(steps):
            signal = self.alphas_cumprod[t]
            out = self.denoise(x, torch.full((B,), t, device=device), encoded)
            clean = out if config.prediction == "sample" else (x - (1 - signal).sqrt() * out) / signal.sqrt()
            clean = clean.clamp(-1, 1)
            noise = (x - signal.sqrt() * clean) / (1 - signal).sqrt()
            previous = self.alphas_cumprod[steps[i + 1]] if i + 1 < len(steps) else torch.ones((), device=device)
            x = previous.sqrt() * clean + (1 - previous).sqrt() * noise
        return x, encoded["done"]

    @torch.no_grad()
    def predict(self, batch: dict, generator: torch.Generator | None = None) -> dict:
        """Next keyframe(s): position (B, H, 3) in metres, quaternion (B, H, 4), P(gripper closed) (B, H),
        P(done) (B,)."""
        actions, done = self.sample(batch, generator)
        position = denormalize_position(actions[..., :3], self.box_min, self.box_max)
        quaternion = torch.from_numpy(matrices_to_quaternions(rotation_6d_to_matrix(actions[..., 3:9])))
        return {"position": position, "quaternion": quaternion, "gripper": (actions[..., 9] + 1) / 2,
                "done": done.sigmoid()}


@POLICIES.register("3dda")
class DDAPolicy(LearnedPolicy):
    name = "3dda"
    config_class = DDAConfig
    model_class = DDAModel
