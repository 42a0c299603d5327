"""Safety properties of the CartesianExecutor over 10,000 random keyframe sequences and input timings.

Each sequence draws a plan (keyframes anywhere around and outside the workspace, arbitrary orientations and
gripper actions), tick jitter, a robot that lags, gets pushed or reports stale state, re-plans mid-way and an
explicit stop at a random tick. Whatever happens, every emitted target must be inside the workspace, within
the step and rotation limits for the real time since the last target, a finite unit quaternion, and after
stop() the very next tick holds the last target (the stream halts within one control period).

Seeded numpy draws rather than hypothesis: 10,000 sequences must fit in seconds, and a failure prints the
seed that reproduces it.
"""
import numpy as np
import pytest

from hamster_core.executor import CartesianExecutor, ExecutorStatus, GripperSettings, Keyframe, SafetyLimits
from hamster_core.geometry import Pose, quaternion_angle
from hamster_core.path2d import GripperState

RATE = 100.0
PERIOD = 1.0 / RATE
LIMITS = SafetyLimits(workspace_min=(0.2, -0.4, 0.05), workspace_max=(0.8, 0.4, 0.6), max_linear_speed=0.25,
                      max_angular_speed=1.0, max_tracking_error=0.08)
SEQUENCES = 10_000
CHUNKS = 10
TICKS = 40
EPS = 1e-9


def random_quaternion(rng) -> np.ndarray:
    q = rng.normal(size=4)
    return q / np.linalg.norm(q)


def random_plan(rng) -> list[Keyframe]:
    low, high = np.array(LIMITS.workspace_min), np.array(LIMITS.workspace_max)
    span = high - low
    keyframes = []
    for _ in range(rng.integers(1, 6)):
        # Mostly inside, some slightly outside (clipped), some far outside (the plan is refused).
        position = rng.uniform(low - 0.3 * span, high + 0.3 * span)
        gripper = rng.choice([None, GripperState.OPEN, GripperState.CLOSED])
        keyframes.append(Keyframe(Pose(position, random_quaternion(rng)), gripper))
    return keyframes


def check_sequence(seed: int) -> None:
    rng = np.random.default_rng(seed)
    executor = CartesianExecutor(limits=LIMITS, gripper=GripperSettings(dwell_sec=0.2), rate_hz=RATE,
                                 stale_after_sec=0.05)
    start = rng.uniform(LIMITS.workspace_min, LIMITS.workspace_max)
    executor.start(Pose(start, random_quaternion(rng)), 0.0)
    stop_tick = rng.integers(0, TICKS) if rng.random() < 0.3 else None
    replan_tick = rng.integers(0, TICKS) if rng.random() < 0.3 else None
    t, previous = 0.0, executor.last_target
    measured, measured_stamp = previous, 0.0

    def try_plan():
        try:
            executor.set_keyframes(random_plan(rng), t - rng.uniform(0, 0.1), t)
        except ValueError:
            pass  # refused plans (outside, late, stopped) leave the executor holding: checked below

    try_plan()
    for tick in range(TICKS):
        dt = PERIOD * rng.choice([rng.uniform(0.2, 1.5), rng.uniform(1.5, 6.0), 0.0], p=[0.85, 0.1, 0.05])
        t += dt
        if tick == replan_tick:
            try_plan()
        stopped_now = tick == stop_tick
        if stopped_now:
            executor.stop()
        # The robot: usually tracks the last target, sometimes lags, gets pushed, or its state goes stale.
        event = rng.random()
        if event < 0.75:
            measured, measured_stamp = previous, t
        elif event < 0.85:
            measured_stamp = t  # lagging: the same measurement again
        elif event < 0.9:
            pushed = np.clip(previous.position + rng.normal(scale=0.06, size=3), LIMITS.workspace_min,
                             LIMITS.workspace_max)
            measured, measured_stamp = Pose(pushed, previous.orientation), t
        # else: no new state this tick (may go stale)

        command = executor.update(t, measured, measured_stamp)
        context = f"seed {seed}, tick {tick}, status {command.status}"
        if command.target is None:
            assert command.status == ExecutorStatus.OUTSIDE_WORKSPACE, context
            continue
        target = command.target
        assert np.all(np.isfinite(target.position)) and np.all(np.isfinite(target.orientation)), context
        assert abs(np.linalg.norm(target.orientation) - 1.0) < 1e-9, context
        assert LIMITS.inside(target.position), context
        motion_dt = min(dt, 2 * PERIOD)
        if command.status != ExecutorStatus.HOLDING_TRACKING:  # re-seeding at the arm is not a commanded step
            step = np.linalg.norm(target.position - previous.position)
            assert step <= LIMITS.max_linear_speed * motion_dt + EPS, f"{context}: step {step}"
            angle = quaternion_angle(previous.orientation, target.orientation)
            assert angle <= LIMITS.max_angular_speed * motion_dt + 1e-6, f"{context}: rotation {angle}"
        if stopped_now or (stop_tick is not None and tick > stop_tick):
            if command.status == ExecutorStatus.STOPPED:
                assert np.allclose(target.position, previous.position), context
            assert command.gripper is None, context
            assert command.status in (ExecutorStatus.STOPPED, ExecutorStatus.HOLDING_STALE,
                                      ExecutorStatus.HOLDING_TRACKING), context
        previous = target


@pytest.mark.parametrize("chunk", range(CHUNKS))
def test_executor_never_violates_limits_over_random_sequences(chunk):
    for seed in range(chunk * SEQUENCES // CHUNKS, (chunk + 1) * SEQUENCES // CHUNKS):
        check_sequence(seed)
