"""The one policy interface. Every low-level policy (path follower, RVT-2, 3D Diffuser Actor, ...) is a
`Policy` registered by name in POLICIES, so `policy:=<name>` swaps it without touching the node."""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np

from hamster_core.camera import PinholeCamera
from hamster_core.executor import Keyframe
from hamster_core.geometry import Pose
from hamster_core.lifting import LiftedPath
from hamster_core.path2d import Path2D
from hamster_core.registry import Registry


@dataclass
class Observation:
    """Everything a policy may look at, in the robot base frame, taken at `stamp` (seconds)."""

    stamp: float
    instruction: str
    tcp_pose: Pose
    gripper_width: float
    points: np.ndarray                      # (N, 3) float32, finite
    colors: np.ndarray | None = None        # (N, 3) uint8
    camera: PinholeCamera | None = None
    rgb: np.ndarray | None = None           # (H, W, 3) uint8
    path: Path2D | None = None              # normalized to the camera image
    masks: dict[str, np.ndarray] = field(default_factory=dict)  # label -> (H, W) bool
    path_points: LiftedPath | None = None   # the path lifted on the episode's first frame (path_points mode)


@dataclass
class PolicyOutput:
    keyframes: list[Keyframe]
    done: bool                              # executing these keyframes finishes the task
    info: dict = field(default_factory=dict)


class PolicyError(ValueError):
    """The observation cannot be turned into a safe plan (missing input, no 3D support for the path, ...)."""


class Policy(ABC):
    #: Dataclass of the policy's settings; nodes expose its fields as `<policy name>.<field>` parameters.
    config_class: type | None = None
    #: Observation fields that must be present (not None / non-empty) before select_action is called.
    required_inputs: frozenset[str] = frozenset({"points"})

    @abstractmethod
    def reset(self) -> None:
        """Forget any per-episode state."""

    @abstractmethod
    def select_action(self, observation: Observation) -> PolicyOutput:
        """Next keyframes for this observation. Raises PolicyError when it cannot plan safely."""

    def missing_inputs(self, observation: Observation) -> list[str]:
        missing = []
        for name in sorted(self.required_inputs):
            value = getattr(observation, name)
            if value is None or (hasattr(value, "__len__") and len(value) == 0):
                missing.append(name)
        return missing


def refuse_random_weights(policy: Policy, allow: bool, where: str) -> str | None:
    """A learned policy without a checkpoint acts at random: raise ValueError unless `allow` (the simulator's
    explicit flag); returns the warning to show on the terminal when it runs anyway, else None."""
    note = getattr(policy, "init_note", None)
    if note is None:
        return None
    if not allow:
        raise ValueError(f"{policy.name} has no checkpoint ({policy.name}.checkpoint is empty): refusing to run "
                         f"randomly initialised weights {where}. Set {policy.name}.checkpoint to a trained folder "
                         f"(checkpoints/{policy.name} ships one), or in the simulator pass --random-weights")
    return f"WARNING: {note}"


POLICIES: Registry[Policy] = Registry("policy", "hamster_runtime.policies")
