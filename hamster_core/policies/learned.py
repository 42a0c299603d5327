"""What the learned 3D policies (rvt2, 3dda) share: the instruction embedding, rotation conversions,
checkpoints (config.json + model.safetensors, never pickle) and turning a prediction into a safe PolicyOutput.

A model class takes its config and provides `forward(batch)`, `compute_loss(batch) -> (loss, metrics)` and
`predict(batch, generator) -> {"position" (B, H, 3), "quaternion" (B, H, 4), "gripper" (B, H) P(closed),
"done" (B,) P(done)}`; batches come from `conditioning.collate` (+ `add_targets` for training).
"""
from __future__ import annotations

import json
import logging
import sys
from contextlib import contextmanager
from dataclasses import fields, replace
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from hamster_core.executor import Keyframe
from hamster_core.geometry import Pose, matrix_to_quaternion
from hamster_core.path2d import GripperState
from hamster_core.policies.base import Observation, Policy, PolicyError, PolicyOutput
from hamster_core.policies.conditioning import (LIFTED_PATH_MODES, STEP_BUCKETS, collate, gripper_is_closed,
                                               lifted_path, prepare_inputs, required_inputs)
from hamster_core.policies.gripper_gate import ReleaseGate, placement_point

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
#: Settings of the deployment rather than of the trained model: a checkpoint's config.json never sets them.
#: Every other field (the seed too: it drives inference-time sampling) comes from the checkpoint.
RUNTIME_FIELDS = ("checkpoint", "max_keyframes", "always_done", "release_confirmations", "release_threshold",
                  "placement_radius")

#: Where a relative checkpoint not found from the working directory is looked up, so the shipped
#: `checkpoints/<policy>` (the defaults in config/runtime.yaml) load from any directory: the project folder (a
#: source or editable install), then the installed share folder (setup.py's data_files).
PROJECT_ROOT = Path(__file__).resolve().parents[2]
SHARE_ROOT = Path(sys.prefix) / "share" / "hamster_runtime"

logger = logging.getLogger(__name__)


def resolve_checkpoint(checkpoint: str) -> str:
    """`checkpoint` as given when it exists (or is empty or absolute), else under PROJECT_ROOT or SHARE_ROOT."""
    if not checkpoint or Path(checkpoint).is_absolute() or Path(checkpoint).exists():
        return checkpoint
    for root in (PROJECT_ROOT, SHARE_ROOT):
        if (root / checkpoint).exists():
            return str(root / checkpoint)
    return checkpoint


class InstructionEncoder(nn.Module):
    """Bag of hashed words: mean of learned word embeddings (ids from `conditioning.instruction_tokens`).
    Tiny and download-free; swap for a frozen text encoder's pooled output when one is available."""

    def __init__(self, buckets: int, dim: int):
        super().__init__()
        self.embedding = nn.Embedding(buckets, dim, padding_idx=0)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        present = (tokens > 0).float().unsqueeze(-1)
        return (self.embedding(tokens) * present).sum(1) / present.sum(1).clamp(min=1.0)


class StepEncoder(nn.Module):
    """The episode's keyframe step (collate's `step`) as a learned vector, or zeros when the config has no
    `step_input` (then it holds no weights, so older checkpoints load unchanged)."""

    def __init__(self, enabled: bool, dim: int):
        super().__init__()
        self.dim = dim
        self.embedding = nn.Embedding(STEP_BUCKETS, dim) if enabled else None

    def forward(self, step: torch.Tensor) -> torch.Tensor:
        if self.embedding is None:
            return torch.zeros(len(step), self.dim, device=step.device)
        return self.embedding(step)


def mlp(dims: list[int]) -> nn.Sequential:
    layers = []
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(dims) - 2:
            layers.append(nn.GELU())
    return nn.Sequential(*layers)


def normalize_position(position: torch.Tensor, box_min: torch.Tensor, box_max: torch.Tensor) -> torch.Tensor:
    """Metres -> [-1, 1] over the box."""
    return 2 * (position - box_min) / (box_max - box_min) - 1


def denormalize_position(position: torch.Tensor, box_min: torch.Tensor, box_max: torch.Tensor) -> torch.Tensor:
    return box_min + (position + 1) / 2 * (box_max - box_min)


def normalized_proprio(proprio: torch.Tensor, box_min: torch.Tensor, box_max: torch.Tensor) -> torch.Tensor:
    """(B, 8) proprioception with the position in [-1, 1] over the box and the width in units of open (8 cm)."""
    return torch.cat([normalize_position(proprio[:, :3], box_min, box_max), proprio[:, 3:7],
                      proprio[:, 7:] / 0.08], dim=1)


