"""The simulator's compliant arm (hamster_sim.compliance, issue 18 item 6): it lags a moving target like an
impedance controller and stops short by friction / stiffness, which the pre-flight's tolerance accounts for."""
import numpy as np
import pytest

from hamster_core.preflight import NUDGE_TOLERANCE, nudge_tolerance
from hamster_sim.compliance import CompliantTracking


def settle(tracking: CompliantTracking, start, goal, seconds: float = 2.0, dt: float = 0.002) -> np.ndarray:
    tracking.reset(start)
    for _ in range(int(seconds / dt)):
        position = tracking.step(goal, dt)
    return position


@pytest.mark.parametrize("stiffness,friction", [(400.0, 3.0), (1000.0, 2.0), (200.0, 1.0)])
def test_at_rest_the_arm_stops_short_by_friction_over_stiffness(stiffness, friction):
    start, goal = np.array([0.5, 0.0, 0.3]), np.array([0.5, 0.0, 0.33])
    short = np.linalg.norm(goal - settle(CompliantTracking(stiffness, friction=friction), start, goal))
    assert short == pytest.approx(friction / stiffness, abs=2e-4)


def test_without_friction_it_arrives_and_while_the_target_moves_it_lags():
    tracking = CompliantTracking(400.0)
    start = np.array([0.5, 0.0, 0.3])
    assert np.allclose(settle(tracking, start, start + [0.0, 0.02, 0.0]), start + [0.0, 0.02, 0.0], atol=1e-6)
    tracking.reset(start)
    lags = []
    for i in range(100):   # a ramp at 0.1 m/s: a critically damped spring lags it by v * 2 sqrt(m / K) (14 mm)
        goal = start + [0.0, 0.0, 0.001 * i]
        lags.append(goal[2] - tracking.step(goal, 0.01)[2])
    assert 0.010 < max(lags) < 0.016, max(lags)


def test_friction_stops_the_arm_but_never_pushes_it_back():
    tracking = CompliantTracking(400.0, friction=3.0)
    start, goal = np.array([0.5, 0.0, 0.3]), np.array([0.5, 0.0, 0.4])
    tracking.reset(start)
    heights = [tracking.step(goal, 0.002)[2] for _ in range(1500)]
    assert all(b >= a - 1e-12 for a, b in zip(heights, heights[1:])), "moved away from the goal"


@pytest.mark.parametrize("field,value", [("stiffness", 0.0), ("stiffness", float("inf")), ("mass", -1.0),
                                         ("friction", -0.1), ("damping_ratio", float("nan"))])
def test_bad_values_are_refused_by_name(field, value):
    kwargs = {"stiffness": 400.0, field: value}
    with pytest.raises(ValueError, match=f"compliance {field} must be"):
        CompliantTracking(**kwargs)


def test_step_before_reset_says_so():
    with pytest.raises(RuntimeError, match="reset"):
        CompliantTracking(400.0).step([0.0, 0.0, 0.0], 0.01)


def test_the_nudge_tolerance_follows_the_stiffness():
    assert nudge_tolerance() == NUDGE_TOLERANCE
    assert nudge_tolerance(400.0, 2.0) == pytest.approx(0.007)
    assert nudge_tolerance(400.0, 3.0) == pytest.approx(0.0095)
    with pytest.raises(ValueError, match="-1"):
        nudge_tolerance(-1.0, 2.0)
