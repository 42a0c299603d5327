"""One episode, plan -> execute -> done, the same for every place that runs one: policy_node on a robot or in
the simulated graph, and the in-process simulator rollout (hamster_sim.rollout) that records demonstrations
and evaluates policies. ROS-free: an `EpisodeRuntime` gives the loop its clock, observations, executor and
outside events; the loop owns the order of things.

    wait until the inputs are ready -> policy.select_action -> executor.set_keyframes
    -> wait until the executor is DONE -> again, until a prediction says done

Between any two steps the loop checks for an interruption, in a fixed precedence (`Interruptions.reason`),
and halts the executor before it ends the episode on one.
"""
from __future__ import annotations

import json
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

from hamster_core.executor import ExecutorStatus, Keyframe
from hamster_core.path2d import Path2D
from hamster_core.policies.base import Observation, Policy, PolicyError, PolicyOutput


# -- input readiness ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class InputRules:
    """When a runtime's inputs are ready to plan on (policy_node's parameters of the same names)."""

    stale_after_sec: float = 0.2          # the end-effector pose must be younger than this
    max_input_age_sec: float = 1.0        # the point cloud and masks must be younger than this
    mask_wait_sec: float = 3.0            # wait this long into an episode for masks, then plan without
    require_robot_enabled: bool = False   # wait for the robot adapter's gate to stream
    enable_hint: str = ""                 # how a user enables the robot, said while waiting for it

    def __post_init__(self):
        for name in ("stale_after_sec", "max_input_age_sec", "mask_wait_sec"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or value < 0 or (value == 0 and name != "mask_wait_sec"):
                raise ValueError(f"{name} must be a finite number > 0 (mask_wait_sec >= 0), got {value!r}")


@dataclass
class InputSnapshot:
    """What a runtime holds when an episode asks, before anything heavy is converted. Times on the runtime's
    clock; `path` and `masks` only when they belong to this episode (`path_is_for`, `masks_are_for`)."""

    now: float
    ee_stamp: float | None
    cloud_stamp: float | None
    camera_ready: bool = False            # camera model and camera pose both known
    cloud_problem: str | None = None      # what is wrong with the newest cloud, once converted (None: usable)
    robot_enabled: bool = True
    path: Path2D | None = None
    masks: dict = field(default_factory=dict)


def waiting_for(rules: InputRules, inputs: InputSnapshot, instruction: str, episode_start: float,
                required_inputs: frozenset = frozenset()) -> str | None:
    """What the episode still lacks before it can plan (for people: status and diagnostics), or None."""
    if inputs.ee_stamp is None or inputs.now - inputs.ee_stamp > rules.stale_after_sec:
        return "a fresh end-effector pose"
    if rules.require_robot_enabled and not inputs.robot_enabled:
        return "the robot to be enabled" + (f" ({rules.enable_hint})" if rules.enable_hint else "")
    if inputs.cloud_stamp is None or inputs.now - inputs.cloud_stamp > rules.max_input_age_sec:
        return "a fresh point cloud"
    if "camera" in required_inputs and not inputs.camera_ready:
        return "camera info and camera pose"
    if inputs.cloud_problem:   # sensor problems first: a broken camera matters more than a pending path
        return inputs.cloud_problem
    if "path" in required_inputs and inputs.path is None:
        return f"a path for {instruction!r}"
    if not inputs.masks and ("masks" in required_inputs or inputs.now - episode_start < rules.mask_wait_sec):
        return "grounding masks"   # a policy that plans on them (masks conditioning) waits for them, never without
    return None


def path_is_for(path_instruction: str, path_stamp: float, instruction: str, episode_start: float) -> bool:
    """A path answers this episode: drawn for its instruction, no earlier than it began (the VLM's latched path
    of a previous episode with the same words must not be reused)."""
    return path_drop_reason(path_instruction, path_stamp, instruction, episode_start) is None


def path_drop_reason(path_instruction: str, path_stamp: float, instruction: str, episode_start: float) -> str | None:
    """Why a path is not this episode's, or None."""
    if path_instruction != instruction:
        return "for another instruction"
    if path_stamp < episode_start:
        return "stamped before the episode"
    return None


def masks_are_for(phrases, stamp: float, instruction: str, episode_start: float, now: float,
                  max_age_sec: float) -> bool:
    """Fresh masks grounded from this instruction (perception may still publish the previous one's)."""
    return masks_drop_reason(phrases, stamp, instruction, episode_start, now, max_age_sec) is None


def masks_drop_reason(phrases, stamp: float, instruction: str, episode_start: float, now: float,
                      max_age_sec: float) -> str | None:
    """Why masks are not this episode's (or not fresh), or None."""
    if not all(phrase.lower() in instruction.lower() for phrase in phrases):
        return "for another instruction"
    if stamp < episode_start:
        return "stamped before the episode"
    if now - stamp > max_age_sec:
        return "older than max_input_age_sec"
    return None


# -- interruptions --------------------------------------------------------------------------------------------
@dataclass
class Interruptions:
    """Events from outside the loop that end an episode; `reason()` gives the one that wins."""

    canceled: bool = False                    # the caller canceled the episode
    stop_requested: bool = False              # the explicit stop service
    clock_jump: str | None = None             # the clock went back (a simulator reset or restart)
    executor_halted: str | None = None        # the executor stopped trusting the robot state (its halt_reason)
    robot_halted: str | None = None           # the robot adapter's gate is halted now, with its reason
    halted_during_episode: str | None = None  # it halted (and was re-enabled) since the episode began
    gripper_failure: str | None = None        # a gripper command of this episode failed
    vlm_failure: str | None = None            # the VLM gave up on this episode's instruction

    def reason(self) -> str | None:
        if self.canceled:
            return "canceled"
        if self.stop_requested:
            return "stopped by request"
        if self.clock_jump:
            return self.clock_jump
        if self.executor_halted:
            return f"executor halted: {self.executor_halted}"
        if self.robot_halted is not None:
            return f"robot halted: {self.robot_halted}"
        if self.halted_during_episode is not None:
            return f"robot halted: {self.halted_during_episode}"
        if self.gripper_failure:
            return self.gripper_failure
        if self.vlm_failure:
            return f"VLM failed: {self.vlm_failure}"
        return None


class RobotEvents:
    """What the robot adapter and the VLM node report (JSON in std_msgs/String), read into the episode's terms.
    Malformed reports are ignored: they come from another process and must never end the node."""

    def __init__(self):
        self.status: dict = {}                               # the adapter's latest status (gate, reason, ...)
        self._halt_count = 0                                 # halts the adapter has reported
        self._last_halt: tuple[float, str] | None = None     # (time seen, reason) of the newest halt
        self._gripper_failure: tuple[float, str] | None = None   # (its command's stamp, message)

    @property
    def gate(self) -> str | None:
        return self.status.get("gate")

    def robot_status(self, text: str, now: float) -> bool:
        """Read the adapter's status; True when the arm must hold (halted now, or a halt since the last one)."""
        try:
            status = json.loads(text)
            halted = status.get("gate") == "halted"
            halt_count = int(status.get("halt_count", 0))
        except (ValueError, TypeError, AttributeError):
            return False
        self.status = status
        # A halt followed at once by a re-enable shows only in the count (the latched status keeps one message).
        new_halt = halt_count > self._halt_count
        self._halt_count = max(self._halt_count, halt_count)
        if new_halt:
            self._last_halt = (now, str(status.get("last_halt_reason") or status.get("reason")))
        return halted or new_halt

    def gripper_result(self, text: str, now: float) -> None:
        try:
            result = json.loads(text)
            failed = not result["success"]
        except (ValueError, KeyError, TypeError):
            return
        if failed:
            # Timed by the command it answers, not by arrival: a late failure of the previous episode's command
            # must not end the next episode.
            stamp = result.get("command_stamp")
            when = float(stamp) if isinstance(stamp, (int, float)) and not isinstance(stamp, bool) else now
            self._gripper_failure = (when, f"gripper {result.get('action')} failed: {result.get('error')}")

    def interruptions(self, episode_start: float, **outside) -> Interruptions:
        """The adapter's part of an episode's interruptions; `outside` fills the runtime's own fields."""
        halt, gripper = self._last_halt, self._gripper_failure
        return Interruptions(
            robot_halted=str(self.status.get("reason")) if self.gate == "halted" else None,
            halted_during_episode=halt[1] if halt is not None and halt[0] >= episode_start else None,
            gripper_failure=gripper[1] if gripper is not None and gripper[0] >= episode_start else None,
            **outside)


def vlm_failure(status_text: str | None, instruction: str, episode_start: float) -> str | None:
    """The VLM node's message when it gave up on this episode's instruction (its latched status JSON)."""
    try:
        status = json.loads(status_text) if status_text is not None else {}
        failed = status.get("state") == "failed" and status.get("instruction") == instruction \
            and float(status.get("stamp", -1.0)) >= episode_start  # not a previous episode's failure
    except (ValueError, TypeError, AttributeError):
        return None
    return str(status.get("message", "no path")) if failed else None


# -- the loop -------------------------------------------------------------------------------------------------
class EpisodeRuntime(ABC):
    """Where an episode runs: policy_node (ROS time, threads) or the in-process rollout (simulated time)."""

    @abstractmethod
    def now(self) -> float:
        """The runtime's clock (s): stamps of observations and the timeout are measured in it."""

    @abstractmethod
    def observe(self, instruction: str, episode_start: float) -> tuple[Observation | None, str | None]:
        """The newest inputs as an Observation, or (None, what is still missing)."""

    @abstractmethod
    def interruptions(self, episode_start: float) -> Interruptions:
        """The outside events seen so far in this episode."""

    @abstractmethod
    def submit(self, keyframes: list[Keyframe], observation_stamp: float) -> None:
        """Hand a plan to the executor; raises ValueError when the executor refuses it (stopped, stale)."""

    @abstractmethod
    def executor_progress(self) -> tuple[ExecutorStatus | None, float]:
        """The executor's status since the last submit (None until it ran once on the plan) and progress."""

    @abstractmethod
    def wait(self) -> None:
        """Let time pass before the loop looks again (a poll period, or one control tick)."""

    @abstractmethod
    def halt(self) -> None:
        """Stop the executor: the arm holds."""

    def on_start(self, episode_start: float) -> None:
        """The episode began at `episode_start` (the runtime's clock): inputs stamped before it are not its own."""

    def feedback(self, phase: str, progress: float = 0.0) -> None:
        """The loop's phase: waiting_for_inputs, planning or executing."""

    def on_waiting(self, waiting_for: str | None) -> None:
        """What the episode lacks changed (None: nothing)."""

    def on_plan(self, number: int, observation: Observation, output: PolicyOutput) -> None:
        """A plan was accepted by the executor."""

    def on_executed(self, output: PolicyOutput) -> None:
        """The executor finished a plan's keyframes."""


@dataclass
class EpisodeOutcome:
    success: bool
    message: str
    plans: int = 0                 # policy calls whose keyframes the executor accepted
    keyframes: int = 0             # keyframes executed to the end
    infos: list = field(default_factory=list)   # each plan's PolicyOutput.info


def run_episode(runtime: EpisodeRuntime, policy: Policy, instruction: str, timeout_sec: float) -> EpisodeOutcome:
    """Plan and execute until a prediction says done, or until an interruption, a refused plan or the timeout
    ends the episode. The executor holds on every unsuccessful end."""
    instruction = instruction.strip()
    if not instruction:
        raise ValueError("an episode needs an instruction")
    if isinstance(timeout_sec, bool) or not isinstance(timeout_sec, (int, float)) \
            or not math.isfinite(timeout_sec) or timeout_sec <= 0:
        raise ValueError(f"timeout_sec must be a finite number > 0, got {timeout_sec!r}")
    start = runtime.now()
    policy.reset()
    runtime.on_start(start)
    outcome = EpisodeOutcome(False, "")

    def interrupted() -> str | None:
        reason = runtime.interruptions(start).reason()
        if reason is None and runtime.now() - start > timeout_sec:
            reason = f"timed out after {timeout_sec:g} s"
        return reason

    def fail(message: str) -> EpisodeOutcome:
        runtime.halt()
        outcome.message = message
        return outcome

    last_waiting_for: str | None = None
    while True:
        runtime.feedback("waiting_for_inputs")
        observation, missing = None, None
        while observation is None:
            reason = interrupted()
            if reason:
                return fail(f"{reason} while waiting for {missing or 'inputs'}")
            observation, missing = runtime.observe(instruction, start)
            if missing != last_waiting_for:
                last_waiting_for = missing
                runtime.on_waiting(missing)
            if observation is None:
                runtime.wait()

        runtime.feedback("planning")
        try:
            output = policy.select_action(observation)
            runtime.submit(output.keyframes, observation.stamp)
        except (PolicyError, ValueError) as error:
            return fail(f"cannot plan: {error}")
        outcome.plans += 1
        outcome.infos.append(output.info)
        runtime.on_plan(outcome.plans, observation, output)

        while True:
            reason = interrupted()
            if reason:
                return fail(f"{reason} while executing")
            status, progress = runtime.executor_progress()
            if status == ExecutorStatus.DONE:
                break
            runtime.feedback("executing", progress)
            runtime.wait()
        outcome.keyframes += len(output.keyframes)
        runtime.on_executed(output)
        if output.done:
            outcome.success = True
            outcome.message = f"executed {outcome.keyframes} keyframes" + (
                f" from {outcome.plans} plans" if outcome.plans > 1 else "")
            return outcome