def quaternion_to_matrix(q: torch.Tensor) -> torch.Tensor:
    """(..., 4) x, y, z, w -> (..., 3, 3)."""
    q = q / q.norm(dim=-1, keepdim=True).clamp(min=1e-9)
    x, y, z, w = q.unbind(-1)
    return torch.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w),
        2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w),
        2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y),
    ], dim=-1).reshape(*q.shape[:-1], 3, 3)


def matrix_to_rotation_6d(m: torch.Tensor) -> torch.Tensor:
    """The first two columns (Zhou et al.): a continuous rotation representation, unlike quaternions."""
    return torch.cat([m[..., :, 0], m[..., :, 1]], dim=-1)


def rotation_6d_to_matrix(r: torch.Tensor) -> torch.Tensor:
    """Gram-Schmidt back to a proper rotation; any 6 numbers with independent halves give a valid one."""
    a = r[..., :3] / r[..., :3].norm(dim=-1, keepdim=True).clamp(min=1e-9)
    b = r[..., 3:] - (a * r[..., 3:]).sum(-1, keepdim=True) * a
    b = b / b.norm(dim=-1, keepdim=True).clamp(min=1e-9)
    return torch.stack([a, b, torch.cross(a, b, dim=-1)], dim=-1)


def matrices_to_quaternions(m: torch.Tensor) -> np.ndarray:
    """(..., 3, 3) -> (..., 4) unit quaternions x, y, z, w (numpy; geometry's robust conversion)."""
    flat = m.detach().double().cpu().reshape(-1, 3, 3).numpy()
    return np.stack([matrix_to_quaternion(x) for x in flat]).reshape(*m.shape[:-2], 4)


