"""Observation -> inputs of the learned 3D policies (RVT-2, 3D Diffuser Actor), in one place so inference and
training see exactly the same thing.

Steps: crop the base-frame cloud to the workspace box, downsample it to a fixed number of points, and give
every point features = RGB in [0, 1] followed by the conditioning channels that `conditioning` selects:
- `none`           nothing more (the baseline without the VLM's path);
- `path_overlay`   the path drawn on the camera image the HAMSTER way (`draw_path`) before lifting: points
                   whose pixel the drawing covers take its colour (the image is the RGB image, or the cloud's
                   colours splatted into the camera when there is none);
- `path_channels`  `draw_path_channels` (progress, gripper open, gripper closed) at each point's pixel;
- `masks`          one channel per label of `mask_labels`: 1 where the point's pixel is in that mask (a label
                   missing from the observation's masks is all zeros: nothing of it is visible);
- `path_points`    the path lifted into 3D on the episode's first frame (`observation.path_points`, see
                   hamster_core.lifting.lift_path) and added as points (its 64, at most num_points / 4) with
                   black RGB and the path channels; scene points carry zeros there. Looked up per pixel on a
                   later frame, the path's end lands on the hand, which by then stands between the camera and
                   the container (bench/results_learned_policies_ablation.md).
- `path_channels_points`  both views of the path: the scene points carry `path_channels`, the lifted path is
                   added as in `path_points`, and one more channel is 1 on the lifted points (black RGB alone
                   would not tell them from a black object).
A point's pixel is its projection into `observation.camera` (no occlusion test: a point hidden behind another
one gets the same pixel's values, as lifting an image with depth would not, but the cloud comes from that
camera so hidden points are rare).
Proprioception is the TCP position, its quaternion (x, y, z, w) and the gripper width: 8 numbers.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass, fields

import numpy as np

from hamster_core.drawing import PATH_CHANNELS, draw_path, draw_path_channels
from hamster_core.geometry import Pose, quaternion_multiply
from hamster_core.lifting import LiftedPath, ProjectedCloud, lift_path
from hamster_core.path2d import GripperState, Path2D
from hamster_core.policies.base import Observation, PolicyError
from hamster_core.policies.gripper_gate import ReleaseGate

CONDITIONING_MODES = ("none", "path_overlay", "path_channels", "masks", "path_points", "path_channels_points")
#: Modes that add the path lifted on the episode's first frame as points.
LIFTED_PATH_MODES = ("path_points", "path_channels_points")
SAMPLING_MODES = ("voxel", "random")
PROPRIO_DIM = 8
#: Keyframe steps the `step_input` embedding tells apart; later steps share the last one (an expert episode has 6).
STEP_BUCKETS = 8
#: Inputs each conditioning mode needs besides `points` (and colours or an RGB image).
MODE_INPUTS = {"none": (), "path_overlay": ("camera", "path"), "path_channels": ("camera", "path"),
               "masks": ("camera", "masks"), "path_points": ("camera", "path"),
               "path_channels_points": ("camera", "path")}


@dataclass(frozen=True)
class SceneConfig:
    """Settings shared by the learned 3D policies: what they see and where they may act.

    The workspace box is both the crop of the scene and the box predicted positions are clipped to (so a bad
    prediction fails soft); keep it within the executor's SafetyLimits box plus its 5 cm tolerance. Every
    field has a plain default: the policy node exposes each one as a `<policy>.<field>` ROS parameter.
    """

    conditioning: str = "path_channels"       # none | path_overlay | path_channels | masks | path_points |
                                              # path_channels_points
    mask_labels: tuple = ("target_object", "placement_area")   # channels of `masks` mode, in this order
    workspace_min: tuple = (0.20, -0.45, -0.02)
    workspace_max: tuple = (0.80, 0.45, 0.60)
    num_points: int = 1024                    # points per observation after downsampling (GPU: 4096-8192)
    sampling: str = "voxel"                   # voxel (one point per voxel, then random) | random
    voxel_size: float = 0.01                  # m
    path_noise_std: float = 0.01              # training-time N(0, std) on normalized path points (0: off);
                                              # path_points: on the lifted points, in metres
    path_thickness: int = 0                   # px of the path in path_channels; 0 = draw_path's line for the image
                                              # size (1 px at 320x240 touches few sampled points: README, "Learned
                                              # 3D policies")
    step_input: bool = False                  # give the model how many keyframes this episode has executed, as
                                              # PerAct and RVT give theirs the timestep with the proprioception:
                                              # "above the object" and "grasp" (or "carry" and "release") can
                                              # look alike; false for checkpoints trained before it existed
    max_instruction_tokens: int = 16          # words of the instruction the language embedding reads
    vocab_buckets: int = 1024                 # hashed word buckets of the bag-of-words instruction embedding
    seed: int = 0                             # weight initialisation without a checkpoint, sampling, noise
    checkpoint: str = ""                      # folder with config.json + model.safetensors, which then sets every
                                              # field but learned.RUNTIME_FIELDS; "" = random weights
    max_keyframes: int = 12                   # predictions per episode; one more is refused (PolicyError), no loop
    always_done: bool = False                 # mark every prediction as the last keyframe (one-shot evaluation)
    # Releasing a held object (hamster_core.policies.gripper_gate): passed on over the placement area, or after
    # this many consecutive confident predictions; release_confirmations 1 with release_threshold 0.5 = no gate.
    release_confirmations: int = 2            # consecutive predictions of P(closed) < release_threshold
    release_threshold: float = 0.3            # P(closed) below this is a confident release prediction
    placement_radius: float = 0.06            # m (horizontal) around the path's release point; 0 = rule off

    def __post_init__(self):
        if self.conditioning not in CONDITIONING_MODES:
            raise ValueError(f"conditioning must be one of {', '.join(CONDITIONING_MODES)}, got {self.conditioning!r}")
        if self.sampling not in SAMPLING_MODES:
            raise ValueError(f"sampling must be one of {', '.join(SAMPLING_MODES)}, got {self.sampling!r}")
        labels = tuple(self.mask_labels) if not isinstance(self.mask_labels, str) else (self.mask_labels,)
        if not labels or len(set(labels)) != len(labels) or not all(isinstance(x, str) and x for x in labels):
            raise ValueError(f"mask_labels must be distinct non-empty strings, got {self.mask_labels!r}")
        object.__setattr__(self, "mask_labels", labels)
        low, high = (np.asarray(getattr(self, name), dtype=float) for name in ("workspace_min", "workspace_max"))
        if low.shape != (3,) or high.shape != (3,) or not np.all(np.isfinite(low)) or not np.all(np.isfinite(high)) \
                or np.any(low >= high):
            raise ValueError(f"workspace_min {self.workspace_min} and workspace_max {self.workspace_max} must be "
                             f"3 finite numbers each with min < max")
        object.__setattr__(self, "workspace_min", tuple(float(v) for v in low))
        object.__setattr__(self, "workspace_max", tuple(float(v) for v in high))
        check_int(self, "num_points", 16, 1_000_000)
        check_int(self, "max_instruction_tokens", 1, 512)
        check_int(self, "vocab_buckets", 2, 10_000_000)
        check_int(self, "seed", 0, 2**63 - 1)
        check_int(self, "max_keyframes", 1, 10_000)
        check_int(self, "path_thickness", 0, 64)
        if not 0 < self.voxel_size <= 0.5:
            raise ValueError(f"voxel_size must be in (0, 0.5] m, got {self.voxel_size}")
        if not 0 <= self.path_noise_std <= 0.2:
            raise ValueError(f"path_noise_std must be in [0, 0.2], got {self.path_noise_std}")
        if not isinstance(self.step_input, bool):
            raise ValueError(f"step_input must be true or false, got {self.step_input!r}")
        if not isinstance(self.checkpoint, str):
            raise ValueError(f"checkpoint must be a path string, got {self.checkpoint!r}")
        ReleaseGate(self.release_confirmations, self.release_threshold, self.placement_radius)  # validates them

    def to_dict(self) -> dict:
        return {f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v for f in fields(self)}


def check_int(config, name: str, low: int, high: int) -> None:
    """Config validation: `name` must be an integer (not a bool or float) in [low, high]."""
    value = getattr(config, name)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not low <= value <= high:
        raise ValueError(f"{name} must be an integer in [{low}, {high}], got {value!r}")


def feature_channels(config: SceneConfig) -> int:
    """Per-point feature size: RGB plus the conditioning channels."""
    extra = {"none": 0, "path_overlay": 0, "path_channels": len(PATH_CHANNELS), "masks": len(config.mask_labels),
             "path_points": len(PATH_CHANNELS), "path_channels_points": len(PATH_CHANNELS) + 1}
    return 3 + extra[config.conditioning]


def required_inputs(config: SceneConfig) -> frozenset[str]:
    """Observation fields the policy node must wait for with this conditioning."""
    return frozenset({"points", *MODE_INPUTS[config.conditioning]})


@dataclass
class SceneInputs:
    """One observation, ready for a model: fixed-size arrays, float32."""

    points: np.ndarray          # (num_points, 3) base frame, inside the workspace box
    features: np.ndarray        # (num_points, feature_channels) RGB in [0, 1] + conditioning channels
    proprio: np.ndarray         # (8,) tcp position, quaternion x, y, z, w, gripper width
    tokens: np.ndarray          # (max_instruction_tokens,) int64 hashed word ids, 0 = padding
    pixels: np.ndarray | None   # (num_points, 2) in the camera image, None without a camera
    step: int = 0               # keyframes executed so far in the episode (read with `step_input`)


@dataclass(frozen=True)
class SceneMotion:
    """A training sample's rigid augmentation (PerAct / RVT style): turn by `yaw` radians about the vertical axis
    through `pivot`, then shift by `translation` (m). Scene, TCP and target move together; image features
    (colour, path, masks) stay with the points they were seen on."""

    translation: tuple = (0.0, 0.0, 0.0)
    yaw: float = 0.0
    pivot: tuple = (0.0, 0.0, 0.0)

    def rotation(self) -> np.ndarray:
        c, s = np.cos(self.yaw), np.sin(self.yaw)
        return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])

    def apply(self, points: np.ndarray) -> np.ndarray:
        points = np.asarray(points, dtype=np.float64)
        if self.yaw == 0:
            return points + self.translation
        pivot = np.asarray(self.pivot, dtype=np.float64)
        return (points - pivot) @ self.rotation().T + pivot + self.translation

    def invert(self, points: np.ndarray) -> np.ndarray:
        points = np.asarray(points, dtype=np.float64) - self.translation
        if self.yaw == 0:
            return points
        pivot = np.asarray(self.pivot, dtype=np.float64)
        return (points - pivot) @ self.rotation() + pivot

    def apply_pose(self, pose: Pose) -> Pose:
        turn = np.array([0.0, 0.0, np.sin(self.yaw / 2), np.cos(self.yaw / 2)])
        return Pose(self.apply(pose.position[None])[0], quaternion_multiply(turn, pose.orientation))


def perturb_path(path: Path2D, rng: np.random.Generator, std: float = 0.01) -> Path2D:
    """Training-time augmentation: N(0, std) on every normalized point, clipped to the image; gripper kept."""
    noisy = np.clip(path.points + rng.normal(0.0, std, path.points.shape), 0.0, 1.0)
    return Path2D(noisy, path.gripper)


def crop_to_workspace(points: np.ndarray, config: SceneConfig) -> np.ndarray:
    """Indices of the points inside the workspace box."""
    inside = np.all((points >= config.workspace_min) & (points <= config.workspace_max), axis=1)
    return np.flatnonzero(inside)


def downsample(points: np.ndarray, config: SceneConfig, rng: np.random.Generator,
               count: int | None = None) -> np.ndarray:
    """Exactly `count` (default `num_points`) indices into `points` (non-empty). `voxel` keeps one random point
    per occupied voxel first, so dense surfaces near the camera do not crowd out far ones; either mode then draws
    without replacement, or repeats points when there are too few (repeats change neither rendering nor attention
    much, and fixed sizes batch)."""
    candidates = np.arange(len(points))
    if config.sampling == "voxel":
        order = rng.permutation(len(points))
        cells = np.floor((points[order] - config.workspace_min) / config.voxel_size).astype(np.int64)
        cells -= cells.min(axis=0)
        extent = cells.max(axis=0) + 1
        keys = (cells[:, 0] * extent[1] + cells[:, 1]) * extent[2] + cells[:, 2]   # one integer per voxel
        _, first = np.unique(keys, return_index=True)                          # first in random order
        candidates = np.sort(order[first])
    n = config.num_points if count is None else count
    if len(candidates) >= n:
        return np.sort(rng.choice(candidates, n, replace=False))
    return np.concatenate([candidates, rng.choice(candidates, n - len(candidates), replace=True)])


def proprioception(observation: Observation, motion: SceneMotion | None = None) -> np.ndarray:
    pose = observation.tcp_pose if motion is None else motion.apply_pose(observation.tcp_pose)
    return np.concatenate([pose.position, pose.orientation, [observation.gripper_width]]).astype(np.float32)


def instruction_tokens(instruction: str, max_tokens: int, buckets: int) -> np.ndarray:
    """Lower-cased words hashed (crc32: stable across processes, unlike hash()) into 1..buckets-1; 0 pads.
    A learned bag-of-words over these ids is the instruction embedding: no tokenizer or download needed."""
    words = "".join(c if c.isalnum() else " " for c in instruction.lower()).split()[:max_tokens]
    ids = np.zeros(max_tokens, np.int64)
    ids[:len(words)] = [1 + zlib.crc32(word.encode()) % (buckets - 1) for word in words]
    return ids


def _sample_image(image: np.ndarray, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Values of `image` (H, W, C) at each pixel (N, 2), zero outside; and which pixels were inside."""
    height, width = image.shape[:2]
    with np.errstate(invalid="ignore"):
        u, v = np.floor(pixels[:, 0]), np.floor(pixels[:, 1])
        inside = np.isfinite(u) & np.isfinite(v) & (u >= 0) & (u < width) & (v >= 0) & (v < height)
    values = np.zeros((len(pixels), image.shape[2]), image.dtype)
    values[inside] = image[v[inside].astype(int), u[inside].astype(int)]
    return values, inside


