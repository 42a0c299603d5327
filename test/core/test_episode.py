"""The episode core (hamster_core.episode) without a graph: the loop's order, interruption precedence, input
readiness, and the robot adapter's reports. policy_node and the simulator rollout both run this loop;
test_episode_parity.py runs the same scripted policy through both."""
from __future__ import annotations

import json

import numpy as np
import pytest

from hamster_core.episode import (EpisodeRuntime, InputRules, InputSnapshot, Interruptions, RobotEvents,
                                  masks_are_for, path_is_for, run_episode, vlm_failure, waiting_for)
from hamster_core.executor import ExecutorStatus, Keyframe
from hamster_core.geometry import Pose
from hamster_core.path2d import Path2D
from hamster_core.policies.base import Observation, Policy, PolicyError, PolicyOutput

POSE = Pose(np.array([0.4, 0.0, 0.3]), np.array([1.0, 0.0, 0.0, 0.0]))


class StepRuntime(EpisodeRuntime):
    """A runtime on a counter clock: each wait advances it by `period`; the executor finishes a plan after
    `ticks_per_plan` waits. `events` maps a time to an Interruptions to report from then on."""

    def __init__(self, period: float = 0.1, ticks_per_plan: int = 3, ready_at: float = 0.0, events=None):
        self.time, self.period, self.ticks_per_plan, self.ready_at = 0.0, period, ticks_per_plan, ready_at
        self.events = events or {}
        self.submitted: list[list[Keyframe]] = []
        self.halts = 0
        self.log: list[tuple] = []
        self._ticks_left = 0

    def now(self):
        return self.time

    def observe(self, instruction, episode_start):
        if self.time < self.ready_at:
            return None, "a fresh point cloud"
        return Observation(stamp=self.time, instruction=instruction, tcp_pose=POSE, gripper_width=0.08,
                           points=np.zeros((10, 3), np.float32)), None

    def interruptions(self, episode_start):
        current = Interruptions()
        for at, interruption in sorted(self.events.items()):
            if self.time >= at:
                current = interruption
        return current

    def submit(self, keyframes, observation_stamp):
        self.submitted.append(list(keyframes))
        self._ticks_left = self.ticks_per_plan

    def executor_progress(self):
        return (ExecutorStatus.DONE if self._ticks_left == 0 else ExecutorStatus.EXECUTING), 0.0

    def wait(self):
        self.time = round(self.time + self.period, 9)
        self._ticks_left = max(0, self._ticks_left - 1)

    def halt(self):
        self.halts += 1

    def feedback(self, phase, progress=0.0):
        self.log.append(("feedback", phase))

    def on_waiting(self, missing):
        self.log.append(("waiting", missing))


class CountingPolicy(Policy):
    def __init__(self, plans: int = 3, fail_at: int = 0):
        self.plans, self.fail_at, self.calls, self.resets = plans, fail_at, 0, 0

    def reset(self):
        self.calls = 0
        self.resets += 1

    def select_action(self, observation):
        self.calls += 1
        if self.calls == self.fail_at:
            raise PolicyError(f"no plan at call {self.calls}")
        return PolicyOutput([Keyframe(POSE)], done=self.calls == self.plans, info={"call": self.calls})


def test_plans_until_a_prediction_says_done():
    runtime, policy = StepRuntime(), CountingPolicy(plans=3)
    outcome = run_episode(runtime, policy, "  put the cube in the bowl ", timeout_sec=10)
    assert outcome.success and outcome.message == "executed 3 keyframes from 3 plans"
    assert (outcome.plans, outcome.keyframes, outcome.infos) == (3, 3, [{"call": 1}, {"call": 2}, {"call": 3}])
    assert len(runtime.submitted) == 3 and runtime.halts == 0 and policy.resets == 1
    phases = [phase for kind, phase in runtime.log if kind == "feedback"]
    assert phases[:3] == ["waiting_for_inputs", "planning", "executing"]


def test_one_plan_says_no_plan_count():
    outcome = run_episode(StepRuntime(), CountingPolicy(plans=1), "go", timeout_sec=10)
    assert outcome.message == "executed 1 keyframes"


def test_a_refused_plan_ends_the_episode_and_halts():
    runtime = StepRuntime()
    outcome = run_episode(runtime, CountingPolicy(plans=3, fail_at=2), "go", timeout_sec=10)
    assert not outcome.success and outcome.message == "cannot plan: no plan at call 2"
    assert runtime.halts == 1 and outcome.plans == 1


