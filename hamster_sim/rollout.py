"""Episodes in-process: the simulated world, a policy and the real executor core stepping together, with no
ROS graph in between. Demonstrations (the scripted expert) and closed-loop evaluation (a learned policy) both
run here, the way policy_node runs an episode:

    observe -> policy.select_action -> CartesianExecutor.set_keyframes -> executor ticks at rate_hz until DONE
    -> observe again, until a prediction says done -> settle -> world.check_success()

Everything is on simulated time (world.time), so an episode is a pure function of the scene, the policy and
the settings. Sensor frames are what sim_node publishes (the same cloud striding, colours and base frame);
grounding masks are the simulator's segmentation for the target object and its container, as the
`sim_ground_truth` perception backend gives them. An `EpisodeObserver` sees every state sample, camera frame,
command and executor status change (hamster_ros.demo_recording writes them into a rosbag2).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from hamster_core.camera import PinholeCamera
from hamster_core.executor import (CartesianExecutor, ExecutorCommand, ExecutorStatus, GripperSettings, Keyframe,
                                   SafetyLimits)
from hamster_core.geometry import Pose
from hamster_core.path2d import GripperState, Path2D, simplify_rdp
from hamster_core.policies.base import Observation, Policy, PolicyError, PolicyOutput
from hamster_sim.expert import expert_keyframes
from hamster_sim.scene import SceneDescription
from hamster_sim.world import TIMESTEP, FrankaWorld

MASK_LABELS = ("target_object", "placement_area")
ORACLE_RDP_EPSILON = 0.05       # HAMSTER's label simplification (also hamster_ros.replay_eval, the oracle VLM)
SIM_GRIPPER_FORCE = 20.0        # sim_node's force for a gripper command that gives none (a MOVE)


@dataclass
class Frame:
    """One camera frame as sim_node publishes it."""

    time: float
    rgb: np.ndarray                 # (H, W, 3) uint8
    depth: np.ndarray               # (H, W) float32 m
    segmentation: np.ndarray        # (H, W) int32 ids
    camera: PinholeCamera
    points: np.ndarray              # (N, 3) float32, base frame, finite
    colors: np.ndarray              # (N, 3) uint8
    masks: dict = field(default_factory=dict)   # label -> (H, W) bool


def cloud_from_depth(camera: PinholeCamera, depth: np.ndarray, rgb: np.ndarray, stride: int
                     ) -> tuple[np.ndarray, np.ndarray]:
    """sim_node's /camera/points: every stride-th pixel's point in the base frame with its colour, finite only."""
    points = camera.depth_to_points(depth)[::stride, ::stride].reshape(-1, 3)
    colors = rgb[::stride, ::stride].reshape(-1, 3)
    valid = np.all(np.isfinite(points), axis=1)
    return points[valid].astype(np.float32), np.ascontiguousarray(colors[valid])


def ground_truth_masks(world: FrankaWorld, segmentation: np.ndarray) -> dict[str, np.ndarray]:
    """target_object / placement_area from the segmentation image (the sim_ground_truth perception backend)."""
    ids = world.segmentation_ids()
    scene = world.scene
    return {"target_object": segmentation == ids[scene.target], "placement_area": segmentation == ids[scene.container]}


def capture(world: FrankaWorld, cloud_stride: int = 2) -> Frame:
    rgb, depth, segmentation = world.render()
    camera = world.camera()
    depth = depth.astype(np.float32)
    points, colors = cloud_from_depth(camera, depth, rgb, cloud_stride)
    return Frame(world.time, rgb, depth, segmentation.astype(np.int32), camera, points, colors,
                 ground_truth_masks(world, segmentation))


def projected_path(camera: PinholeCamera, positions: np.ndarray, closed: np.ndarray,
                   epsilon: float = ORACLE_RDP_EPSILON) -> Path2D:
    """A trajectory's positions (N, 3) projected into the camera, clipped to the image, RDP-simplified with
    the gripper changes kept: HAMSTER's label of a demonstration (proprioceptive projection)."""
    pixels, depth = camera.project(np.asarray(positions, dtype=float))
    keep = depth > 0
    if not np.any(keep):
        raise ValueError("the trajectory is never in front of the camera")
    normalized = np.clip(camera.normalize(pixels[keep]), 0.0, 1.0)
    return simplify_rdp(Path2D(normalized, np.asarray(closed)[keep].astype(np.uint8)), epsilon)


def oracle_vlm_path(world: FrankaWorld, frame: Frame, instruction: str) -> Path2D:
    """What the `oracle` VLM backend answers for this frame (the expert's plan projected), parsed back the way
    the VLM node parses any answer."""
    from hamster_core.path2d import parse_hamster_answer
    from hamster_sim.ground_truth import encode_scene_payload
    from hamster_vlm_node.backends.base import VlmRequest
    from hamster_vlm_node.backends.oracle import OracleBackend

    request = VlmRequest(image=frame.rgb, instruction=instruction, camera=frame.camera, tcp_pose=world.tcp_pose(),
                         scene_json=encode_scene_payload(world.scene, world.segmentation_ids()))
    return parse_hamster_answer(OracleBackend(ORACLE_RDP_EPSILON).query(request))


