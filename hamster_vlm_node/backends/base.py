"""The one VLM backend interface: (image, instruction, context) -> the model's answer text.

Backends return raw text; the node always runs it through the strict HAMSTER parser, so no backend, however
wrong its output, can hand the policy an invalid path.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from hamster_core.camera import PinholeCamera
from hamster_core.geometry import Pose
from hamster_core.registry import Registry


@dataclass
class VlmRequest:
    image: np.ndarray                    # (H, W, 3) uint8 RGB
    instruction: str
    camera: PinholeCamera | None = None  # for backends that need geometry (the oracle, the gripper-position line)
    tcp_pose: Pose | None = None
    scene_json: str | None = None        # simulator ground truth (/sim/scene), for the oracle only


class VlmBackend(ABC):
    model_id: str = "unknown"

    @abstractmethod
    def query(self, request: VlmRequest) -> str:
        """The model's answer text for one request. Raises VlmError when no answer can be produced."""


class VlmError(RuntimeError):
    """The backend could not produce an answer (server down, missing context, ...)."""


VLM_BACKENDS: Registry[VlmBackend] = Registry("VLM backend", ("hamster_vlm_node.backends.oracle",))