def test_times_out_while_waiting_and_says_for_what():
    runtime = StepRuntime(ready_at=99.0)
    outcome = run_episode(runtime, CountingPolicy(), "go", timeout_sec=1.5)
    assert outcome.message == "timed out after 1.5 s while waiting for a fresh point cloud"
    assert runtime.halts == 1 and 1.5 < runtime.time <= 1.5 + runtime.period + 1e-9
    assert [entry for entry in runtime.log if entry[0] == "waiting"] == [("waiting", "a fresh point cloud")]


def test_an_interruption_while_executing_names_the_phase():
    runtime = StepRuntime(ticks_per_plan=100, events={0.25: Interruptions(stop_requested=True)})
    outcome = run_episode(runtime, CountingPolicy(), "go", timeout_sec=10)
    assert outcome.message == "stopped by request while executing" and runtime.halts == 1


def test_an_interruption_before_the_first_plan_wins_over_planning():
    runtime = StepRuntime(events={0.0: Interruptions(canceled=True)})
    policy = CountingPolicy()
    outcome = run_episode(runtime, policy, "go", timeout_sec=10)
    assert outcome.message == "canceled while waiting for inputs" and policy.calls == 0


@pytest.mark.parametrize("instruction, timeout", [("   ", 1.0), ("go", 0.0), ("go", float("nan")), ("go", True)])
def test_bad_episode_requests_are_refused(instruction, timeout):
    with pytest.raises(ValueError):
        run_episode(StepRuntime(), CountingPolicy(), instruction, timeout)


def test_interruption_precedence():
    everything = Interruptions(canceled=True, stop_requested=True, clock_jump="the clock jumped back",
                               executor_halted="3 re-seeds within 10 s", robot_halted="REFLEX",
                               halted_during_episode="user stop", gripper_failure="gripper grasp failed: no object",
                               vlm_failure="no path")
    expected = ["canceled", "stopped by request", "the clock jumped back", "executor halted: 3 re-seeds within 10 s",
                "robot halted: REFLEX", "robot halted: user stop", "gripper grasp failed: no object",
                "VLM failed: no path"]
    fields = ["canceled", "stop_requested", "clock_jump", "executor_halted", "robot_halted", "halted_during_episode",
              "gripper_failure", "vlm_failure"]
    for index, reason in enumerate(expected):
        remaining = Interruptions(**{name: getattr(everything, name) for name in fields[index:]})
        assert remaining.reason() == reason
    assert Interruptions().reason() is None


RULES = InputRules(stale_after_sec=0.2, max_input_age_sec=1.0, mask_wait_sec=3.0, require_robot_enabled=True,
                   enable_hint="/robot/enable")
PATH = Path2D(np.array([[0.1, 0.2], [0.3, 0.4]]), np.array([0, 1], np.uint8))


@pytest.mark.parametrize("change, expected", [
    (dict(ee_stamp=None), "a fresh end-effector pose"),
    (dict(ee_stamp=9.7), "a fresh end-effector pose"),
    (dict(robot_enabled=False), "the robot to be enabled (/robot/enable)"),
    (dict(cloud_stamp=None), "a fresh point cloud"),
    (dict(cloud_stamp=8.9), "a fresh point cloud"),
    (dict(camera_ready=False), "camera info and camera pose"),
    (dict(path=None), "a path for 'go'"),
    (dict(masks={}), "grounding masks"),
    ({}, None),
])
def test_readiness_rules_in_order(change, expected):
    ready = dict(now=10.0, ee_stamp=9.9, cloud_stamp=9.5, camera_ready=True, robot_enabled=True, path=PATH,
                 masks={"target_object": np.ones((2, 2), bool)})
    inputs = InputSnapshot(**{**ready, **change})
    assert waiting_for(RULES, inputs, "go", episode_start=9.0, required_inputs=frozenset({"camera", "path"})) \
        == expected


def test_masks_are_waited_for_only_mask_wait_sec():
    inputs = InputSnapshot(now=13.5, ee_stamp=13.4, cloud_stamp=13.4)
    assert waiting_for(InputRules(), inputs, "go", episode_start=10.0) is None
    assert waiting_for(InputRules(), inputs, "go", episode_start=11.0) == "grounding masks"


def test_a_policy_that_plans_on_masks_waits_for_them_past_mask_wait_sec():
    """rvt2 with masks conditioning (the shipped checkpoint) cannot plan without them: planning anyway would end
    the episode with "cannot plan" whenever masks are late or aged out on a loaded machine."""
    inputs = InputSnapshot(now=60.0, ee_stamp=59.9, cloud_stamp=59.9, camera_ready=True)
    needs = frozenset({"points", "camera", "masks"})
    assert waiting_for(InputRules(), inputs, "go", episode_start=10.0, required_inputs=needs) == "grounding masks"
    masks = {"target_object": np.ones((2, 2), bool)}
    assert waiting_for(InputRules(), InputSnapshot(now=60.0, ee_stamp=59.9, cloud_stamp=59.9, camera_ready=True,
                                                   masks=masks), "go", episode_start=10.0, required_inputs=needs) is None


