"""The Franka side of the robot interface, ROS-free: what franka_ros2's robot state means for the stream, which
targets may reach the Cartesian impedance controller, and the bookkeeping of franka_gripper action goals.

Used by hamster_franka.franka_bridge (the thin rclpy adapter) and tested with plain pytest.

Robot modes are libfranka's (franka_msgs/FrankaRobotState.robot_mode). Only IDLE and MOVE let targets through:
REFLEX (a collision or limit reflex), USER_STOPPED (the external activation device / user stop is pressed),
AUTOMATIC_ERROR_RECOVERY, GUIDING (someone is moving the arm by hand) and OTHER stop the stream, as does any
flag set in current_errors.
"""
from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field

import numpy as np

from hamster_core.geometry import Pose, quaternion_angle


class RobotMode(enum.IntEnum):
    OTHER = 0
    IDLE = 1
    MOVE = 2
    GUIDING = 3
    REFLEX = 4
    USER_STOPPED = 5
    AUTOMATIC_ERROR_RECOVERY = 6


STREAMING_MODES = (RobotMode.IDLE, RobotMode.MOVE)


@dataclass(frozen=True)
class RobotHealth:
    ok: bool
    mode: str                 # the mode's name, lower case ("move", "reflex", ...) or "unknown(7)"
    reason: str = ""          # why targets must not be sent ("" when ok)
    errors: tuple = ()        # names of the active current_errors flags


def mode_name(mode: int) -> str:
    try:
        return RobotMode(int(mode)).name.lower()
    except ValueError:
        return f"unknown({int(mode)})"


def interpret_state(mode: int, errors: dict[str, bool], pose_error: str = "") -> RobotHealth:
    """Robot mode + franka_msgs/Errors flags (name -> bool) -> whether the stream may run, and why not.

    `pose_error`: why the state's measured pose (o_t_ee) is unusable ("" when it is fine). The mode and errors
    are interpreted first (a reflex in the same message is named first); an unusable pose alone also stops the
    stream: targets cannot be judged against it."""
    health = _interpret_mode(mode, errors)
    if not pose_error:
        return health
    reason = f"{health.reason}; " if not health.ok else ""
    return RobotHealth(False, health.mode, f"{reason}the robot state has an invalid o_t_ee: {pose_error}",
                       health.errors)


def _interpret_mode(mode: int, errors: dict[str, bool]) -> RobotHealth:
    active = tuple(sorted(name for name, value in errors.items() if value))
    name = mode_name(mode)
    if int(mode) not in [int(m) for m in STREAMING_MODES]:
        reason = {
            "reflex": "the robot is in reflex mode (collision or limit reflex)",
            "user_stopped": "the user stop is pressed",
            "automatic_error_recovery": "the robot is in automatic error recovery",
            "guiding": "the robot is in guiding mode (hand-guided)",
        }.get(name, f"the robot is in mode {name}")
        if active:
            reason += f"; errors: {', '.join(active)}"
        return RobotHealth(False, name, reason, active)
    if active:
        return RobotHealth(False, name, f"the robot reports errors: {', '.join(active)}", active)
    return RobotHealth(True, name)


# A forwarded step may cover this many nominal periods of motion at the speed limits: a target lost on the way
# (keep-last-1 QoS) or a burst must not stop the stream, while a jump (a bug, a bad re-seed) still cannot pass.
STEP_PERIODS = 5
# A target this close to the measured pose (both position and orientation) commands no motion: it may pass the
# step/turn check however far the previous target was (the executor re-seeding onto where the arm is).
NEAR_MEASURED_M = 1e-3
NEAR_MEASURED_RAD = 1e-2