class ExpertPolicy(Policy):
    """The scripted expert (hamster_sim.expert) behind the policy interface, one keyframe per call like the
    learned keyframe policies, so demonstrations are executed exactly as those policies' predictions are.

    perturbation: standard deviation (m) of noise added to every keyframe without a gripper change (above the
    object, lift, above the container, retreat), clipped to 2 sigma per axis; grasp and release stay exact.
    While an object is held the noise never lowers the hand, so it still clears the container walls. As in
    DART, the noise is executed but `executed` keeps each keyframe's planned pose beside it: trained on the
    planned ones, a policy sees the arm off the demonstrated poses with targets that are still right. Meant to
    break 3dda's "the grasp is straight below where I stand"; with 60 perturbed demonstrations it did not raise
    closed-loop success (bench/results_learned_policies_ablation.md). `seed` makes the noise repeatable.
    """

    required_inputs = frozenset()

    def __init__(self, scene: SceneDescription, *, perturbation: float = 0.0, seed: int = 0):
        if not (isinstance(perturbation, (int, float)) and math.isfinite(perturbation) and 0 <= perturbation <= 0.05):
            raise ValueError(f"perturbation must be a standard deviation in [0, 0.05] m, got {perturbation!r}")
        self.scene = scene
        self.perturbation = float(perturbation)
        self._rng = np.random.default_rng(seed)
        self._plan: list[Keyframe] | None = None
        self._next = 0
        self.executed: list[tuple[Keyframe, Keyframe]] = []   # (as executed, as planned), in order

    def reset(self) -> None:
        self._plan, self._next, self.executed = None, 0, []

    def _perturbed(self, keyframe: Keyframe, holding: bool) -> Keyframe:
        if self.perturbation == 0 or keyframe.gripper is not None:
            return keyframe
        noise = np.clip(self._rng.normal(0.0, self.perturbation, 3), -2 * self.perturbation, 2 * self.perturbation)
        if holding:
            noise[2] = abs(noise[2])
        return Keyframe(Pose(keyframe.pose.position + noise, keyframe.pose.orientation), keyframe.gripper)

    def select_action(self, observation: Observation) -> PolicyOutput:
        if self._plan is None:
            waypoints = expert_keyframes(self.scene, observation.tcp_pose)
            self._plan, state = [], waypoints[0][1]
            for pose, new_state in waypoints[1:]:
                self._plan.append(Keyframe(pose, GripperState(new_state) if new_state != state else None))
                state = new_state
        if self._next >= len(self._plan):
            raise PolicyError("the expert has no keyframes left")
        planned = self._plan[self._next]
        changes = [k.gripper for k in self._plan[:self._next] if k.gripper is not None]
        keyframe = self._perturbed(planned, holding=bool(changes) and changes[-1] == GripperState.CLOSED)
        self.executed.append((keyframe, planned))
        self._next += 1
        return PolicyOutput([keyframe], done=self._next == len(self._plan), info={"policy": "expert"})

    def plan_record(self) -> list[dict]:
        """The executed keyframes with their planned poses, JSON-ready (hamster-record-demos' metadata)."""
        return [{"executed_position": [round(float(v), 6) for v in executed.pose.position],
                 "position": [round(float(v), 6) for v in planned.pose.position],
                 "orientation": [round(float(v), 6) for v in planned.pose.orientation],
                 "gripper": None if planned.gripper is None else int(planned.gripper)}
                for executed, planned in self.executed]


class EpisodeObserver:
    """Hooks into an episode; the default does nothing. Times are simulated seconds."""

    camera_rate_hz: float = 0.0     # extra camera frames per simulated second besides the planning frames

    def on_start(self, world: FrankaWorld, instruction: str, first: Frame) -> None: ...

    def on_state(self, time: float, world: FrankaWorld) -> None: ...

    def on_frame(self, frame: Frame) -> None: ...

    def on_command(self, time: float, command: ExecutorCommand) -> None: ...

    def on_status(self, time: float, status: ExecutorStatus) -> None: ...


