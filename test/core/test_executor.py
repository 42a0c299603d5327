"""CartesianExecutor: limits, timing, staleness, stop, and gripper sequencing."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from hamster_core.executor import (CartesianExecutor, ExecutorStatus, GripperSettings, Keyframe, SafetyLimits)
from hamster_core.geometry import TOP_DOWN, Pose, quaternion_angle
from hamster_core.path2d import GripperState

RATE = 100.0
DT = 1.0 / RATE
LIMITS = SafetyLimits(workspace_min=(0.2, -0.4, 0.05), workspace_max=(0.8, 0.4, 0.6), max_linear_speed=0.25,
                      max_angular_speed=1.0, max_tracking_error=0.08)


def pose(x, y, z, q=TOP_DOWN):
    return Pose(np.array([x, y, z]), q)


def make_executor(**kwargs):
    settings_ = dict(limits=LIMITS, gripper=GripperSettings(dwell_sec=0.2), rate_hz=RATE, stale_after_sec=0.05)
    settings_.update(kwargs)
    return CartesianExecutor(**settings_)


def run(executor, ticks, t0=0.0, follow=True, measured=None):
    """Tick the executor with a robot that tracks the target perfectly (or stays at `measured`)."""
    commands, t = [], t0
    current = measured
    for _ in range(ticks):
        t += DT
        command = executor.update(t, current if not follow else (commands[-1].target if commands else current), t)
        commands.append(command)
    return commands, t


def test_nothing_is_sent_before_start():
    assert make_executor().update(0.0, pose(0.5, 0, 0.3), 0.0) is None


def test_holds_measured_pose_when_idle():
    executor = make_executor()
    executor.start(pose(0.5, 0.0, 0.3), 0.0)
    command = executor.update(DT, pose(0.5, 0.0, 0.3), DT)
    assert command.status == ExecutorStatus.IDLE
    np.testing.assert_allclose(command.target.position, [0.5, 0.0, 0.3])


def test_refuses_to_start_outside_the_workspace():
    """Regression: starting at the measured pose clipped into the box sent a far target the controller would
    pull the arm to without any speed limit."""
    executor = make_executor()
    with pytest.raises(ValueError, match="outside the workspace"):
        executor.start(pose(1.5, 0.0, 0.0), 0.0)
    assert not executor.started


def test_arm_leaving_the_workspace_stops_the_stream():
    executor = make_executor()
    executor.start(pose(0.5, 0.0, 0.3), 0.0)
    command = executor.update(DT, pose(0.5, 0.0, 0.9), DT)
    assert command.status == ExecutorStatus.OUTSIDE_WORKSPACE and command.target is None


def test_tracking_error_reseeds_at_the_measured_pose():
    """Regression: after a reset or a push the held target stayed where it was, pulling the arm back to it."""
    executor = make_executor()
    executor.start(pose(0.5, 0.0, 0.3), 0.0)
    moved = pose(0.6, 0.05, 0.35)   # 12 cm: beyond max_tracking_error, within max_reseed_distance
    command = executor.update(DT, moved, DT)
    assert command.status == ExecutorStatus.HOLDING_TRACKING
    np.testing.assert_allclose(command.target.position, moved.position)
    assert executor.update(2 * DT, moved, 2 * DT).status == ExecutorStatus.IDLE


def test_without_a_plan_the_target_follows_the_arm_however_far():
    """A scene reset (or a hand) moves the idle arm: the next episode must start from there, not halt."""
    executor = make_executor()
    executor.start(pose(0.5, 0.0, 0.3), 0.0)
    far = pose(0.6, 0.2, 0.4)   # 24.5 cm from the target
    command = executor.update(DT, far, DT)
    assert command.status == ExecutorStatus.HOLDING_TRACKING
    np.testing.assert_allclose(command.target.position, far.position)


def test_a_reseed_farther_than_the_limit_during_a_plan_halts_and_the_next_episode_starts_from_the_arm():
    """Issue 21: the target jumped onto any received pose, however far."""
    executor = make_executor()
    executor.start(pose(0.5, 0.0, 0.3), 0.0)
    executor.set_keyframes([Keyframe(pose(0.6, 0.0, 0.3))], 0.0, 0.0)
    far = pose(0.6, 0.2, 0.4)   # 24.5 cm from the target
    command = executor.update(DT, far, DT)
    assert command.status == ExecutorStatus.HALTED and command.target is None
    assert "0.245 m from its target, more than max_reseed_distance 0.15" in executor.halt_reason
    assert executor.update(2 * DT, far, 2 * DT).target is None   # sticky
    with pytest.raises(ValueError, match="halted"):
        executor.set_keyframes([Keyframe(pose(0.6, 0.0, 0.3))], 2 * DT, 2 * DT)
    executor.clear_stop()   # the next episode
    assert not executor.started and executor.halt_reason is None
    executor.start(far, 3 * DT)
    assert executor.update(4 * DT, far, 4 * DT).status == ExecutorStatus.IDLE


def test_repeated_reseeds_halt_with_the_reason():
    """Issue 21: a frozen state re-seeded the target 12 times in 5 s, each an 8 cm jump, and never ended."""
    executor = make_executor()
    executor.start(pose(0.5, 0.0, 0.3), 0.0)
    executor.set_keyframes([Keyframe(pose(0.5, 0.0, 0.2))], 0.0, 0.0)
    t, statuses = 0.0, []
    for offset in (0.1, 0.0, 0.1):   # the arm reported 10 cm off, back, off again
        t += DT
        statuses.append(executor.update(t, pose(0.5 + offset, 0.0, 0.3), t).status)
    assert statuses[:2] == [ExecutorStatus.HOLDING_TRACKING] * 2 and statuses[2] == ExecutorStatus.HALTED
    assert executor.halt_reason == "3 re-seeds within 10 s: the robot state does not follow the targets"


def test_reseeds_far_apart_do_not_add_up():
    executor = make_executor()
    executor.start(pose(0.5, 0.0, 0.3), 0.0)
    executor.set_keyframes([Keyframe(pose(0.5, 0.0, 0.2))], 0.0, 0.0)
    for i, offset in enumerate((0.1, 0.0, 0.1, 0.0)):
        t = 6.0 * (i + 1)
        assert executor.update(t, pose(0.5 + offset, 0.0, 0.3), t).status == ExecutorStatus.HOLDING_TRACKING


def test_a_frozen_pose_with_fresh_stamps_halts_but_a_still_arm_does_not():
    """Issue 21: a bridge or driver re-stamping a stale sample looked fresh forever, and re-seeded again and again."""
    executor = make_executor()
    frozen = pose(0.5, 0.0, 0.3)
    executor.start(frozen, 0.0)
    t = 0.0
    for _ in range(50):   # the arm holds still with fresh stamps: never frozen
        t += DT
        assert executor.update(t, frozen, t).status == ExecutorStatus.IDLE
    executor.set_keyframes([Keyframe(pose(0.7, 0.0, 0.3))], t, t)
    statuses = []
    for _ in range(100):  # the targets move, the state keeps its bits, stamps keep advancing
        t += DT
        command = executor.update(t, frozen, t)
        statuses.append(command.status)
    assert statuses[-1] == ExecutorStatus.HALTED and command.target is None
    assert ExecutorStatus.HOLDING_TRACKING not in statuses, "halted before the tracking error could re-seed"
    assert "kept every bit" in executor.halt_reason and "a frozen state, re-stamped" in executor.halt_reason


def test_a_paused_state_stream_is_not_called_frozen():
    executor = make_executor()
    start = pose(0.5, 0.0, 0.3)
    executor.start(start, 0.0)
    executor.set_keyframes([Keyframe(pose(0.7, 0.0, 0.3))], 0.0, 0.0)
    for i in range(1, 15):   # the same message (same stamp) seen by 14 ticks: late (holds), not frozen
        assert executor.update(i * DT, start, DT).status in (ExecutorStatus.EXECUTING, ExecutorStatus.HOLDING_STALE)
    assert executor.halt_reason is None


def test_stop_is_sticky_until_cleared():
    """Regression: a plan computed while a stop arrived used to clear the stop and move the arm."""
    executor = make_executor()
    executor.start(pose(0.5, 0.0, 0.3), 0.0)
    executor.stop()
    with pytest.raises(ValueError, match="stopped"):
        executor.set_keyframes([Keyframe(pose(0.6, 0.0, 0.3))], 0.0, 0.0)
    assert executor.update(DT, pose(0.5, 0.0, 0.3), DT).status == ExecutorStatus.STOPPED
    executor.clear_stop()
    executor.set_keyframes([Keyframe(pose(0.6, 0.0, 0.3))], DT, DT)
    assert executor.update(2 * DT, pose(0.5, 0.0, 0.3), 2 * DT).status == ExecutorStatus.EXECUTING


def test_gripper_dwell_has_a_floor():
    with pytest.raises(ValueError, match="dwell_sec"):
        GripperSettings(dwell_sec=0.0)


def test_reaches_keyframes_in_order_and_reports_done():
    executor = make_executor()
    start = pose(0.5, 0.0, 0.3)
    executor.start(start, 0.0)
    goals = [pose(0.6, 0.1, 0.2), pose(0.4, -0.1, 0.25)]
    executor.set_keyframes([Keyframe(g) for g in goals], 0.0, 0.0)
    commands, _ = run(executor, 800, measured=start)
    statuses = [c.status for c in commands]
    assert ExecutorStatus.DONE in statuses
    done_at = statuses.index(ExecutorStatus.DONE)
    np.testing.assert_allclose(commands[done_at].target.position, goals[-1].position, atol=1e-3)
    # The stream passes the first keyframe on the way.
    distances = [np.linalg.norm(c.target.position - goals[0].position) for c in commands[:done_at]]
    assert min(distances) < 1e-3


def test_step_and_velocity_limits_hold_with_jittery_ticks():
    rng = np.random.default_rng(0)
    executor = make_executor()
    executor.start(pose(0.5, 0.0, 0.3), 0.0)
    far = Pose(np.array([0.75, 0.35, 0.1]), np.array([0.0, 1.0, 0.0, 0.0]))
    executor.set_keyframes([Keyframe(far)], 0.0, 0.0)
    t, previous = 0.0, executor.last_target
    for _ in range(500):
        dt = DT * rng.uniform(0.2, 5.0)   # late and early ticks
        t += dt
        command = executor.update(t, previous, t)
        step = np.linalg.norm(command.target.position - previous.position)
        assert step <= LIMITS.max_linear_speed * min(dt, 2 * DT) + 1e-9
        assert quaternion_angle(previous.orientation, command.target.orientation) <= \
            LIMITS.max_angular_speed * min(dt, 2 * DT) + 1e-6
        previous = command.target


def test_keyframe_far_outside_workspace_rejects_plan_and_keeps_holding():
    executor = make_executor()
    executor.start(pose(0.5, 0.0, 0.3), 0.0)
    with pytest.raises(ValueError, match="outside the workspace"):
        executor.set_keyframes([Keyframe(pose(0.5, 0.0, -0.5))], 0.0, 0.0)
    assert executor.update(DT, pose(0.5, 0.0, 0.3), DT).status == ExecutorStatus.IDLE


def test_keyframe_slightly_outside_is_clipped_to_the_boundary():
    executor = make_executor()
    executor.start(pose(0.5, 0.0, 0.3), 0.0)
    executor.set_keyframes([Keyframe(pose(0.5, 0.0, 0.03))], 0.0, 0.0)   # 2 cm below the floor of the box
    commands, _ = run(executor, 400, measured=pose(0.5, 0.0, 0.3))
    assert all(LIMITS.inside(c.target.position) for c in commands)
    assert commands[-1].target.position[2] == pytest.approx(LIMITS.workspace_min[2])


def test_late_plan_is_dropped():
    """Regression: a plan computed on an old observation must not run (diffusion_policy's rule)."""
    executor = make_executor(max_plan_age_sec=0.5)
    executor.start(pose(0.5, 0.0, 0.3), 10.0)
    with pytest.raises(ValueError, match="old"):
        executor.set_keyframes([Keyframe(pose(0.6, 0.0, 0.3))], observation_stamp=9.0, now=10.0)


def test_stale_robot_state_holds_within_one_tick_and_resumes_where_it_paused():
    executor = make_executor()
    start = pose(0.5, 0.0, 0.3)
    executor.start(start, 0.0)
    executor.set_keyframes([Keyframe(pose(0.7, 0.0, 0.3))], 0.0, 0.0)
    commands, t = run(executor, 50, measured=start)
    stale_stamp = t                             # the robot state stops arriving after this
    previous = commands[-1].target
    for _ in range(30):
        t += DT
        command = executor.update(t, previous, stale_stamp)
        if t - stale_stamp > executor.stale_after_sec:
            assert command.status == ExecutorStatus.HOLDING_STALE
            np.testing.assert_array_equal(command.target.position, previous.position)
        previous = command.target
    held = previous
    t += DT
    resumed = executor.update(t, held, t)       # fresh again: continue from the held target, no jump
    assert resumed.status == ExecutorStatus.EXECUTING
    assert np.linalg.norm(resumed.target.position - held.position) <= LIMITS.max_linear_speed * DT + 1e-9


def test_stop_halts_on_the_next_tick():
    executor = make_executor()
    start = pose(0.5, 0.0, 0.3)
    executor.start(start, 0.0)
    executor.set_keyframes([Keyframe(pose(0.7, 0.0, 0.3))], 0.0, 0.0)
    commands, t = run(executor, 40, measured=start)
    executor.stop()
    after = executor.update(t + DT, commands[-1].target, t + DT)
    assert after.status == ExecutorStatus.STOPPED
    np.testing.assert_array_equal(after.target.position, commands[-1].target.position)


def test_tracking_error_holds_and_the_plan_resumes_from_the_arm():
    executor = make_executor()
    executor.start(pose(0.5, 0.0, 0.3), 0.0)
    executor.set_keyframes([Keyframe(pose(0.7, 0.0, 0.3))], 0.0, 0.0)
    blocked = pose(0.5, 0.0, 0.2)                               # robot 10 cm away from the command
    command = executor.update(DT, blocked, DT)
    assert command.status == ExecutorStatus.HOLDING_TRACKING
    resumed = executor.update(2 * DT, blocked, 2 * DT)
    assert resumed.status == ExecutorStatus.EXECUTING
    assert np.linalg.norm(resumed.target.position - blocked.position) <= LIMITS.max_linear_speed * DT + 1e-9


def test_gripper_waits_for_arrival_then_dwells():
    executor = make_executor()
    start = pose(0.5, 0.0, 0.3)
    executor.start(start, 0.0)
    grasp = pose(0.5, 0.0, 0.1)
    executor.set_keyframes([Keyframe(grasp, GripperState.CLOSED), Keyframe(pose(0.5, 0.0, 0.3))], 0.0, 0.0)
    # A robot that lags 2 cm behind the commanded target: the grasp must wait for it.
    lagging, t, sent_at = start, 0.0, None
    for _ in range(600):
        t += DT
        command = executor.update(t, lagging, t)
        target = command.target.position
        lagging = Pose(target + np.array([0, 0, 0.02]) if target[2] < 0.29 else target, TOP_DOWN)
        if command.gripper is not None:
            sent_at = t
            break
    assert sent_at is None, "gripper closed while the arm was still 2 cm above the grasp pose"
    # Once the robot arrives, the grasp goes out, then the arm holds for the dwell before lifting.
    command = executor.update(t + DT, grasp, t + DT)
    assert command.gripper is not None and command.gripper.grasp
    t += DT
    for _ in range(int(0.15 * RATE)):
        t += DT
        command = executor.update(t, grasp, t)
        np.testing.assert_allclose(command.target.position, grasp.position, atol=1e-9)


@pytest.mark.parametrize("kwargs", [dict(rate_hz=0), dict(stale_after_sec=0), dict(max_plan_age_sec=-1),
                                    dict(speed_fraction=1.5), dict(arrival_tolerance=0)])
def test_invalid_executor_settings_raise(kwargs):
    with pytest.raises(ValueError):
        make_executor(**kwargs)


@pytest.mark.parametrize("kwargs", [dict(workspace_min=(0, 0, 0), workspace_max=(0, 1, 1)),
                                    dict(max_linear_speed=0), dict(max_angular_speed=float("nan")),
                                    dict(workspace_min=(0, 0))])
def test_invalid_limits_raise(kwargs):
    with pytest.raises(ValueError):
        SafetyLimits(**kwargs)


keyframe_positions = st.tuples(st.floats(0.0, 1.0), st.floats(-0.6, 0.6), st.floats(-0.1, 0.8))
quaternions = st.tuples(*[st.floats(-1, 1)] * 4).filter(lambda q: np.linalg.norm(q) > 0.1)


@pytest.mark.slow  # 150 hypothesis plans (~3 s); test_safety_properties' first chunk runs in make test-fast
@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(keyframe_positions, quaternions, st.sampled_from([None, 0, 1])), min_size=1, max_size=5),
       st.lists(st.floats(0.1, 4.0), min_size=50, max_size=50))
def test_never_leaves_limits_for_any_plan_and_timing(keyframes, tick_factors):
    executor = make_executor()
    executor.start(pose(0.5, 0.0, 0.3), 0.0)
    plan = [Keyframe(Pose(np.array(p), np.array(q)), None if g is None else GripperState(g))
            for p, q, g in keyframes]
    try:
        executor.set_keyframes(plan, 0.0, 0.0)
    except ValueError:
        pass  # rejected plans leave the executor holding, which the loop below checks too
    t, previous = 0.0, executor.last_target
    for factor in tick_factors * 4:
        dt = DT * factor
        t += dt
        command = executor.update(t, previous, t)
        assert LIMITS.inside(command.target.position)
        assert np.linalg.norm(command.target.position - previous.position) <= \
            LIMITS.max_linear_speed * min(dt, 2 * DT) + 1e-9
        assert abs(np.linalg.norm(command.target.orientation) - 1) < 1e-9
        previous = command.target