@dataclass(frozen=True)
class TargetLimits:
    """What the adapter lets through to the impedance controller: the second line of defence behind the
    executor (hamster_core.executor), from the same robot config."""

    workspace_min: tuple
    workspace_max: tuple
    max_linear_speed: float           # m/s between consecutive forwarded targets
    max_angular_speed: float          # rad/s
    max_deviation: float              # m between a target and the measured pose (the impedance spring's stretch)
    max_angular_deviation: float = 0.3  # rad between a target's orientation and the measured one (every target)
    rate_hz: float = 100.0            # nominal target rate: a step may cover STEP_PERIODS of them

    def __post_init__(self):
        low, high = np.asarray(self.workspace_min, float), np.asarray(self.workspace_max, float)
        if low.shape != (3,) or high.shape != (3,) or not np.all(np.isfinite(low) & np.isfinite(high)) \
                or np.any(low >= high):
            raise ValueError(f"workspace must be two 3-vectors with min < max, got {self.workspace_min}, "
                             f"{self.workspace_max}")
        for name in ("max_linear_speed", "max_angular_speed", "max_deviation", "max_angular_deviation", "rate_hz"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
                    and value > 0):
                raise ValueError(f"{name} must be positive, got {value!r}")
        if self.max_angular_deviation > math.pi:
            raise ValueError(f"max_angular_deviation must be at most pi rad, got {self.max_angular_deviation!r}")
        object.__setattr__(self, "workspace_min", tuple(float(v) for v in low))
        object.__setattr__(self, "workspace_max", tuple(float(v) for v in high))

    def check(self, target: Pose, measured: Pose, last: Pose | None, dt: float | None) -> str | None:
        """Why `target` must not be forwarded, or None. `last`/`dt`: the previous forwarded target and the
        time since it (the adapter seeds them with the measured pose and the enable time, so the first target
        after an enable is step-limited from where the arm is; None skips the step check)."""
        position = np.asarray(target.position)
        if not (np.all(np.isfinite(position)) and np.all(np.isfinite(target.orientation))):
            return "the target is not finite"
        if np.any(position < np.asarray(self.workspace_min) - 1e-9) or \
                np.any(position > np.asarray(self.workspace_max) + 1e-9):
            return (f"the target {np.round(position, 3).tolist()} is outside the workspace "
                    f"{self.workspace_min}..{self.workspace_max}")
        deviation = float(np.linalg.norm(position - measured.position))
        if deviation > self.max_deviation:
            return f"the target is {deviation:.3f} m from the measured pose (max_deviation {self.max_deviation:g})"
        angular_deviation = quaternion_angle(target.orientation, measured.orientation)
        if angular_deviation > self.max_angular_deviation:
            return (f"the target is turned {angular_deviation:.3f} rad from the measured pose "
                    f"(max_angular_deviation {self.max_angular_deviation:g})")
        if last is not None and dt is not None:
            motion_time = max(dt, STEP_PERIODS / self.rate_hz)
            step = float(np.linalg.norm(position - last.position))
            # a re-seed onto where the arm is (position and orientation) commands no motion
            near_measured = deviation <= NEAR_MEASURED_M and angular_deviation <= NEAR_MEASURED_RAD
            if step > self.max_linear_speed * motion_time + 1e-6 and not near_measured:
                return (f"the target moved {step:.4f} m in {dt:.3f} s (max_linear_speed "
                        f"{self.max_linear_speed:g} m/s)")
            turn = quaternion_angle(last.orientation, target.orientation)
            if turn > self.max_angular_speed * motion_time + 1e-5 and not near_measured:
                return f"the target turned {turn:.3f} rad in {dt:.3f} s (max_angular_speed {self.max_angular_speed:g})"
        return None


# -- the controller that takes the targets ------------------------------------------------------------------
# Controllers a `geometry_msgs/PoseStamped` target stream can drive, by the name of franka_bridge's `controller`
# parameter -> the topic it listens on.
CONTROLLER_TOPICS = {
    # crisp_controllers' CartesianController (src/cartesian_controller.cpp): subscribes "target_pose" (relative:
    # /target_pose under controller_manager's default namespace), QoS(1) reliable, base-frame poses, and ignores
    # every message while more than one node publishes there.
    "crisp_cartesian": "/target_pose",
}
CUSTOM_CONTROLLER = "custom"  # your own controller: give its topic as target_topic
REFUSED_CONTROLLERS = {
    "franka_cartesian_impedance_example": (
        "franka_ros2's cartesian_impedance_example_controller listens on ~/equilibrium_pose but overwrites the "
        "target position every cycle with its own demonstration motion: streamed targets would be ignored"),
}


