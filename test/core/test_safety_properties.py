"""Safety properties of the CartesianExecutor over 10,000 random keyframe sequences and input timings.

Each sequence draws a plan (keyframes anywhere around and outside the workspace, arbitrary orientations and
gripper actions), tick jitter, a robot that lags, gets pushed (sometimes far) or reports stale state, re-plans
mid-way and an explicit stop at a random tick. Whatever happens, every emitted target must be inside the
workspace, a finite unit quaternion, within the step and rotation limits for the real time since the last target
(a re-seed onto the measured pose within max_reseed_distance, nothing else); a stale state holds the last target;
a gripper command goes out only with the arm at a keyframe that commands it; after stop() the very next tick
holds the last target; after a halt nothing is sent. Each of these checks is shown to catch a mutant executor.

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
CHUNKS = 50
TICKS = 40
EPS = 1e-9
STALE = 0.05
ARRIVAL = CartesianExecutor().arrival_tolerance   # the specification, not the executor under test


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


def make_executor() -> CartesianExecutor:
    return CartesianExecutor(limits=LIMITS, gripper=GripperSettings(dwell_sec=0.2), rate_hz=RATE, stale_after_sec=STALE)


def check_sequence(seed: int, executor: CartesianExecutor | None = None) -> None:
    rng = np.random.default_rng(seed)
    executor = executor or make_executor()
    start = rng.uniform(LIMITS.workspace_min, LIMITS.workspace_max)
    executor.start(Pose(start, random_quaternion(rng)), 0.0)
    stop_tick = rng.integers(0, TICKS) if rng.random() < 0.3 else None
    replan_tick = rng.integers(0, TICKS) if rng.random() < 0.3 else None
    t, previous = 0.0, executor.last_target
    measured, measured_stamp = previous, 0.0
    # Some robots stop short of every target (blocked, or a controller with a steady-state error).
    short = rng.normal(size=3) * (rng.uniform(0.02, 0.05) / np.sqrt(3)) if rng.random() < 0.2 else np.zeros(3)
    gripper_poses: list[np.ndarray] = []   # where the accepted plan commands the gripper (clipped like its targets)
    halted = False

    def try_plan():
        nonlocal gripper_poses
        plan = random_plan(rng)
        if rng.random() < 0.3 and executor.last_target is not None:   # a grasp right here: reached within the run
            here = executor.last_target
            plan[0] = Keyframe(Pose(here.position + rng.normal(scale=0.005, size=3), here.orientation),
                               rng.choice([GripperState.OPEN, GripperState.CLOSED]))
        try:
            executor.set_keyframes(plan, t - rng.uniform(0, 0.1), t)
        except ValueError:
            return  # refused plans (outside, late, stopped) leave the executor holding: checked below
        gripper_poses = [LIMITS.clip(k.pose.position) for k in plan if k.gripper is not None]

    try_plan()
    for tick in range(TICKS):
        dt = PERIOD * rng.choice([rng.uniform(0.2, 1.5), rng.uniform(1.5, 6.0), 0.0], p=[0.85, 0.1, 0.05])
        t += dt
        if tick == replan_tick:
            try_plan()
        stopped_now = tick == stop_tick
        if stopped_now:
            executor.stop()
        # The robot: usually tracks the last target (or short of it), sometimes lags, gets pushed, or its state goes
    # stale.
        event = rng.random()
        if event < 0.75:
            measured, measured_stamp = Pose(previous.position + short, previous.orientation), t
        elif event < 0.85:
            measured_stamp = t  # lagging: the same measurement again
        elif event < 0.9:
            scale = 0.06 if rng.random() < 0.7 else 0.2   # sometimes far: a re-seed must not follow it
            pushed = np.clip(previous.position + rng.normal(scale=scale, size=3), LIMITS.workspace_min,
                             LIMITS.workspace_max)
            measured, measured_stamp = Pose(pushed, previous.orientation), t
        # else: no new state this tick (may go stale)

        executing = executor.executing   # a far re-seed is allowed only without a plan (nothing moves the target)
        command = executor.update(t, measured, measured_stamp)
        context = f"seed {seed}, tick {tick}, status {command.status}"
        halted = halted or command.status == ExecutorStatus.HALTED
        if command.target is None:
            assert command.status in (ExecutorStatus.OUTSIDE_WORKSPACE, ExecutorStatus.HALTED), context
            continue
        assert not halted, f"{context}: a target after the executor halted"
        target = command.target
        assert np.all(np.isfinite(target.position)) and np.all(np.isfinite(target.orientation)), context
        assert abs(np.linalg.norm(target.orientation) - 1.0) < 1e-9, context
        assert LIMITS.inside(target.position), context
        motion_dt = min(dt, 2 * PERIOD)
        step = np.linalg.norm(target.position - previous.position)
        angle = quaternion_angle(previous.orientation, target.orientation)
        onto_the_arm = np.allclose(target.position, LIMITS.clip(measured.position)) and \
            np.allclose(target.orientation, measured.orientation)
        if not (onto_the_arm and (step <= LIMITS.max_reseed_distance + EPS or not executing)):  # re-seed, or a step
            assert step <= LIMITS.max_linear_speed * motion_dt + EPS, f"{context}: step {step}"
            assert angle <= LIMITS.max_angular_speed * motion_dt + 1e-6, f"{context}: rotation {angle}"
        if measured_stamp is None or abs(t - measured_stamp) > STALE:
            assert np.array_equal(target.position, previous.position), f"{context}: moved on a stale state"
            assert command.gripper is None, f"{context}: gripper on a stale state"
        if command.gripper is not None:
            assert any(np.linalg.norm(measured.position - at) <= ARRIVAL + EPS
                       for at in gripper_poses), f"{context}: gripper commanded away from its keyframe"
        if stopped_now or (stop_tick is not None and tick > stop_tick):
            if command.status == ExecutorStatus.STOPPED:
                assert np.allclose(target.position, previous.position), context
            assert command.gripper is None, context
            assert command.status in (ExecutorStatus.STOPPED, ExecutorStatus.HOLDING_STALE,
                                      ExecutorStatus.HOLDING_TRACKING), context
        previous = target


# The first chunk (200 sequences) is part of `make test-fast`; all 50 chunks (10,000) run in `make test`.
@pytest.mark.parametrize("chunk", [0] + [pytest.param(chunk, marks=pytest.mark.slow) for chunk in range(1, CHUNKS)])
def test_executor_never_violates_limits_over_random_sequences(chunk):
    for seed in range(chunk * SEQUENCES // CHUNKS, (chunk + 1) * SEQUENCES // CHUNKS):
        check_sequence(seed)


class NeverStale(CartesianExecutor):
    """Mutant: a stale robot state does not hold the target."""

    def update(self, now, measured, measured_stamp):
        return super().update(now, measured, None if measured_stamp is None else now)


MUTANTS = {
    "stale state never holds": NeverStale,
    "gripper fires before arrival": lambda **kw: CartesianExecutor(arrival_tolerance=1.0, **kw),
    "re-seed onto a pose 0.5 m away": lambda **kw: CartesianExecutor(
        **{**kw, "limits": SafetyLimits(**{**LIMITS.__dict__, "max_reseed_distance": 0.5})}),
}


@pytest.mark.parametrize("mutant", sorted(MUTANTS))
def test_each_check_catches_its_mutant(mutant):
    make = MUTANTS[mutant]
    caught = []
    for seed in range(1000):
        try:
            check_sequence(seed, make(limits=LIMITS, gripper=GripperSettings(dwell_sec=0.2), rate_hz=RATE,
                                      stale_after_sec=STALE))
        except AssertionError as error:
            caught.append(str(error))
            break
    assert caught, f"no sequence of 1,000 caught the mutant {mutant!r}"
