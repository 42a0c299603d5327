"""The release gate (hamster_core.policies.gripper_gate): a held object is released over the placement area, or
after repeated confident predictions; never on one flipped prediction elsewhere."""
import numpy as np
import pytest

from hamster_core.lifting import LiftedPath
from hamster_core.policies.gripper_gate import ReleaseGate, path_release_point, placement_point

PLACEMENT = np.array([0.55, -0.10, 0.05])
ELSEWHERE = np.array([0.40, 0.20, 0.20])   # above the object, just lifted


def test_one_confident_release_away_from_the_placement_area_is_deferred_then_confirmed():
    gate = ReleaseGate(confirmations=2, threshold=0.3, placement_radius=0.06)
    first = gate.decide(0.04, ELSEWHERE, PLACEMENT)
    assert (first.release, first.reason) == (False, "deferred")
    second = gate.decide(0.05, ELSEWHERE, PLACEMENT)
    assert (second.release, second.reason) == (True, "confirmed")
    # the count starts over after a release
    assert not gate.decide(0.05, ELSEWHERE, PLACEMENT).release


def test_a_prediction_that_holds_or_is_not_confident_resets_the_votes():
    gate = ReleaseGate(confirmations=2, threshold=0.3, placement_radius=0.06)
    assert not gate.decide(0.1, ELSEWHERE, PLACEMENT).release
    gate.held()
    assert gate.decide(0.1, ELSEWHERE, PLACEMENT).reason == "deferred"
    assert gate.decide(0.45, ELSEWHERE, PLACEMENT).reason == "not_confident"
    assert gate.decide(0.1, ELSEWHERE, PLACEMENT).reason == "deferred"
    gate.reset()
    assert gate.decide(0.1, ELSEWHERE, None).reason == "deferred"


def test_over_the_placement_area_a_release_passes_at_once_even_unsure():
    gate = ReleaseGate(confirmations=3, threshold=0.3, placement_radius=0.06)
    over = PLACEMENT + [0.04, -0.02, 0.10]     # 4.5 cm off horizontally, 10 cm above: height does not matter
    decision = gate.decide(0.45, over, PLACEMENT)
    assert (decision.release, decision.reason) == (True, "placement_area")
    assert not gate.decide(0.45, PLACEMENT + [0.07, 0.0, 0.0], PLACEMENT).release
    assert not ReleaseGate(placement_radius=0.0).decide(0.01, PLACEMENT, PLACEMENT).release   # rule off


def test_confirmations_one_and_threshold_half_is_the_old_knife_edge():
    gate = ReleaseGate(confirmations=1, threshold=0.5, placement_radius=0.06)
    assert gate.disabled and gate.decide(0.49, ELSEWHERE, PLACEMENT).release


@pytest.mark.parametrize("kwargs, name", [(dict(confirmations=0), "release_confirmations"),
                                          (dict(confirmations=True), "release_confirmations"),
                                          (dict(threshold=0.0), "release_threshold"),
                                          (dict(threshold=0.7), "release_threshold"),
                                          (dict(placement_radius=-0.1), "placement_radius")])
def test_bad_settings_name_the_field(kwargs, name):
    with pytest.raises(ValueError, match=name):
        ReleaseGate(**kwargs)


def test_the_path_release_point_is_where_the_path_opens_after_holding():
    # progress, open, closed: open at the start, closed over the carry, open again at the container, then away.
    points = np.array([[0.3, 0.0, 0.2], [0.4, 0.2, 0.05], [0.5, 0.0, 0.2], [0.55, -0.1, 0.1], [0.6, -0.2, 0.3]])
    channels = np.array([[0, 1, 0], [0.25, 0, 1], [0.5, 0, 1], [0.75, 1, 0], [1, 1, 0]], dtype=np.float32)
    np.testing.assert_allclose(path_release_point(LiftedPath(points, channels)), points[3])
    # a path that ends closed: its end; one that never closes: none
    np.testing.assert_allclose(path_release_point(LiftedPath(points[:3], channels[:3])), points[2])
    assert path_release_point(LiftedPath(points[:1], channels[:1])) is None


