"""The VLM node's core without ROS, shared by the node and `hamster-plan`: backend construction from a flat
config, and one planning call = query -> strict parse -> RDP -> optional resampling, timed per stage.

Config keys are the node's parameter names: `backend`, `max_points`, `rdp_epsilon`, `resample_points`, and
`<backend>.<name>` for the selected backend's own options (keys of other backends are ignored, so one file can
configure them all). Each backend option's default comes from its constructor, so the node, the CLI and the
backends cannot disagree about it.
"""
from __future__ import annotations

import inspect
import math
import time
from dataclasses import dataclass, field

from hamster_core.answer_formats import answer_format
from hamster_core.path2d import Path2D, PathParseError, resample, simplify_rdp
from hamster_core.vlm import VLM_BACKENDS, VlmBackend, VlmError, VlmRequest

# Why each backend option exists (the defaults are read from the constructors).
_PROMPT = {
    "prompt_template": "Prompt with an {instruction} placeholder, or a named one: hamster (HAMSTER's released "
                       "client, byte for byte), hamster_paper (the paper's Figure 10), qwen_points, molmo_points; "
                       "empty = the answer format's own.",
    "answer_format": "How the model answers: hamster (<ans>[(x, y), <action>...</action>]</ans>), qwen_points "
                     "(Qwen2.5-VL JSON point_2d in pixels of its resized image) or molmo_points (Molmo <point> tags "
                     "in percent); point labels grasp/release mark the gripper changes.",
    "gripper_position": "Add a line with the gripper's current image position (TCP projected with the camera).",
}
DESCRIPTIONS: dict[str, dict[str, str]] = {
    "oracle": {"rdp_epsilon": "RDP epsilon (normalized image units) for the oracle's path."},
    "openai": {
        "base_url": "Server base URL, used verbatim + '/chat/completions' (HAMSTER's server has no /v1).",
        "model": "Model name sent with every request; HAMSTER's server refuses any other than its own.",
        "timeout_sec": "Time limit of one request, connection to last byte.",
        "deadline_sec": "Time limit of one query, all its retries and backoff included.",
        "retries": "Extra tries after transient failures only: no connection, a timeout, HTTP 429/502/503/504 "
                   "(never after a 500 or another 4xx: a wrong model name does not go away).",
        "backoff_sec": "Wait before the first retry; doubles with every further retry.",
        "api_key_env": "NAME of the environment variable holding the API key (sent as a Bearer token); "
                       "empty = no key. The key itself is never logged.",
        "image_format": "How the image is sent: jpeg or png (base64 data URL).",
        "jpeg_quality": "JPEG quality (1-100) when image_format is jpeg.",
        "max_response_bytes": "Larger responses are refused.",
        "max_tokens": "Sampling: answer length limit in tokens.",
        "temperature": "Sampling temperature (HAMSTER's client sends 0).",
        "top_p": "Sampling: nucleus probability mass.",
        "num_beams": "Sampling: beam count (a HAMSTER server field).",
        "use_cache": "Sampling: the server's KV-cache flag (a HAMSTER server field).",
        **_PROMPT,
    },
    "transformers": {
        "checkpoint": "Image-text-to-text checkpoint folder or hub id, loaded once at start "
                      "(AutoProcessor + AutoModelForImageTextToText; no video processor, so no torchvision, needed).",
        "device": "Torch device, e.g. cpu or cuda:0; empty = cuda when available, else cpu.",
        "dtype": "Model dtype: float32, bfloat16, float16, auto (the checkpoint's own); empty = bfloat16 on a CUDA "
                 "GPU that supports it, else float32.",
        "max_new_tokens": "Generation: answer length limit in tokens.",
        "do_sample": "Generation: sample instead of greedy/beam search.",
        "num_beams": "Generation: beam count.",
        "temperature": "Generation: temperature (with do_sample).",
        "top_p": "Generation: nucleus probability mass (with do_sample).",
        "use_chat_template": "Format the prompt with the processor's chat template when it has one.",
        **_PROMPT,
    },
}

# Planner options common to all backends: name -> (default, description).
PLANNER_PARAMETERS = {
    "max_points": (64, "Answers with more points than this are rejected."),
    "rdp_epsilon": (0.0, "RDP simplification of the parsed path (normalized units); 0 = off. Ends and gripper "
                         "changes are always kept."),
    "resample_points": (0, "Resample the path to this many points evenly spaced by arc length; 0 = off."),
}


@dataclass(frozen=True)
class BackendParameter:
    name: str
    default: object
    description: str