@dataclass(frozen=True)
class RolloutSettings:
    """How an in-process episode runs. Defaults match config/runtime.yaml's policy_node and sim.yaml."""

    rate_hz: float = 100.0            # executor ticks (policy_node rate_hz)
    cloud_stride: int = 2             # sim_node cloud_stride
    timeout_sec: float = 60.0         # simulated seconds per episode
    pause_sec: float = 0.0            # hold still after each keyframe (demonstrations: makes every keyframe a
                                      # stop that hamster_core.keyframes detects)
    settle_sec: float = 1.0           # wait before the success check (hamster-demo --settle)
    limits: SafetyLimits = field(default_factory=SafetyLimits)
    gripper: GripperSettings = field(default_factory=GripperSettings)

    def __post_init__(self):
        if not 1 <= self.rate_hz <= 1000 or not math.isclose(1 / self.rate_hz / TIMESTEP,
                                                            round(1 / self.rate_hz / TIMESTEP)):
            raise ValueError(f"rate_hz must divide the 1 kHz physics rate (1..1000 Hz), got {self.rate_hz}")
        if isinstance(self.cloud_stride, bool) or not isinstance(self.cloud_stride, int) \
                or not 1 <= self.cloud_stride <= 16:
            raise ValueError(f"cloud_stride must be an integer in [1, 16], got {self.cloud_stride!r}")
        for name, low in (("timeout_sec", 1e-3), ("pause_sec", 0.0), ("settle_sec", 0.0)):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= low):
                raise ValueError(f"{name} must be a finite number >= {low}, got {value!r}")


@dataclass
class EpisodeResult:
    success: bool
    message: str
    instruction: str
    keyframes: int                     # predictions executed
    sim_seconds: float
    scene_seed: int
    path: Path2D | None = None
    infos: list = field(default_factory=list)

    def to_json(self) -> dict:
        return {"success": self.success, "message": self.message, "instruction": self.instruction,
                "keyframes": self.keyframes, "sim_seconds": round(self.sim_seconds, 3), "scene_seed": self.scene_seed}


def _observation(world: FrankaWorld, frame: Frame, instruction: str, path: Path2D | None) -> Observation:
    """What policy_node assembles from the same messages (no RGB image: the node does not subscribe to it)."""
    return Observation(stamp=frame.time, instruction=instruction, tcp_pose=world.tcp_pose(),
                       gripper_width=world.gripper_width(), points=frame.points, colors=frame.colors,
                       camera=frame.camera, rgb=None, path=path, masks=dict(frame.masks))


def run_episode(world: FrankaWorld, policy: Policy, *, instruction: str | None = None, path_source=None,
                settings: RolloutSettings = RolloutSettings(), observer: EpisodeObserver | None = None
                ) -> EpisodeResult:
    """One episode from the world's current state (reset it first). `path_source(world, first_frame,
    instruction) -> Path2D | None` gives the episode's path once, from the first frame (the VLM's role); None
    gives no path."""
    observer = observer or EpisodeObserver()
    instruction = instruction or world.scene.instruction
    steps_per_tick = round(1.0 / settings.rate_hz / TIMESTEP)
    executor = CartesianExecutor(settings.limits, settings.gripper, rate_hz=settings.rate_hz)
    start_time = world.time
    deadline = start_time + settings.timeout_sec
    camera_period = 1.0 / observer.camera_rate_hz if observer.camera_rate_hz > 0 else math.inf
    next_camera = [start_time + camera_period]
    last_status = [None]

    def tick() -> ExecutorCommand:
        world.step(steps_per_tick)
        now = world.time
        observer.on_state(now, world)
        command = executor.update(now, world.tcp_pose(), now)
        if command.target is not None:
            world.set_cartesian_target(command.target)
        if command.gripper is not None:
            goal = command.gripper
            world.command_gripper(goal.width, speed=goal.speed, force=goal.force or SIM_GRIPPER_FORCE,
                                  grasp=goal.grasp)
        observer.on_command(now, command)
        if command.status != last_status[0]:
            last_status[0] = command.status
            observer.on_status(now, command.status)
        if now + 1e-9 >= next_camera[0]:
            next_camera[0] += camera_period
            observer.on_frame(capture(world, settings.cloud_stride))
        return command

    def result(success: bool, message: str, count: int, path, infos) -> EpisodeResult:
        return EpisodeResult(success, message, instruction, count, world.time - start_time, world.scene.seed, path,
                             infos)

    executor.start(world.tcp_pose(), world.time)
    policy.reset()
    first = capture(world, settings.cloud_stride)
    path = path_source(world, first, instruction) if path_source is not None else None
    observer.on_start(world, instruction, first)
    observer.on_frame(first)
    frame, count, infos = first, 0, []
    while True:
        try:
            output = policy.select_action(_observation(world, frame, instruction, path))
            executor.set_keyframes(output.keyframes, frame.time, world.time)
        except (PolicyError, ValueError) as error:
            return result(False, f"cannot plan: {error}", count, path, infos)
        count += 1
        infos.append(output.info)
        while True:
            if world.time >= deadline:
                return result(False, f"timed out after {settings.timeout_sec:g} s", count, path, infos)
            if tick().status == ExecutorStatus.DONE:
                break
        hold_until = world.time + settings.pause_sec
        while world.time + 1e-9 < hold_until:
            tick()
        if output.done:
            break
        frame = capture(world, settings.cloud_stride)
        observer.on_frame(frame)
    settle_until = world.time + settings.settle_sec
    while world.time + 1e-9 < settle_until:
        tick()
    success = bool(world.check_success())
    return result(success, f"executed {count} predictions" if success else
                  f"executed {count} predictions; {world.scene.target} is not in the {world.scene.container}",
                  count, path, infos)