def test_the_placement_point_comes_from_the_container_mask_else_the_lifted_path():
    from hamster_core.policies.conditioning import lifted_path
    from scenes import TRAY_CENTER, scene_observation

    observation = scene_observation()
    lifted = lifted_path(observation)
    from_mask, source = placement_point(observation, lifted)
    assert source == "mask" and np.linalg.norm(from_mask[:2] - TRAY_CENTER) < 0.02
    # Without masks, the path's release point: lifted onto what the camera sees behind it (here the table beyond
    # the tray, a reason the mask comes first).
    from_path, source = placement_point(scene_observation(masks={}), lifted)
    assert source == "path"
    np.testing.assert_allclose(from_path, path_release_point(lifted))
    assert 0.05 < np.linalg.norm(from_path[:2] - TRAY_CENTER) < 0.2
    assert placement_point(scene_observation(masks={}), None) == (None, "")


def holding_policy(position, closed_prob, **settings):
    """rvt2 (tiny) whose model predicts `position` with P(closed) `closed_prob`: the gate's part of the shell."""
    import torch

    from hamster_core.geometry import TOP_DOWN
    from hamster_core.policies.rvt2 import RVT2Policy
    from tiny_models import TINY_RVT2

    policy = RVT2Policy(**TINY_RVT2, **settings)
    policy.model.predict = lambda batch, generator=None: {
        "position": torch.tensor(np.array([[position]]), dtype=torch.float32),
        "quaternion": torch.tensor([[TOP_DOWN]], dtype=torch.float32),
        "gripper": torch.tensor([[closed_prob]]), "done": torch.tensor([0.9])}
    return policy


def test_the_policy_keeps_holding_on_one_flipped_prediction_and_releases_over_the_tray():
    from hamster_core.path2d import GripperState
    from hamster_core.policies.conditioning import lifted_path
    from scenes import TRAY_CENTER, scene_observation

    holding = scene_observation(gripper_width=0.03)
    policy = holding_policy(ELSEWHERE, 0.04)
    first = policy.select_action(holding)
    assert first.keyframes[0].gripper is None and not first.done and first.info["release"] == ["deferred"]
    second = policy.select_action(holding)
    assert second.keyframes[0].gripper == GripperState.OPEN and second.done and second.info["release"] == ["confirmed"]

    placement, _ = placement_point(holding, lifted_path(holding))
    assert np.linalg.norm(placement[:2] - TRAY_CENTER) < 0.02       # the tray's mask
    over_tray = holding_policy(placement + [0.0, 0.0, 0.12], 0.4).select_action(holding)
    assert over_tray.keyframes[0].gripper == GripperState.OPEN and over_tray.info["release"] == ["placement_area"]

    knife_edge = holding_policy(ELSEWHERE, 0.04, release_confirmations=1, release_threshold=0.5)
    assert knife_edge.select_action(holding).keyframes[0].gripper == GripperState.OPEN
    # an open gripper is closed at once (grasps are not gated)
    assert holding_policy(ELSEWHERE, 0.9).select_action(scene_observation()).keyframes[0].gripper == \
        GripperState.CLOSED


def test_a_policy_without_a_checkpoint_runs_only_when_allowed():
    from hamster_core.policies.base import POLICIES, refuse_random_weights
    from tiny_models import TINY_RVT2

    policy = POLICIES.create("rvt2", **TINY_RVT2)
    with pytest.raises(ValueError, match=r"rvt2 has no checkpoint .* refusing to run randomly initialised weights "
                                         r"on the robot\. .*--random-weights"):
        refuse_random_weights(policy, False, "on the robot")
    assert refuse_random_weights(policy, True, "").startswith("WARNING: rvt2: no checkpoint, randomly initialised")
    assert refuse_random_weights(POLICIES.create("path_follower"), False, "") is None