class LearnedPolicy(Policy):
    """Policy shell around a model: builds it from the config (random weights seeded with `seed`, or the
    `checkpoint` folder), runs it on one observation and returns the next keyframe(s), clipped to the
    workspace box, finite, with unit quaternions. Subclasses set `name`, `config_class` and `model_class`."""

    name: str = ""
    model_class: type[nn.Module]

    def __init__(self, config=None, **overrides):
        config = replace(config or self.config_class(), **overrides)
        config = replace(config, checkpoint=resolve_checkpoint(config.checkpoint))
        if config.checkpoint:
            with checkpoint_errors(config.checkpoint):
                saved = read_config(Path(config.checkpoint), self.config_class)
            config = replace(saved, **{name: getattr(config, name) for name in RUNTIME_FIELDS})
        self.config = config
        self.required_inputs = required_inputs(config)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            self.model = self.model_class(config)
        self.init_note = None
        if config.checkpoint:
            with checkpoint_errors(config.checkpoint):
                state = load_file(str(Path(config.checkpoint) / WEIGHTS_NAME))
                broken = [name for name, tensor in state.items()
                          if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all())]
                if broken:
                    raise ValueError(f"non-finite weights in {', '.join(sorted(broken)[:3])}")
                self.model.load_state_dict(state, strict=True)
        else:
            self.init_note = (f"{self.name}: no checkpoint, randomly initialised weights (seed {config.seed}); "
                              f"its actions are meaningless until trained")
            logger.warning(self.init_note)
        self.model.eval()
        self.release_gate = ReleaseGate(config.release_confirmations, config.release_threshold,
                                        config.placement_radius)
        self._steps = 0
        self._lifted: tuple | None = None     # (path, its LiftedPath or None) lifted on the episode's first frame
        self._placement = (None, "")          # the container's position and its source (placement_point)

    def reset(self) -> None:
        self._steps = 0
        self._lifted, self._placement = None, (None, "")
        self.release_gate.reset()

    def _episode_lifted_path(self, observation: Observation):
        """The path lifted once per episode, on the first observation that has it (the arm still at its start,
        out of the path's way), and again whenever a new path arrives; None without a path. path_points needs
        it (a failure is a PolicyError); the release gate only uses it when there is one."""
        if observation.path_points is not None:
            return observation.path_points
        if observation.path is None or observation.camera is None:
            return None
        if self._lifted is None or self._lifted[0] != observation.path:
            try:
                lifted = lifted_path(observation)
            except PolicyError:
                if self.config.conditioning in LIFTED_PATH_MODES:
                    raise
                lifted = None
            self._lifted = (observation.path, lifted)
        return self._lifted[1]

    def _episode_placement(self, observation: Observation, lifted):
        """The release gate's placement point: located once per episode from the container's mask (early, the arm
        still out of the way); until masks arrive, from the path."""
        if self._placement[1] != "mask":
            self._placement = placement_point(observation, lifted)
        return self._placement[0]

    def select_action(self, observation: Observation) -> PolicyOutput:
        missing = self.missing_inputs(observation)
        if missing:
            raise PolicyError(f"{self.name} needs {', '.join(missing)}")
        config = self.config
        if self._steps >= config.max_keyframes:
            raise PolicyError(f"{self.name} predicted {self._steps} keyframes without finishing "
                              f"(max_keyframes={config.max_keyframes})")
        lifted = self._episode_lifted_path(observation)
        if config.conditioning in LIFTED_PATH_MODES:
            observation = replace(observation, path_points=lifted)
        batch = collate([prepare_inputs(observation, config, step=self._steps)])
        generator = torch.Generator().manual_seed(config.seed)
        with torch.inference_mode():
            prediction = self.model.predict(batch, generator=generator)
        position = prediction["position"][0].double().numpy()
        quaternion = np.asarray(prediction["quaternion"][0], dtype=float)
        closed_prob = prediction["gripper"][0].double().numpy()
        done_prob = float(prediction["done"][0])
        if not (np.all(np.isfinite(position)) and np.all(np.isfinite(quaternion)) and np.isfinite(done_prob)):
            raise PolicyError(f"{self.name} produced a non-finite prediction")
        clipped = np.clip(position, config.workspace_min, config.workspace_max)
        placement = self._episode_placement(observation, lifted)
        keyframes, closed, releases = [], gripper_is_closed(observation.gripper_width), []
        for p, q, prob in zip(clipped, quaternion, closed_prob):
            state = bool(prob > 0.5)
            if closed and state:
                self.release_gate.held()
            elif closed and not state:    # a release: only when the gate passes it
                decision = self.release_gate.decide(float(prob), p, placement)
                releases.append(decision.reason)
                state = not decision.release
            change = (GripperState.CLOSED if state else GripperState.OPEN) if state != closed else None
            keyframes.append(Keyframe(Pose(p, q), change))
            closed = state
        self._steps += 1
        # A deferred release keeps the object in hand: the episode cannot be finished by this plan.
        deferred = any(reason in ("deferred", "not_confident") for reason in releases)
        done = (config.always_done or done_prob > 0.5) and not deferred
        info = {"policy": self.name, "step": self._steps, "done_prob": round(done_prob, 3),
                "gripper_closed_prob": [round(float(p), 3) for p in closed_prob],
                "release": releases,
                "clipped_to_workspace": bool(np.any(clipped != position)),
                "checkpoint": config.checkpoint or None}
        if self.init_note:
            info["warning"] = self.init_note
        return PolicyOutput(keyframes, done=done, info=info)

    def save_pretrained(self, path) -> Path:
        """config.json (without deployment fields' paths) + model.safetensors in the folder `path`."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        config = self.config.to_dict() | {"checkpoint": ""}
        (path / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")
        save_file({k: v.detach().contiguous() for k, v in self.model.state_dict().items()}, str(path / WEIGHTS_NAME),
                  metadata={"policy": self.name})
        return path

    @classmethod
    def from_pretrained(cls, path, **overrides) -> "LearnedPolicy":
        """The policy saved in folder `path`; `overrides` may set the deployment fields (max_keyframes,
        always_done), the rest is the checkpoint's."""
        others = sorted(set(overrides) - set(RUNTIME_FIELDS[1:]))
        if others:
            raise ValueError(f"a checkpoint fixes {', '.join(others)}; only {', '.join(RUNTIME_FIELDS[1:])} can be "
                             f"overridden")
        return cls(checkpoint=str(path), **overrides)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())


@contextmanager
def checkpoint_errors(checkpoint):
    """Any failure to load a checkpoint (corrupt, truncated, wrong shapes, NaN weights, bad config) becomes one
    ValueError naming the folder: nodes end on it with one FATAL line and exit 2, not a traceback."""
    try:
        yield
    except Exception as error:  # noqa: BLE001 - safetensors, torch and json each raise their own kinds
        detail = "; ".join(line.strip() for line in str(error).splitlines() if line.strip())
        detail = detail if len(detail) <= 300 else detail[:300] + "..."
        raise ValueError(f"cannot load checkpoint {checkpoint}: {type(error).__name__}: {detail}") from error


def read_config(path: Path, config_class):
    """The config saved in a checkpoint folder; unknown or bad fields raise ValueError naming them."""
    if not (path / CONFIG_NAME).is_file() or not (path / WEIGHTS_NAME).is_file():
        raise ValueError(f"checkpoint {path} needs {CONFIG_NAME} and {WEIGHTS_NAME}")
    values = json.loads((path / CONFIG_NAME).read_text())
    known = {f.name for f in fields(config_class)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"checkpoint {path}/{CONFIG_NAME} has unknown {config_class.__name__} fields: "
                         f"{', '.join(unknown)}")
    return config_class(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})