def controller_target_topic(controller: str, target_topic: str = "") -> str:
    """The topic the runtime streams targets to for a controller profile; ValueError names what is wrong."""
    if controller in REFUSED_CONTROLLERS:
        raise ValueError(f"controller {controller!r} cannot follow a target stream: "
                         f"{REFUSED_CONTROLLERS[controller]}; use crisp_cartesian or custom")
    if controller == CUSTOM_CONTROLLER:
        if not target_topic.startswith("/") or len(target_topic) < 2:
            raise ValueError(f"controller 'custom' needs target_topic, the absolute topic your controller listens "
                             f"on for geometry_msgs/PoseStamped targets, got {target_topic!r}")
        return target_topic
    if controller not in CONTROLLER_TOPICS:
        raise ValueError(f"unknown controller {controller!r}: one of "
                         f"{', '.join([*CONTROLLER_TOPICS, CUSTOM_CONTROLLER])}")
    if target_topic:
        raise ValueError(f"target_topic {target_topic!r} is only for controller 'custom'; {controller} listens on "
                         f"{CONTROLLER_TOPICS[controller]}")
    return CONTROLLER_TOPICS[controller]


def controller_link_problem(topic: str, subscribers: int, publishers: int) -> str | None:
    """Why the target stream cannot reach a controller that takes it from this node alone, or None. Counted on
    the graph with this node's own publisher on the topic. More subscribers are no problem: a configured but
    inactive controller subscribes too, and so does an observer (`ros2 topic echo`, a recorder)."""
    if subscribers == 0:
        return f"nothing subscribes to {topic}: is the controller loaded and active?"
    if publishers > 1:
        return (f"{publishers - 1} other publisher(s) on {topic}: the controller must take targets from this node "
                f"alone (crisp_controllers ignores all of them then)")
    return None


def gripper_opening(positions, joints) -> float | None:
    """The Franka Hand's opening (m) from finger joint positions (name -> m): the named joints summed. A joint
    that is missing counts as the mean of the present ones (the second finger mimics the first, and setups often
    publish fr3_finger_joint1 only); None when none of them is present."""
    present = [float(positions[name]) for name in joints if name in positions]
    return sum(present) * len(joints) / len(present) if present else None


# franka_ros2's names (franka_bringup/config/controllers.yaml) and crisp_controllers' (docs: the spawner's
# "cartesian_impedance_controller" of type crisp_controllers/CartesianController).
RECOVERY_CONTROLLERS = ("franka_robot_state_broadcaster", "cartesian_impedance_controller")


@dataclass(frozen=True)
class RecoveryConfig:
    """What /robot/recover calls: franka_hardware's error recovery action (its node "action_server", action
    "~/error_recovery"), then controller_manager's switch_controller to re-activate `controllers` (ros2_control
    deactivates the controllers of a hardware interface that reports an error), each within `timeout_sec`."""

    error_recovery_action: str = "/action_server/error_recovery"
    switch_controller_service: str = "/controller_manager/switch_controller"
    controllers: tuple[str, ...] = RECOVERY_CONTROLLERS
    timeout_sec: float = 10.0

    def __post_init__(self):
        for name in ("error_recovery_action", "switch_controller_service"):
            value = getattr(self, name)
            if not (isinstance(value, str) and value.startswith("/") and len(value) > 1):
                raise ValueError(f"recovery {name} must be an absolute ROS name, got {value!r}")
        if not self.controllers or any(not c or not isinstance(c, str) for c in self.controllers) \
                or len(set(self.controllers)) != len(self.controllers):
            raise ValueError(f"recovery controllers must be distinct non-empty names, got {list(self.controllers)!r}")
        if not (math.isfinite(self.timeout_sec) and self.timeout_sec > 0):
            raise ValueError(f"recovery timeout_sec must be positive, got {self.timeout_sec!r}")


class GateState(str, enum.Enum):
    DISABLED = "disabled"             # nothing is sent until enable()
    STREAMING = "streaming"
    HALTED = "halted"                 # reflex / user stop / error / stale state / stop: enable() again to resume


