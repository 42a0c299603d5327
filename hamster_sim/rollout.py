"""Episodes in-process: the simulated world, a policy and the real executor core stepping together, with no
ROS graph in between. Demonstrations (the scripted expert) and closed-loop evaluation (a learned policy) both
run here, the way policy_node runs an episode:

    observe -> policy.select_action -> CartesianExecutor.set_keyframes -> executor ticks at rate_hz until DONE
    -> observe again, until a prediction says done -> settle -> world.check_success()

Everything is on simulated time (world.time), so an episode is a pure function of the scene, the policy and
the settings. Sensor frames are what sim_node publishes (the same cloud striding, colours and base frame);
grounding masks are the simulator's segmentation for the target object and its container, as the
`sim_ground_truth` perception backend gives them. An `EpisodeObserver` sees every state sample, camera frame,
command and executor status change (hamster_bag.demonstration_recording writes them into a rosbag2).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from hamster_core.camera import PinholeCamera
from hamster_core.episode import EpisodeRuntime, InputRules, InputSnapshot, Interruptions, waiting_for
from hamster_core.episode import run_episode as run_episode_loop
from hamster_core.executor import (CartesianExecutor, ExecutorCommand, ExecutorStatus, GripperSettings, Keyframe,
                                   SafetyLimits)
from hamster_core.geometry import Pose
from hamster_core.path2d import GripperState, Path2D, parse_hamster_answer, simplify_rdp
from hamster_core.policies.base import Observation, Policy, PolicyError, PolicyOutput
from hamster_core.vlm import VlmRequest
from hamster_sim.expert import expert_keyframes
from hamster_sim.ground_truth import encode_scene_payload
from hamster_sim.oracle_vlm import OracleBackend
from hamster_sim.scene import SceneDescription
from hamster_sim.world import TIMESTEP, FrankaWorld

MASK_LABELS = ("target_object", "placement_area")
ORACLE_RDP_EPSILON = 0.05       # HAMSTER's label simplification (also hamster_bag.replay_eval, the oracle VLM)
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
        """The executed keyframes with their planned poses, JSON-ready (hamster-record-demonstrations' metadata)."""
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


class SimEpisodeRuntime(EpisodeRuntime):
    """The episode core's runtime in the simulated world, on simulated time: waiting is one control tick."""

    def __init__(self, world: FrankaWorld, settings: RolloutSettings, observer: EpisodeObserver, first: Frame,
                 path: Path2D | None, required_inputs: frozenset):
        self.world, self.settings, self.observer = world, settings, observer
        self.path, self.required_inputs = path, required_inputs
        self.executor = CartesianExecutor(settings.limits, settings.gripper, rate_hz=settings.rate_hz)
        self.executor.start(world.tcp_pose(), world.time)
        self.rules = InputRules(stale_after_sec=self.executor.stale_after_sec, mask_wait_sec=0.0)
        self._steps_per_tick = round(1.0 / settings.rate_hz / TIMESTEP)
        self._camera_period = 1.0 / observer.camera_rate_hz if observer.camera_rate_hz > 0 else math.inf
        self._next_camera = world.time + self._camera_period
        self._frame: Frame | None = first     # the episode's first frame, observed before any other
        self._status: ExecutorStatus | None = None     # since the last submit
        self._reported: ExecutorStatus | None = None   # the observer's last status change
        self._progress = 0.0

    def now(self) -> float:
        return self.world.time

    def observe(self, instruction: str, episode_start: float) -> tuple[Observation | None, str | None]:
        """What policy_node assembles from the same messages (no RGB image: the node does not subscribe to it),
        through the same readiness rules."""
        frame, self._frame = self._frame, None
        if frame is None:
            frame = capture(self.world, self.settings.cloud_stride)
            self.observer.on_frame(frame)
        inputs = InputSnapshot(now=self.world.time, ee_stamp=self.world.time, cloud_stamp=frame.time,
                               camera_ready=True, path=self.path, masks=dict(frame.masks))
        missing = waiting_for(self.rules, inputs, instruction, episode_start, self.required_inputs)
        if missing is None and len(frame.points) == 0:
            missing = "a point cloud with finite points"
        if missing:
            return None, missing
        return Observation(stamp=frame.time, instruction=instruction, tcp_pose=self.world.tcp_pose(),
                           gripper_width=self.world.gripper_width(), points=frame.points, colors=frame.colors,
                           camera=frame.camera, rgb=None, path=self.path, masks=dict(frame.masks)), None

    def interruptions(self, episode_start: float) -> Interruptions:
        return Interruptions(executor_halted=self.executor.halt_reason)   # nothing else outside the world

    def submit(self, keyframes, observation_stamp: float) -> None:
        self.executor.set_keyframes(keyframes, observation_stamp, self.world.time)
        self._status = None

    def executor_progress(self) -> tuple[ExecutorStatus | None, float]:
        return self._status, self._progress

    def halt(self) -> None:
        self.executor.stop()

    def wait(self) -> None:
        """One control tick: physics for one period, then the executor, as policy_node's stream does."""
        world = self.world
        world.step(self._steps_per_tick)
        now = world.time
        self.observer.on_state(now, world)
        command = self.executor.update(now, world.tcp_pose(), now)
        if command.target is not None:
            world.set_cartesian_target(command.target)
        if command.gripper is not None:
            goal = command.gripper
            world.command_gripper(goal.width, speed=goal.speed, force=goal.force or SIM_GRIPPER_FORCE,
                                  grasp=goal.grasp)
        self.observer.on_command(now, command)
        if command.status != self._reported:
            self._reported = command.status
            self.observer.on_status(now, command.status)
        self._status, self._progress = command.status, command.progress
        if now + 1e-9 >= self._next_camera:
            self._next_camera += self._camera_period
            self.observer.on_frame(capture(world, self.settings.cloud_stride))

    def hold_for(self, seconds: float) -> None:
        until = self.world.time + seconds
        while self.world.time + 1e-9 < until:
            self.wait()

    def on_executed(self, output: PolicyOutput) -> None:
        self.hold_for(self.settings.pause_sec)


def run_episode(world: FrankaWorld, policy: Policy, *, instruction: str | None = None, path_source=None,
                settings: RolloutSettings = RolloutSettings(), observer: EpisodeObserver | None = None
                ) -> EpisodeResult:
    """One episode from the world's current state (reset it first), through the episode core policy_node runs.
    `path_source(world, first_frame, instruction) -> Path2D | None` gives the episode's path once, from the first
    frame (the VLM's role); None gives no path. After a successful loop the world settles and is checked."""
    observer = observer or EpisodeObserver()
    instruction = instruction or world.scene.instruction
    start_time = world.time
    first = capture(world, settings.cloud_stride)
    path = path_source(world, first, instruction) if path_source is not None else None
    observer.on_start(world, instruction, first)
    observer.on_frame(first)
    runtime = SimEpisodeRuntime(world, settings, observer, first, path, policy.required_inputs)
    outcome = run_episode_loop(runtime, policy, instruction, settings.timeout_sec)
    success, message = outcome.success, outcome.message
    if success:
        runtime.hold_for(settings.settle_sec)
        success = bool(world.check_success())
        if not success:
            message += f"; {world.scene.target} is not in the {world.scene.container}"
    return EpisodeResult(success, message, instruction, outcome.plans, world.time - start_time, world.scene.seed,
                         path, outcome.infos)