@pytest.mark.parametrize("field, value", [("stale_after_sec", 0.0), ("max_input_age_sec", -1.0),
                                          ("mask_wait_sec", float("inf")), ("stale_after_sec", "0.2")])
def test_input_rules_refuse_bad_values(field, value):
    with pytest.raises(ValueError, match=field):
        InputRules(**{field: value})


def test_paths_and_masks_belong_to_this_episode_only():
    assert path_is_for("put the cube in the bowl", 10.0, "put the cube in the bowl", 10.0)
    assert not path_is_for("put the cube in the bowl", 9.9, "put the cube in the bowl", 10.0)   # last episode's
    assert not path_is_for("put the cube in the box", 11.0, "put the cube in the bowl", 10.0)
    assert masks_are_for(["the Cube", "bowl"], 10.5, "put the cube in the bowl", 10.0, now=11.0, max_age_sec=1.0)
    assert not masks_are_for(["cube", "box"], 10.5, "put the cube in the bowl", 10.0, now=11.0, max_age_sec=1.0)
    assert not masks_are_for(["cube"], 10.5, "put the cube in the bowl", 10.0, now=12.0, max_age_sec=1.0)
    assert not masks_are_for(["cube"], 9.5, "put the cube in the bowl", 10.0, now=10.0, max_age_sec=1.0)


def test_robot_events_hold_on_a_halt_and_time_it_by_the_episode():
    events = RobotEvents()
    assert not events.robot_status(json.dumps({"gate": "streaming", "halt_count": 0}), now=1.0)
    # A halt and an immediate re-enable: only the count shows it.
    assert events.robot_status(json.dumps({"gate": "streaming", "halt_count": 1, "last_halt_reason": "REFLEX"}),
                               now=5.0)
    assert events.interruptions(episode_start=4.0).reason() == "robot halted: REFLEX"
    assert events.interruptions(episode_start=6.0).reason() is None   # before this episode
    assert events.robot_status(json.dumps({"gate": "halted", "halt_count": 1, "reason": "user stop"}), now=7.0)
    assert events.interruptions(episode_start=8.0).reason() == "robot halted: user stop"


@pytest.mark.parametrize("text", ["not json", "[1, 2]", json.dumps({"gate": "halted", "halt_count": "many"}), "null"])
def test_malformed_robot_status_is_ignored(text):
    events = RobotEvents()
    assert not events.robot_status(text, now=1.0)
    assert events.status == {} and events.interruptions(0.0).reason() is None


def test_a_gripper_failure_counts_from_the_command_it_answers():
    events = RobotEvents()
    events.gripper_result(json.dumps({"action": "grasp", "success": False, "error": "no object",
                                      "command_stamp": 3.0}), now=12.0)
    assert events.interruptions(episode_start=10.0).reason() is None   # the previous episode's command
    assert events.interruptions(episode_start=2.0).reason() == "gripper grasp failed: no object"
    events.gripper_result("{broken", now=13.0)
    events.gripper_result(json.dumps({"action": "move", "success": True}), now=14.0)
    assert events.interruptions(episode_start=2.0).reason() == "gripper grasp failed: no object"


def test_vlm_failure_is_this_episodes_only():
    failed = json.dumps({"state": "failed", "instruction": "go", "stamp": 5.0, "message": "unparseable answer"})
    assert vlm_failure(failed, "go", episode_start=4.0) == "unparseable answer"
    assert vlm_failure(failed, "go", episode_start=6.0) is None
    assert vlm_failure(failed, "stop", episode_start=4.0) is None
    assert vlm_failure("{", "go", 0.0) is None and vlm_failure(None, "go", 0.0) is None


def test_drop_reasons_name_why_a_path_or_masks_are_not_this_episodes():
    from hamster_core.episode import masks_drop_reason, path_drop_reason
    assert path_drop_reason("put the cube in the box", 11.0, "put the cube in the bowl", 10.0) == \
        "for another instruction"
    assert path_drop_reason("put the cube in the bowl", 9.0, "put the cube in the bowl", 10.0) == \
        "stamped before the episode"
    assert masks_drop_reason(["cube"], 10.5, "put the cube in the bowl", 10.0, now=12.0, max_age_sec=1.0) == \
        "older than max_input_age_sec"
    assert masks_drop_reason(["cube", "bowl"], 10.5, "put the cube in the bowl", 10.0, 11.0, 1.0) is None