def backend_parameters(name: str) -> list[BackendParameter]:
    """The options of backend `name`, with the constructor's defaults and their descriptions."""
    factory = VLM_BACKENDS.get(name)
    descriptions = DESCRIPTIONS.get(name, {})
    parameters = []
    for parameter in inspect.signature(factory).parameters.values():
        if parameter.default is inspect.Parameter.empty or parameter.kind is not parameter.POSITIONAL_OR_KEYWORD:
            continue
        parameters.append(BackendParameter(parameter.name, parameter.default,
                                           descriptions.get(parameter.name, parameter.name)))
    return parameters


def create_backend(name: str, config: dict | None = None) -> VlmBackend:
    """Backend `name` from a flat config: `<name>.<option>` keys are its options, other keys are ignored.
    Unknown options of this backend raise ValueError (a typo must not silently fall back to a default)."""
    known = {parameter.name for parameter in backend_parameters(name)}
    prefix = f"{name}."
    options = {key[len(prefix):]: value for key, value in (config or {}).items() if key.startswith(prefix)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(f"unknown option(s) for the {name} backend: {', '.join(unknown)}; "
                         f"known: {', '.join(sorted(known))}")
    return VLM_BACKENDS.create(name, **options)


@dataclass
class PlanResult:
    path: Path2D            # after simplification and resampling: what the policy gets
    parsed: Path2D          # as the model answered
    answer: str
    timing: dict[str, float] = field(default_factory=dict)


class PlanError(RuntimeError):
    """No path: the backend failed (stage "query") or its answer was rejected (stage "parse")."""

    def __init__(self, stage: str, message: str, answer: str | None = None, timing: dict | None = None):
        super().__init__(message)
        self.stage, self.answer, self.timing = stage, answer, timing or {}


class Planner:
    def __init__(self, backend: VlmBackend, max_points: int = 64, rdp_epsilon: float = 0.0, resample_points: int = 0):
        if not isinstance(max_points, int) or isinstance(max_points, bool) or max_points < 1:
            raise ValueError(f"max_points must be an integer >= 1, got {max_points!r}")
        if not isinstance(rdp_epsilon, (int, float)) or not math.isfinite(rdp_epsilon) or rdp_epsilon < 0:
            raise ValueError(f"rdp_epsilon must be a finite number >= 0, got {rdp_epsilon!r}")
        if not isinstance(resample_points, int) or isinstance(resample_points, bool) \
                or resample_points < 0 or resample_points == 1:
            raise ValueError(f"resample_points must be 0 (off) or an integer >= 2, got {resample_points!r}")
        self.backend = backend
        self.answer_format = answer_format(getattr(backend, "answer_format", "hamster"))
        self.max_points, self.rdp_epsilon, self.resample_points = max_points, float(rdp_epsilon), resample_points

    @property
    def model_id(self) -> str:
        return self.backend.model_id

    def plan(self, request: VlmRequest) -> PlanResult:
        """One query on `request` and its answer turned into a path. Raises PlanError with the reason."""
        height, width = request.image.shape[:2]
        if hasattr(self.backend, "last_call"):
            self.backend.last_call = {}  # no stale figures from the previous call
        started = time.perf_counter()
        try:
            answer = self.backend.query(request)
        except VlmError as error:
            raise PlanError("query", str(error), timing=self._timing(query_sec=time.perf_counter() - started)) \
                from error
        queried = time.perf_counter()
        try:
            parsed = self.answer_format.parse(answer, max_points=self.max_points, image_size=(width, height))
        except PathParseError as error:
            raise PlanError("parse", f"the answer is not a valid path: {error}", answer,
                            self._timing(query_sec=queried - started)) from error
        parsed_at = time.perf_counter()
        path = simplify_rdp(parsed, self.rdp_epsilon) if self.rdp_epsilon > 0 else parsed
        if self.resample_points:
            try:
                path = resample(path, self.resample_points)
            except ValueError as error:  # more gripper changes than samples
                raise PlanError("parse", f"cannot resample the path: {error}", answer,
                                self._timing(query_sec=queried - started)) from error
        done = time.perf_counter()
        return PlanResult(path, parsed, answer, self._timing(query_sec=queried - started,
                                                             parse_sec=parsed_at - queried,
                                                             process_sec=done - parsed_at))

    def _timing(self, **stages: float) -> dict[str, float]:
        timing = {key: round(value, 6) for key, value in stages.items()}
        for key, value in getattr(self.backend, "last_call", {}).items():  # e.g. HTTP requests, generate time
            timing[f"backend_{key}"] = round(value, 6) if isinstance(value, float) else value
        return timing


def planner_from_config(config: dict) -> Planner:
    """A Planner from a flat config (see the module docstring); ValueError names any bad value."""
    name = config.get("backend", "oracle")
    options = {key: config.get(key, default) for key, (default, _) in PLANNER_PARAMETERS.items()}
    return Planner(create_backend(name, config), **options)
