"""Keyframes -> a smooth, safety-clipped Cartesian target stream at control rate.

The executor is a pure function of time and inputs: the node calls `update(now, ...)` from its control timer
and publishes what comes back. Keyframes are planned on a *plan clock* that only advances while the inputs
are fresh, so a stall pauses the motion where it is instead of skipping ahead when the stream returns.
Every emitted target passes the same checks: workspace box, per-tick translation and rotation step
(derived from the speed limits and the real time since the last target), and a valid unit quaternion.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field

import numpy as np

from hamster_core.geometry import Pose, quaternion_angle, slerp
from hamster_core.path2d import GripperState

WORKSPACE_TOLERANCE = 0.01  # m a measured pose may stray outside the box (controller overshoot at its faces)


@dataclass(frozen=True)
class SafetyLimits:
    workspace_min: tuple = field(default=(0.20, -0.45, 0.02), metadata={"doc": "Workspace box min (m)."})
    workspace_max: tuple = field(default=(0.80, 0.45, 0.60), metadata={"doc": "Workspace box max (m)."})
    max_linear_speed: float = field(default=0.25, metadata={"doc": "Target speed limit (m/s)."})
    max_angular_speed: float = field(default=1.0, metadata={"doc": "Target angular speed limit (rad/s)."})
    max_tracking_error: float = field(default=0.08, metadata={
        "doc": "Hold when the measured pose is farther than this from the target (m)."})
    max_reseed_distance: float = field(default=0.15, metadata={
        "doc": "Re-seed the target onto the measured pose only when it is at most this far (m); farther, halt."})

    def __post_init__(self):
        low = np.asarray(self.workspace_min, dtype=float)
        high = np.asarray(self.workspace_max, dtype=float)
        if low.shape != (3,) or high.shape != (3,) or not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))):
            raise ValueError(f"workspace bounds must be 3 finite numbers each, got {self.workspace_min}, "
                             f"{self.workspace_max}")
        if np.any(low >= high):
            raise ValueError(f"workspace_min {self.workspace_min} must be below workspace_max {self.workspace_max}")
        for name in ("max_linear_speed", "max_angular_speed", "max_tracking_error", "max_reseed_distance"):
            value = getattr(self, name)
            if not np.isfinite(value) or value <= 0:
                raise ValueError(f"{name} must be positive, got {value}")
        if self.max_reseed_distance < self.max_tracking_error:
            raise ValueError(f"max_reseed_distance ({self.max_reseed_distance}) must be at least max_tracking_error "
                             f"({self.max_tracking_error}): a re-seed starts beyond it")
        object.__setattr__(self, "workspace_min", tuple(float(v) for v in low))
        object.__setattr__(self, "workspace_max", tuple(float(v) for v in high))

    def inside(self, position, tolerance: float = 1e-9) -> bool:
        p = np.asarray(position)
        return bool(np.all(p >= np.asarray(self.workspace_min) - tolerance)
                    and np.all(p <= np.asarray(self.workspace_max) + tolerance))

    def clip(self, position) -> np.ndarray:
        return np.clip(position, self.workspace_min, self.workspace_max)


MIN_GRIPPER_DWELL_SEC = 0.2


@dataclass(frozen=True)
class GripperSettings:
    open_width: float = field(default=0.08, metadata={"doc": "Opening width (m)."})
    speed: float = field(default=0.1, metadata={"doc": "Finger speed (m/s)."})
    grasp_force: float = field(default=20.0, metadata={"doc": "Grasp force (N)."})
    # The real hand takes ~1 s.
    dwell_sec: float = field(default=1.0, metadata={"doc": "Arm holds still this long after a gripper command."})
    # franka_gripper's grasp succeeds when the fingers stop within grasp_width - epsilon_inner .. + epsilon_outer:
    # set them to the objects of the task (the defaults accept any width, so a grasp never fails).
    grasp_width: float = field(default=0.0, metadata={"doc": "Grasp goal width (m): the task's object width."})
    epsilon_inner: float = field(default=0.08, metadata={"doc": "A grasp succeeds down to width - this (m)."})
    epsilon_outer: float = field(default=0.08, metadata={"doc": "A grasp succeeds up to width + this (m)."})

    def __post_init__(self):
        if not 0 < self.open_width <= 0.08:
            raise ValueError(f"open_width must be in (0, 0.08] m, got {self.open_width}")
        if not 0 <= self.grasp_width <= self.open_width:
            raise ValueError(f"grasp_width must be in [0, open_width={self.open_width}] m, got {self.grasp_width}")
        for name in ("epsilon_inner", "epsilon_outer"):
            if not 0 <= getattr(self, name) <= 0.08:
                raise ValueError(f"{name} must be in [0, 0.08] m, got {getattr(self, name)}")
        for name in ("speed", "grasp_force"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        # The arm must not move on while the fingers are still closing or opening.
        if not MIN_GRIPPER_DWELL_SEC <= self.dwell_sec <= 10:
            raise ValueError(f"dwell_sec must be in [{MIN_GRIPPER_DWELL_SEC}, 10], got {self.dwell_sec}")


@dataclass(frozen=True)
class Keyframe:
    """A pose to reach, and the gripper state to command once there (None keeps it)."""

    pose: Pose
    gripper: GripperState | None = None


@dataclass(frozen=True)
class GripperGoal:
    width: float
    speed: float
    force: float
    grasp: bool
    epsilon_inner: float = 0.08
    epsilon_outer: float = 0.08

    @classmethod
    def for_state(cls, state: GripperState, settings: GripperSettings) -> "GripperGoal":
        if state == GripperState.CLOSED:
            return cls(settings.grasp_width, settings.speed, settings.grasp_force, grasp=True,
                       epsilon_inner=settings.epsilon_inner, epsilon_outer=settings.epsilon_outer)
        return cls(settings.open_width, settings.speed, 0.0, grasp=False)


class ExecutorStatus(str, enum.Enum):
    IDLE = "idle"                      # no plan: holding the last target
    EXECUTING = "executing"
    DONE = "done"                      # reached the last keyframe
    HOLDING_STALE = "holding_stale_input"
    HOLDING_TRACKING = "holding_tracking_error"   # re-seeded at the measured pose, plan paused
    STOPPED = "stopped"                # explicit stop; sticky until clear_stop()
    OUTSIDE_WORKSPACE = "outside_workspace"       # the robot is outside the box: nothing is sent
    HALTED = "halted"                  # the robot state cannot be trusted (halt_reason): nothing is sent


@dataclass(frozen=True)
class ExecutorCommand:
    target: Pose | None                # None: send nothing this tick
    gripper: GripperGoal | None
    status: ExecutorStatus
    progress: float                    # 0..1 along the plan's duration


@dataclass
class _Segment:
    start: Pose
    end: Pose
    t0: float                          # plan-clock time the segment starts
    duration: float
    gripper: GripperState | None       # commanded when the segment ends
    dwell: float                       # hold after reaching `end`


@dataclass
class CartesianExecutor:
    limits: SafetyLimits = field(default_factory=SafetyLimits)
    gripper: GripperSettings = field(default_factory=GripperSettings)
    rate_hz: float = 100.0
    stale_after_sec: float = 0.2
    max_plan_age_sec: float = 2.0      # keyframes planned on an older observation are dropped
    speed_fraction: float = 0.8        # peak planned speed as a fraction of the limits
    arrival_tolerance: float = 0.01    # m between measured pose and keyframe before a gripper command
    max_reseeds: int = 2               # re-seeds allowed within reseed_window_sec; one more halts
    reseed_window_sec: float = 10.0
    # A measured pose that stays bit-identical across stamps newer by more than stale_after_sec, while the targets
    # moved this far (m), is a frozen state that something re-stamps: the executor halts. A still arm is never
    # flagged (its targets stand still), nor a stream that merely pauses (its stamps stand still: that holds).
    frozen_motion: float = 0.01

    def __post_init__(self):
        if not 1 <= self.rate_hz <= 1000:
            raise ValueError(f"rate_hz must be in [1, 1000], got {self.rate_hz}")
        if not self.stale_after_sec > 0:
            raise ValueError(f"stale_after_sec must be positive, got {self.stale_after_sec}")
        if not self.max_plan_age_sec > 0:
            raise ValueError(f"max_plan_age_sec must be positive, got {self.max_plan_age_sec}")
        if not 0 < self.speed_fraction <= 1:
            raise ValueError(f"speed_fraction must be in (0, 1], got {self.speed_fraction}")
        if not self.arrival_tolerance > 0:
            raise ValueError(f"arrival_tolerance must be positive, got {self.arrival_tolerance}")
        if isinstance(self.max_reseeds, bool) or not isinstance(self.max_reseeds, int) or self.max_reseeds < 0:
            raise ValueError(f"max_reseeds must be a non-negative integer, got {self.max_reseeds!r}")
        for name in ("reseed_window_sec", "frozen_motion"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        self._last_target: Pose | None = None
        self._last_time: float | None = None
        self._segments: list[_Segment] = []
        self._plan_clock = 0.0
        self._next_segment = 0         # first segment whose gripper command has not been sent
        self._stopped = False
        self._halt_reason: str | None = None
        self._reseed_times: list[float] = []
        self._measured_key: bytes | None = None     # the measured pose's bits, to notice a frozen state
        self._measured_changed: tuple[float, np.ndarray] | None = None   # (its stamp, the target) when they last changed

    # -- inputs ---------------------------------------------------------------------------------------
    @property
    def started(self) -> bool:
        return self._last_target is not None

    @property
    def last_target(self) -> Pose | None:
        return self._last_target

    @property
    def executing(self) -> bool:
        """A plan is being executed (set_keyframes accepted it; not yet stopped or halted)."""
        return bool(self._segments) and not self._stopped

    @property
    def halt_reason(self) -> str | None:
        """Why the executor halted itself (it sends nothing until start() or clear_stop()), or None."""
        return self._halt_reason

    def start(self, measured: Pose, now: float) -> None:
        """Begin holding the measured pose. Raises ValueError when it is outside the workspace: a target
        clipped into the box could be far from the arm, and the controller would pull it there unlimited."""
        if not self.limits.inside(measured.position, tolerance=WORKSPACE_TOLERANCE):
            raise ValueError(f"the robot is at {np.round(measured.position, 3).tolist()}, outside the workspace "
                             f"{self.limits.workspace_min}..{self.limits.workspace_max}: move it in by hand")
        self._last_target = Pose(self.limits.clip(measured.position), measured.orientation)
        self._last_time = now
        self._segments = []
        self._halt_reason, self._reseed_times = None, []
        self._measured_key = self._measured_changed = None

    def stop(self) -> None:
        """Halt at the last target now; the next update already holds it. Sticky: plans are refused until
        clear_stop(), so a plan computed while the stop arrived cannot override it."""
        self._segments = []
        self._stopped = True

    def clear_stop(self) -> None:
        """A new episode: plans are accepted again. After a halt the executor starts over from the next
        measured pose (start()), never from the target it halted at."""
        self._stopped = False
        if self._halt_reason is not None:
            self._last_target = None
            self._halt_reason, self._reseed_times = None, []

    def set_keyframes(self, keyframes: list[Keyframe], observation_stamp: float, now: float) -> None:
        """Replace the plan, starting from the last commanded target. Raises ValueError for a late or
        invalid plan (nothing changes then)."""
        if not self.started:
            raise ValueError("executor has no measured pose yet; call start() first")
        if self._halt_reason is not None:
            raise ValueError(f"executor halted: {self._halt_reason}")
        if self._stopped:
            raise ValueError("executor is stopped; a new episode clears the stop")
        age = now - observation_stamp
        if age > self.max_plan_age_sec:
            raise ValueError(f"plan is {age:.2f} s old (observation stamp {observation_stamp:.3f}), "
                             f"more than max_plan_age_sec={self.max_plan_age_sec}")
        if not keyframes:
            raise ValueError("plan has no keyframes")
        for i, keyframe in enumerate(keyframes):
            if not self.limits.inside(keyframe.pose.position, tolerance=0.05):
                raise ValueError(f"keyframe {i} at {np.round(keyframe.pose.position, 3).tolist()} is outside the "
                                 f"workspace {self.limits.workspace_min}..{self.limits.workspace_max}")
        segments, t, start = [], 0.0, self._last_target
        # Smoothstep peaks at 1.5x the mean speed; plan so the peak stays at speed_fraction of the limit.
        linear = self.limits.max_linear_speed * self.speed_fraction / 1.5
        angular = self.limits.max_angular_speed * self.speed_fraction / 1.5
        for keyframe in keyframes:
            end = Pose(self.limits.clip(keyframe.pose.position), keyframe.pose.orientation)
            distance = float(np.linalg.norm(end.position - start.position))
            rotation = quaternion_angle(start.orientation, end.orientation)
            duration = max(distance / linear, rotation / angular, 1.0 / self.rate_hz)
            dwell = self.gripper.dwell_sec if keyframe.gripper is not None else 0.0
            segments.append(_Segment(start, end, t, duration, keyframe.gripper, dwell))
            t += duration + dwell
            start = end
        self._segments = segments
        self._plan_clock = 0.0
        self._next_segment = 0

    # -- control tick ---------------------------------------------------------------------------------
    def update(self, now: float, measured: Pose | None, measured_stamp: float | None) -> ExecutorCommand | None:
        """One control tick. Returns the target to send, or None before start()."""
        if not self.started:
            return None
        dt = max(0.0, now - self._last_time)
        self._last_time = now
        # A late tick must not license a big jump: at most two nominal periods of motion per tick.
        dt_motion = min(dt, 2.0 / self.rate_hz)

        if self._halt_reason is not None:
            return ExecutorCommand(None, None, ExecutorStatus.HALTED, 0.0)
        if measured is not None and measured_stamp is not None:
            key = measured.position.tobytes() + measured.orientation.tobytes()
            if key != self._measured_key:
                self._measured_key, self._measured_changed = key, (measured_stamp, self._last_target.position.copy())
            changed_stamp, changed_target = self._measured_changed
            still_for, moved = measured_stamp - changed_stamp, np.linalg.norm(self._last_target.position - changed_target)
            if still_for > self.stale_after_sec and moved > self.frozen_motion:
                return self._halt(f"the measured pose kept every bit for {still_for:.2f} s of fresh stamps while the "
                                  f"targets moved {moved:.3f} m: a frozen state, re-stamped")
        # A stamp from the future is no fresher: the clock jumped back (a simulator reset) or the clocks disagree.
        stale = (measured is None or measured_stamp is None
                 or not -self.stale_after_sec <= now - measured_stamp <= self.stale_after_sec)
        if stale:
            return self._hold(ExecutorStatus.HOLDING_STALE)
        if not self.limits.inside(measured.position, tolerance=WORKSPACE_TOLERANCE):
            return ExecutorCommand(None, None, ExecutorStatus.OUTSIDE_WORKSPACE, 0.0)
        deviation = float(np.linalg.norm(measured.position - self._last_target.position))
        if deviation > self.limits.max_tracking_error:
            # The arm is not where it was sent (pushed, blocked, reset, a controller restart): never keep pulling it
            # back to an old target. Hold where it is and resume the plan from there, step-limited. While a plan
            # runs, only for a bounded jump of the target and a few times: a state that falls behind moving targets
            # (frozen, re-stamped) would otherwise draw the target onto itself again and again. Without a plan the
            # targets stand still, so the arm was moved (a scene reset, a hand): the target follows it.
            if self.executing:
                if deviation > self.limits.max_reseed_distance:
                    return self._halt(f"the arm is {deviation:.3f} m from its target, more than "
                                      f"max_reseed_distance {self.limits.max_reseed_distance:g}")
                self._reseed_times = [t for t in self._reseed_times if now - t < self.reseed_window_sec] + [now]
                if len(self._reseed_times) > self.max_reseeds:
                    return self._halt(f"{len(self._reseed_times)} re-seeds within {self.reseed_window_sec:g} s: "
                                      "the robot state does not follow the targets")
            self._last_target = Pose(self.limits.clip(measured.position), measured.orientation)
            return self._hold(ExecutorStatus.HOLDING_TRACKING)
        if self._stopped:
            return self._hold(ExecutorStatus.STOPPED)
        if not self._segments:
            return self._hold(ExecutorStatus.IDLE)

        self._plan_clock += dt_motion
        gripper_goal = self._gripper_goal_due(measured)
        desired = self._sample_plan()
        target = self._limit(desired, dt_motion)
        self._last_target = target
        last = self._segments[-1]
        total = last.t0 + last.duration + last.dwell
        finished = (self._plan_clock >= total and self._next_segment >= len(self._segments)
                    and self._reached(target, last.end))
        status = ExecutorStatus.DONE if finished else ExecutorStatus.EXECUTING
        return ExecutorCommand(target, gripper_goal, status, min(1.0, self._plan_clock / total))

    def _hold(self, status: ExecutorStatus) -> ExecutorCommand:
        return ExecutorCommand(self._last_target, None, status, 0.0)

    def _halt(self, reason: str) -> ExecutorCommand:
        self._halt_reason, self._segments = reason, []
        return ExecutorCommand(None, None, ExecutorStatus.HALTED, 0.0)

    @staticmethod
    def _reached(pose: Pose, goal: Pose, tolerance: float = 1e-3) -> bool:
        return (np.linalg.norm(pose.position - goal.position) <= tolerance
                and quaternion_angle(pose.orientation, goal.orientation) <= 10 * tolerance)

    def _gripper_goal_due(self, measured: Pose) -> GripperGoal | None:
        """The gripper command of the segment whose end the plan clock has passed, once the arm is there.

        Until the commanded target and the measured pose have arrived, the plan clock waits at the segment's
        end: a grasp must never close early because clipping or the controller lagged behind the plan.
        """
        while self._next_segment < len(self._segments):
            segment = self._segments[self._next_segment]
            end_time = segment.t0 + segment.duration
            if self._plan_clock < end_time:
                return None
            if segment.gripper is None:
                self._next_segment += 1
                continue
            arrived = (self._reached(self._last_target, segment.end)
                       and np.linalg.norm(measured.position - segment.end.position) <= self.arrival_tolerance)
            if not arrived:
                self._plan_clock = end_time
                return None
            self._next_segment += 1
            # Start the dwell now, however long the wait for arrival was.
            self._plan_clock = end_time
            return GripperGoal.for_state(segment.gripper, self.gripper)
        return None

    def _sample_plan(self) -> Pose:
        for segment in self._segments:
            if self._plan_clock < segment.t0 + segment.duration:
                s = max(0.0, (self._plan_clock - segment.t0) / segment.duration)
                s = s * s * (3 - 2 * s)  # smoothstep: zero velocity at each keyframe
                position = segment.start.position + s * (segment.end.position - segment.start.position)
                return Pose(position, slerp(segment.start.orientation, segment.end.orientation, s))
            if self._plan_clock < segment.t0 + segment.duration + segment.dwell:
                return segment.end
        return self._segments[-1].end

    def _limit(self, desired: Pose, dt: float) -> Pose:
        previous = self._last_target
        position = self.limits.clip(desired.position)
        max_step = self.limits.max_linear_speed * dt
        step = position - previous.position
        length = float(np.linalg.norm(step))
        if length > max_step:
            position = previous.position + step * (max_step / length)
        orientation = desired.orientation
        angle = quaternion_angle(previous.orientation, orientation)
        max_angle = self.limits.max_angular_speed * dt
        if angle > max_angle:
            orientation = slerp(previous.orientation, orientation, max_angle / angle)
        return Pose(position, orientation)


def describe_status(status: ExecutorStatus, executor: CartesianExecutor, now: float, measured: Pose | None,
                    measured_stamp: float | None, pose_source: str = "the robot state") -> str:
    """Why the executor is in `status`, for people (status JSON, diagnostics, logs); "" when nothing to say."""
    if status == ExecutorStatus.HALTED:
        return f"halted: {executor.halt_reason}; nothing is sent until the next episode"
    stale_after_sec = executor.stale_after_sec
    if status == ExecutorStatus.HOLDING_STALE:
        if measured is None or measured_stamp is None:
            return f"no end-effector pose on {pose_source}"
        age = now - measured_stamp
        if age < 0:
            return f"the end-effector pose is stamped {-age:.3f} s in the future (clock jumped back?)"
        return f"the end-effector pose is {age:.3f} s old (stale_after_sec {stale_after_sec:g})"
    if status == ExecutorStatus.OUTSIDE_WORKSPACE and measured is not None:
        return f"the robot is at {[round(float(v), 3) for v in measured.position]}, outside the workspace"
    if status == ExecutorStatus.HOLDING_TRACKING:
        return "the arm is not where it was sent: holding where it is"
    return ""