@dataclass
class StreamGate:
    """Whether targets reach the controller. Starts DISABLED (the runtime holds the measured pose and sends
    nothing until an explicit enable); a bad or stale robot state or a stop halts it until the next enable."""

    stale_after_sec: float = 0.1
    wall_stale_after_sec: float | None = None  # on the wall clock (None: stale_after_sec); see check_stale
    state: GateState = GateState.DISABLED
    reason: str = "not enabled yet: call the enable service"
    health: RobotHealth | None = None
    state_stamp: float | None = None  # stamp of the newest robot state (s)
    halted_at: float | None = None    # time halt() was called
    halt_stamp: float | None = None   # stamp of the robot state that caused the halt (None: not a state)
    state_wall: float | None = None   # wall (monotonic) time the newest robot state was received
    halt_count: int = 0               # halts since start, never reset: a reader that missed a short-lived
    last_halt_reason: str = ""        #   "halted" (a quick re-enable) still sees the count go up

    def __post_init__(self):
        if not (math.isfinite(self.stale_after_sec) and self.stale_after_sec > 0):
            raise ValueError(f"stale_after_sec must be positive, got {self.stale_after_sec!r}")
        if self.wall_stale_after_sec is None:
            self.wall_stale_after_sec = self.stale_after_sec
        if not (math.isfinite(self.wall_stale_after_sec) and self.wall_stale_after_sec > 0):
            raise ValueError(f"wall_stale_after_sec must be positive, got {self.wall_stale_after_sec!r}")

    def on_state(self, health: RobotHealth, stamp: float, now: float, wall: float | None = None) -> bool:
        """Record a robot state (`wall`: its monotonic receive time); returns True when it halted the stream now."""
        self.health, self.state_stamp = health, stamp
        if wall is not None:
            self.state_wall = wall
        if not health.ok and self.state == GateState.STREAMING:
            self.halt(health.reason, now)
            self.halt_stamp = stamp
            return True
        return False

    def fresh(self, now: float) -> bool:
        return self.state_stamp is not None and -self.stale_after_sec <= now - self.state_stamp <= self.stale_after_sec

    def wall_fresh(self, wall: float | None) -> bool:
        """The newest state arrived within wall_stale_after_sec of `wall` (True when no wall time is tracked)."""
        if wall is None or self.state_wall is None:
            return True
        return wall - self.state_wall <= self.wall_stale_after_sec

    def _stale_reason(self, now: float, wall: float | None) -> str | None:
        if not self.fresh(now):
            age = "no robot state" if self.state_stamp is None else f"the robot state is {now - self.state_stamp:.3f} s old"
            return f"{age} (stale_after_sec {self.stale_after_sec:g})"
        if not self.wall_fresh(wall):
            # With use_sim_time a stopped /clock stops ROS time too: the stamp check alone would never fire.
            return (f"no robot state received for {wall - self.state_wall:.3f} s of wall time, the ROS clock may have "
                    f"stopped (stale_after_sec {self.wall_stale_after_sec:g})")
        return None

    def check_stale(self, now: float, wall: float | None = None) -> bool:
        """Halt when streaming on a stale robot state, on the ROS clock (`now`) or on the wall clock (`wall`,
        monotonic, against the receive time of the newest state); returns True when it halted now."""
        if self.state != GateState.STREAMING:
            return False
        reason = self._stale_reason(now, wall)
        if reason is not None:
            self.halt(reason, now)
            return True
        return False

    def enable(self, now: float, wall: float | None = None) -> tuple[bool, str]:
        if self.health is None or self.state_stamp is None:
            return False, "no robot state received yet"
        if not self.health.ok:  # first: after a reflex the state stream stops too (its controllers go inactive)
            return False, f"cannot enable: {self.health.reason}"
        if not self.fresh(now):
            return False, f"the robot state is {now - self.state_stamp:.3f} s old"
        if not self.wall_fresh(wall):
            return False, f"no robot state received for {wall - self.state_wall:.3f} s of wall time"
        self.state, self.reason, self.halted_at = GateState.STREAMING, "", None
        return True, "enabled: streaming targets to the controller"

    def disable(self, reason: str = "disabled by request") -> None:
        self.state, self.reason = GateState.DISABLED, reason

    def halt(self, reason: str, now: float) -> None:
        self.state, self.reason, self.halted_at, self.halt_stamp = GateState.HALTED, reason, now, None
        self.halt_count += 1
        self.last_halt_reason = reason

    @property
    def open(self) -> bool:
        return self.state == GateState.STREAMING


