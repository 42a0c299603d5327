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
from hamster_core.answer_formats import answer_format as _answer_format, resolve_prompt_template
from hamster_core.path2d import build_prompt
from hamster_core.registry import Registry


@dataclass
class VlmRequest:
    image: np.ndarray                    # (H, W, 3) uint8 RGB
    instruction: str
    camera: PinholeCamera | None = None  # for backends that need geometry (the oracle, the gripper-position line)
    tcp_pose: Pose | None = None
    scene_json: str | None = None        # simulator ground truth (/sim/scene), for the oracle only
    gripper_xy: tuple[float, float] | None = None  # the gripper's normalized image position, when known directly
    # Another question than the path (e.g. the grounding phrases): this template instead of the backend's, and no
    # gripper-position line.
    prompt_template: str | None = None


class VlmBackend(ABC):
    model_id: str = "unknown"
    answer_format: str = "hamster"  # how the answer text is written (hamster_core.answer_formats.ANSWER_FORMATS)
    # Request fields besides the image that `query` cannot do without ("camera", "tcp_pose", "scene_json"): the
    # node waits for them before it spends an attempt.
    required_inputs: frozenset[str] = frozenset()

    @abstractmethod
    def query(self, request: VlmRequest) -> str:
        """The model's answer text for one request. Raises VlmError when no answer can be produced."""


class VlmError(RuntimeError):
    """The backend could not produce an answer (server down, missing context, ...)."""


EXCERPT_CHARS = 300


def excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    """`text` on one line and cut to `limit` characters (with the full length said): how a model's answer or a
    server's reply appears in any message, however long it was."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def gripper_image_position(request: VlmRequest) -> tuple[float, float]:
    """The TCP projected into the request's image, in normalized coordinates. A TCP outside the view is put on
    the image border (the nearest point the model can refer to); one behind the camera is an error. A request
    that carries `gripper_xy` (hamster-plan --gripper-xy) is taken at its word."""
    if request.gripper_xy is not None:
        x, y = (float(value) for value in request.gripper_xy)
        return x, y
    if request.camera is None or request.tcp_pose is None:
        raise VlmError("the gripper position in the prompt needs the camera model and the end-effector pose")
    pixels, depth = request.camera.project(np.asarray(request.tcp_pose.position, dtype=np.float64)[None])
    if not depth[0] > 0:
        raise VlmError("the end effector is behind the camera: cannot tell the model where it is")
    x, y = np.clip(request.camera.normalize(pixels)[0], 0.0, 1.0)
    return float(x), float(y)


class PromptedBackend(VlmBackend):
    """A backend that sends a real model the prompt: the template (by default the answer format's own, for
    `hamster` HAMSTER's released prompt; a name of answer_formats.PROMPT_TEMPLATES; or a template of its own;
    `{instruction}` replaced) plus, with `gripper_position`, a line saying where the gripper is in the image.
    `answer_format` (answer_formats.ANSWER_FORMATS) says how the model answers and so how the answer is read."""

    def __init__(self, prompt_template: str = "", gripper_position: bool = False, answer_format: str = "hamster"):
        self.answer_format = _answer_format(answer_format).name
        # An empty template means "the default", so a parameter file can leave it blank.
        self.prompt_template = resolve_prompt_template(prompt_template, _answer_format(answer_format).prompt_template)
        if not isinstance(gripper_position, bool):
            raise ValueError(f"gripper_position must be a bool, got {gripper_position!r}")
        self.gripper_position = gripper_position
        self.required_inputs = frozenset({"camera", "tcp_pose"}) if gripper_position else frozenset()

    def prompt(self, request: VlmRequest) -> str:
        own = request.prompt_template is None
        gripper_xy = gripper_image_position(request) if self.gripper_position and own else None
        try:
            return build_prompt(request.instruction, gripper_xy,
                                self.prompt_template if own else request.prompt_template)
        except ValueError as error:  # an empty instruction: no query to make
            raise VlmError(str(error)) from error


VLM_BACKENDS: Registry[VlmBackend] = Registry("VLM backend", "hamster_runtime.vlm_backends")