def _camera_image(observation: Observation) -> np.ndarray:
    """The RGB image, or the cloud's colours z-buffered into the camera (black where no point is seen)."""
    camera = observation.camera
    if observation.rgb is not None:
        if observation.rgb.shape != (camera.height, camera.width, 3):
            raise PolicyError(f"rgb image is {observation.rgb.shape}, camera is {camera.height}x{camera.width}")
        return observation.rgb
    index = ProjectedCloud(observation.points, camera).index
    image = np.zeros((camera.height, camera.width, 3), np.uint8)
    image[index >= 0] = np.asarray(observation.colors)[index[index >= 0]]
    return image


def lifted_path(observation: Observation) -> LiftedPath:
    """The observation's path lifted on the observation's own frame. Policies lift once per episode, on their
    first observation (LearnedPolicy), and training samples carry their episode's (hamster_bag.demonstration_dataset)."""
    try:
        return lift_path(observation.path, observation.points, observation.camera)
    except ValueError as error:
        raise PolicyError(f"cannot lift the path: {error}") from error


def overlay_path(image: np.ndarray, path: Path2D) -> np.ndarray:
    """`path_overlay`'s drawing: the runtime's own reading (open until the grasp, smooth lines), not the released
    client's drawing for the VLM (drawing.py's default): the learned policies were trained on this one."""
    return draw_path(image, path, start_state=GripperState.OPEN, antialias=True)