# -- gripper ------------------------------------------------------------------------------------------------

class GripperAction(str, enum.Enum):
    MOVE = "move"
    GRASP = "grasp"
    HOMING = "homing"


@dataclass(frozen=True)
class GripperRequest:
    action: GripperAction
    width: float = 0.0
    speed: float = 0.1
    force: float = 0.0
    epsilon_inner: float = 0.005
    epsilon_outer: float = 0.005
    command_stamp: float | None = None   # stamp of the GripperCommand asking for it (s), carried to its result

    def __post_init__(self):
        if self.action == GripperAction.HOMING:
            return
        if not (math.isfinite(self.width) and 0.0 <= self.width <= 0.08):
            raise ValueError(f"gripper width must be in [0, 0.08] m, got {self.width!r}")
        if not (math.isfinite(self.speed) and self.speed > 0):
            raise ValueError(f"gripper speed must be positive, got {self.speed!r}")
        if self.action == GripperAction.GRASP:
            if not (math.isfinite(self.force) and self.force > 0):
                raise ValueError(f"grasp force must be positive, got {self.force!r}")
            for name in ("epsilon_inner", "epsilon_outer"):
                if not (math.isfinite(getattr(self, name)) and getattr(self, name) >= 0):
                    raise ValueError(f"grasp {name} must be >= 0, got {getattr(self, name)!r}")


@dataclass(frozen=True)
class GripperResult:
    action: str
    success: bool
    error: str
    seconds: float
    width: float = 0.0               # the goal width (0 for homing)
    command_stamp: float | None = None   # the answered GripperCommand's stamp: which episode the result belongs to

    def as_dict(self) -> dict:
        return {"action": self.action, "success": self.success, "error": self.error,
                "seconds": round(self.seconds, 3), "width": self.width, "command_stamp": self.command_stamp}


@dataclass
class GripperGoals:
    """One franka_gripper goal in flight at a time, each with a deadline. The adapter calls `start` when it
    sends a goal, `finish` with the action's result, `expired(now)` from a timer; each returns the result to
    report (or None when the goal is no longer the current one). A new goal preempts the one in flight."""

    timeout_sec: float = 5.0
    _current: tuple | None = field(default=None, init=False)   # (id, request, started)
    _next_id: int = field(default=0, init=False)

    def __post_init__(self):
        if not (math.isfinite(self.timeout_sec) and self.timeout_sec > 0):
            raise ValueError(f"gripper timeout_sec must be positive, got {self.timeout_sec!r}")

    @property
    def busy(self) -> bool:
        return self._current is not None

    def is_current(self, goal_id: int) -> bool:
        return self._current is not None and self._current[0] == goal_id

    def start(self, request: GripperRequest, now: float) -> tuple[int, GripperResult | None]:
        """A new goal id, and the preempted goal's result if one was in flight."""
        preempted = None
        if self._current is not None:
            _, old, started = self._current
            preempted = GripperResult(old.action.value, False, f"preempted by a {request.action.value} goal",
                                      now - started, old.width, old.command_stamp)
        self._next_id += 1
        self._current = (self._next_id, request, now)
        return self._next_id, preempted

    def finish(self, goal_id: int, success: bool, error: str, now: float) -> GripperResult | None:
        if self._current is None or self._current[0] != goal_id:
            return None  # preempted or timed out already: reported then
        _, request, started = self._current
        self._current = None
        return GripperResult(request.action.value, bool(success), str(error), now - started, request.width,
                             request.command_stamp)

    def expired(self, now: float) -> tuple[int, GripperResult] | None:
        """(goal id to cancel, its timeout result) once the goal in flight passed its deadline."""
        if self._current is None:
            return None
        goal_id, request, started = self._current
        if now - started <= self.timeout_sec:
            return None
        self._current = None
        return goal_id, GripperResult(request.action.value, False, f"no result within {self.timeout_sec:g} s",
                                      now - started, request.width, request.command_stamp)


def grasp_succeeded(final_width: float, goal_width: float, epsilon_inner: float, epsilon_outer: float) -> bool:
    """libfranka's grasp criterion: width - epsilon_inner < distance < width + epsilon_outer."""
    return goal_width - epsilon_inner < final_width < goal_width + epsilon_outer
