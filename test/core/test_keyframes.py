"""Keyframes at gripper changes and stops (the PerAct/RVT heuristic) and keyframe comparison."""
import numpy as np
import pytest

from hamster_core.executor import Keyframe
from hamster_core.geometry import TOP_DOWN, Pose, top_down_orientation
from hamster_core.keyframes import (KeyframeSettings, compare_keyframes, extract_keyframes,
                                    gripper_closed_from_widths)
from hamster_core.path2d import GripperState


def _trajectory():
    """100 Hz: move 0->1 s along x, stop 1-2 s (gripper closes at 1.5 s), move 2-3 s along z, stop 3-4 s."""
    times = np.arange(0, 4.0, 0.01)
    x = np.clip(times, 0, 1) * 0.2 + 0.4
    z = 0.3 + np.clip(times - 2, 0, 1) * 0.1
    positions = np.stack([x, np.zeros_like(x), z], axis=1)
    orientations = np.tile(TOP_DOWN, (len(times), 1))
    closed = times >= 1.5
    return times, positions, orientations, closed


def test_keyframes_at_stops_and_gripper_changes():
    times, positions, orientations, closed = _trajectory()
    keyframes = extract_keyframes(times, positions, orientations, closed)
    found = [(round(times[i], 2), k.gripper) for i, k in keyframes]
    # arrival at 1 s (stop), the close at 1.5 s, arrival at 3 s, the last sample
    assert [t for t, _ in found] == pytest.approx([1.0, 1.5, 3.0, 3.99], abs=0.06)
    assert [g for _, g in found] == [None, GripperState.CLOSED, None, None]
    assert keyframes[2][1].pose.position == pytest.approx([0.6, 0.0, 0.4], abs=1e-3)


def test_close_keyframes_merge_and_the_gripper_change_wins():
    times, positions, orientations, closed = _trajectory()
    closed = times >= 1.05  # 50 ms after the arrival
    kept = extract_keyframes(times, positions, orientations, closed, KeyframeSettings(min_separation_sec=0.3))
    assert [k.gripper for _, k in kept][:1] == [GripperState.CLOSED]


def test_widths_to_gripper_state():
    assert gripper_closed_from_widths([0.08, 0.08, 0.03, 0.03, 0.08]).tolist() == [False, False, True, True, False]
    assert not gripper_closed_from_widths([0.08, 0.079]).any()
    # A release that re-opens only part of the way (0.04 -> 0.055, under the old half-range threshold of 0.06)
    # still counts; sensor wiggle smaller than the hysteresis (12.5% of the hand's 0.08 m) does not.
    widths = [0.08, 0.079, 0.06, 0.04, 0.041, 0.039, 0.047, 0.055, 0.055, 0.05]
    assert gripper_closed_from_widths(widths).tolist() == [False, False, True, True, True, True, True, False,
                                                            False, False]
    assert gripper_closed_from_widths([0.02, 0.025, 0.02]).tolist() == [True, True, True]   # starts closed
    with pytest.raises(ValueError, match="width_range"):
        gripper_closed_from_widths([0.08], width_range=(0.08, 0.0))
    with pytest.raises(ValueError):
        extract_keyframes([0, 1], [[0, 0, 0]], [[0, 0, 0, 1]], [False])


def test_compare_keyframes():
    def at(x, y, z, gripper=None, yaw=0.0):
        return Keyframe(Pose([x, y, z], top_down_orientation(yaw)), gripper)
    reference = [at(0.5, 0, 0.1, GripperState.CLOSED), at(0.5, 0, 0.3), at(0.4, 0.2, 0.2, GripperState.OPEN)]
    predicted = [at(0.5, 0, 0.2), at(0.51, 0, 0.1, GripperState.CLOSED, yaw=np.radians(10)), at(0.5, 0, 0.3),
                 at(0.4, 0.22, 0.2, GripperState.OPEN)]
    result = compare_keyframes(predicted, reference)
    assert result["grasp_translation_error"] == pytest.approx(0.01)
    assert result["grasp_rotation_error_deg"] == pytest.approx(10.0)
    assert result["release_translation_error"] == pytest.approx(0.02)
    assert result["gripper_same_sequence"]
    assert result["translation_error_max"] == pytest.approx(0.1)  # the extra approach pose pairs with the grasp