def prepare_inputs(observation: Observation, config: SceneConfig, rng: np.random.Generator | None = None,
                   train: bool = False, motion: SceneMotion | None = None, step: int = 0) -> SceneInputs:
    """The model inputs for one observation, `step` keyframes into its episode. `rng` drives downsampling (and
    path noise when `train` and `config.path_noise_std` > 0); without one a generator seeded with `config.seed`
    makes inference repeatable.
    `motion` (training augmentation) moves the scene and the TCP rigidly before the workspace crop; image
    features (colour, path, masks) still come from where the camera saw each point.
    Raises PolicyError (a ValueError) naming what the conditioning mode needs and the observation lacks."""
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 0:
        raise ValueError(f"step must be an integer >= 0, got {step!r}")
    rng = np.random.default_rng(config.seed) if rng is None else rng
    mode = config.conditioning
    needed = [name for name in MODE_INPUTS[mode]
              if getattr(observation, name) is None or (name == "masks" and not observation.masks)]
    if observation.colors is None and (observation.rgb is None or observation.camera is None):
        needed.append("colors (or rgb with camera)")
    if needed:
        raise PolicyError(f"conditioning {mode!r} needs {', '.join(needed)} in the observation")
    points_all = np.asarray(observation.points, dtype=np.float64).reshape(-1, 3)
    if observation.colors is not None and len(observation.colors) != len(points_all):
        raise PolicyError(f"colors has {len(observation.colors)} rows for {len(points_all)} points")

    motion = motion or SceneMotion()
    inside = crop_to_workspace(motion.apply(points_all), config)
    if len(inside) == 0:
        raise PolicyError(f"no point of the cloud is inside the workspace {config.workspace_min}.."
                          f"{config.workspace_max}")
    path_xyz = path_features = None
    if mode in LIFTED_PATH_MODES:   # up to a quarter of the points, evenly along the lifted path
        lifted = observation.path_points if observation.path_points is not None else lifted_path(observation)
        along = np.round(np.linspace(0, len(lifted.points) - 1, min(len(lifted.points), config.num_points // 4)))
        path_xyz, path_features = lifted.points[along.astype(int)], lifted.channels[along.astype(int)]
    keep = inside[downsample(points_all[inside], config, rng,
                             config.num_points - (len(path_xyz) if path_xyz is not None else 0))]
    points = points_all[keep]
    camera = observation.camera
    pixels = camera.project(points)[0] if camera is not None else None

    if observation.colors is not None:
        rgb = np.asarray(observation.colors)[keep].astype(np.float32) / 255.0
    else:
        rgb = _sample_image(observation.rgb, pixels)[0].astype(np.float32) / 255.0
    channels = [rgb]
    path = observation.path
    if path is not None and train and config.path_noise_std > 0:
        path = perturb_path(path, rng, config.path_noise_std)
    if mode == "path_overlay":
        image = _camera_image(observation)
        drawn = overlay_path(image, path)
        changed = np.any(drawn != image, axis=2)[..., None]
        overlay, _ = _sample_image(np.concatenate([drawn, changed.astype(np.uint8)], axis=2), pixels)
        on_path = overlay[:, 3] > 0
        rgb[on_path] = overlay[on_path, :3].astype(np.float32) / 255.0
    elif mode in ("path_channels", "path_channels_points"):
        channels.append(_sample_image(draw_path_channels(camera.height, camera.width, path,
                                                         thickness=config.path_thickness or None), pixels)[0])
    elif mode == "masks":
        stack = []
        for label in config.mask_labels:
            # Perception publishes what it sees: a label it left out (the object hidden in the hand) is an empty
            # mask, as the simulator's segmentation gives it in training.
            mask = np.asarray(observation.masks.get(label, np.zeros((camera.height, camera.width), bool)))
            if mask.shape != (camera.height, camera.width):
                raise PolicyError(f"mask {label!r} is {mask.shape}, camera is {camera.height}x{camera.width}")
            stack.append(mask.astype(bool))
        channels.append(_sample_image(np.stack(stack, axis=2).astype(np.float32), pixels)[0])
    if path_xyz is not None:   # the lifted path's points: black, with the path channels
        if train and config.path_noise_std > 0:
            path_xyz = path_xyz + rng.normal(0.0, config.path_noise_std, path_xyz.shape)
        path_xyz = motion.invert(np.clip(motion.apply(path_xyz), config.workspace_min, config.workspace_max))
        scene_path = channels[1] if mode == "path_channels_points" else \
            np.zeros((len(points), len(PATH_CHANNELS)), np.float32)
        channels = [np.concatenate([rgb, np.zeros((len(path_xyz), 3), np.float32)]),
                    np.concatenate([scene_path, path_features])]
        if mode == "path_channels_points":
            channels.append(np.concatenate([np.zeros((len(points), 1), np.float32),
                                            np.ones((len(path_xyz), 1), np.float32)]))
        points = np.concatenate([points, path_xyz])
        pixels = np.concatenate([pixels, camera.project(path_xyz)[0]])
    return SceneInputs(points=motion.apply(points).astype(np.float32),
                       features=np.concatenate(channels, axis=1).astype(np.float32),
                       proprio=proprioception(observation, motion),
                       tokens=instruction_tokens(observation.instruction, config.max_instruction_tokens,
                                                 config.vocab_buckets),
                       pixels=None if pixels is None else pixels.astype(np.float32), step=int(step))


def collate(inputs: list[SceneInputs]) -> dict:
    """Stack SceneInputs into a batch of torch tensors: points (B, N, 3), features (B, N, C), proprio (B, 8),
    tokens (B, L), step (B,) int64 in [0, STEP_BUCKETS). Targets, for training, are added by `add_targets`."""
    import torch
    return {"points": torch.from_numpy(np.stack([x.points for x in inputs])),
            "features": torch.from_numpy(np.stack([x.features for x in inputs])),
            "proprio": torch.from_numpy(np.stack([x.proprio for x in inputs])),
            "tokens": torch.from_numpy(np.stack([x.tokens for x in inputs])),
            "step": torch.tensor([min(x.step, STEP_BUCKETS - 1) for x in inputs], dtype=torch.int64)}


def add_targets(batch: dict, keyframes: list[list], done: list[bool], gripper_closed: list[list[bool]]) -> dict:
    """Training targets into `batch`: per sample a list of H next keyframes (H = 1 for a next-keyframe policy),
    whether the episode ends with them, and the gripper state (closed) at each one (a Keyframe's own `gripper`
    is only set where it changes, so the state comes from the trajectory). Adds target_position (B, H, 3),
    target_quaternion (B, H, 4), target_gripper (B, H) float 1 = closed, target_done (B,) float."""
    import torch
    if not (len(keyframes) == len(done) == len(gripper_closed) == len(batch["points"])):
        raise ValueError("need one keyframe list, done flag and gripper list per sample")
    horizons = {len(k) for k in keyframes} | {len(g) for g in gripper_closed}
    if len(horizons) != 1 or 0 in horizons:
        raise ValueError(f"every sample needs the same number (>= 1) of keyframes and gripper states, got {horizons}")
    batch["target_position"] = torch.tensor(np.array([[k.pose.position for k in ks] for ks in keyframes]),
                                            dtype=torch.float32)
    batch["target_quaternion"] = torch.tensor(np.array([[k.pose.orientation for k in ks] for ks in keyframes]),
                                              dtype=torch.float32)
    batch["target_gripper"] = torch.tensor(gripper_closed, dtype=torch.float32)
    batch["target_done"] = torch.tensor(done, dtype=torch.float32)
    return batch


def gripper_is_closed(width: float, open_width: float = 0.08) -> bool:
    """The path follower's rule: narrower than 90 % of fully open counts as closed (holding an object)."""
    return width < 0.9 * open_width


__all__ = ["CONDITIONING_MODES", "LIFTED_PATH_MODES", "PROPRIO_DIM", "STEP_BUCKETS", "SceneConfig", "SceneMotion",
           "SceneInputs", "add_targets", "collate",
           "crop_to_workspace", "downsample", "feature_channels", "gripper_is_closed", "instruction_tokens",
           "perturb_path", "prepare_inputs", "proprioception", "required_inputs"]
