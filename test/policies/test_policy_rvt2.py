"""rvt2: virtual-view rendering, the heatmap vote back to 3D, the model and the policy behind the interface."""
import dataclasses

import numpy as np
import pytest
import torch

from hamster_core.executor import Keyframe, SafetyLimits
from hamster_core.geometry import Pose, quaternion_angle, top_down_orientation
from hamster_core.policies.base import POLICIES, PolicyError
from hamster_core.policies.conditioning import add_targets, collate, prepare_inputs
from hamster_core.policies.rvt2 import RVT2Config, RVT2Model, RVT2Policy
from hamster_core.policies.rvt2.modeling_rvt2 import (bins_to_quaternions, euler_bins, lift_heatmaps, render_views,
                                                      view_pixels)
from scenes import scene_observation
from tiny_models import TINY_RVT2 as TINY

VIEWS = ("top", "front", "side")
BOX_MIN, BOX_MAX = torch.tensor([[0.0, -0.5, 0.0]]), torch.tensor([[1.0, 0.5, 0.5]])


def test_rendering_puts_a_point_at_its_pixel_in_each_view():
    point = torch.tensor([[[0.30, 0.10, 0.20]]])       # relative (0.3, 0.6, 0.4) of the box
    image = render_views(point, torch.tensor([[[0.25, 0.5, 0.75]]]), BOX_MIN, BOX_MAX, VIEWS, 10)
    assert image.shape == (1, 3, 5, 10, 10)
    # (column, row) = the view's first and second axis; depth from the box's max face along the third.
    expected = {"top": ((3, 6), 1 - 0.4), "front": ((6, 4), 1 - 0.3), "side": ((3, 4), 1 - 0.6)}
    for k, view in enumerate(VIEWS):
        (col, row), depth = expected[view]
        occupancy = image[0, k, 4]
        assert occupancy.sum() == 1 and occupancy[row, col] == 1, view
        assert image[0, k, :3, row, col].tolist() == pytest.approx([0.25, 0.5, 0.75])
        assert float(image[0, k, 3, row, col]) == pytest.approx(depth)
        assert view_pixels(point[0], BOX_MIN, BOX_MAX, (view,), 10)[0, 0].floor().tolist() == [col, row]


def test_rendering_keeps_the_nearest_point_and_drops_points_outside_the_box():
    points = torch.tensor([[[0.5, 0.0, 0.1], [0.5, 0.0, 0.4], [0.5, 0.0, 0.9]]])   # the last is above the box
    features = torch.tensor([[[1.0], [2.0], [3.0]]])
    image = render_views(points, features, BOX_MIN, BOX_MAX, ("top", "front"), 8)
    top = image[0, 0]
    assert top[2].sum() == 1 and top[0].max() == 2.0            # seen from above, the higher point wins
    assert image[0, 1, 2].sum() == 2                            # from the front both show, at two heights


def test_heatmap_vote_recovers_a_known_point():
    S = 16
    target = BOX_MIN + (torch.tensor([[5, 11, 2]]) + 0.5) / S * (BOX_MAX - BOX_MIN)   # a grid cell centre
    pixels = view_pixels(target, BOX_MIN, BOX_MAX, VIEWS, S).floor().long()[0]
    logits = torch.randn(1, 3, S, S) * 0.1
    for k in range(3):
        logits[0, k, pixels[k, 1], pixels[k, 0]] += 5.0
    lifted = lift_heatmaps(logits, BOX_MIN, BOX_MAX, VIEWS)
    assert lifted.tolist()[0] == pytest.approx(target.tolist()[0], abs=1e-6)
    # Two views are enough: each fixes two coordinates.
    lifted = lift_heatmaps(logits[:, :2], BOX_MIN, BOX_MAX, VIEWS[:2])
    assert lifted.tolist()[0] == pytest.approx(target.tolist()[0], abs=1e-6)


def test_euler_bins_round_trip_top_down_grasps():
    for yaw in (0.0, np.pi / 2, -np.pi / 3):
        q = top_down_orientation(yaw)
        back = bins_to_quaternions(euler_bins(q[None], 12), 12)[0]
        assert quaternion_angle(q, back) < 1e-6


@pytest.mark.parametrize("coarse_to_fine", [False, True])
def test_forward_shapes(coarse_to_fine):
    config = RVT2Config(**TINY, coarse_to_fine=coarse_to_fine, conditioning="masks")
    batch = collate([prepare_inputs(scene_observation(), config)] * 2)
    outputs = RVT2Model(config)(batch)
    assert list(outputs) == (["stage1", "stage2"] if coarse_to_fine else ["stage1"])
    for out in outputs.values():
        assert out["heatmaps"].shape == (2, 3, 16, 16) and out["rotation"].shape == (2, 3, 12)
        assert out["gripper"].shape == out["done"].shape == (2,)
    if coarse_to_fine:
        assert torch.allclose(outputs["stage2"]["box_max"] - outputs["stage2"]["box_min"], torch.tensor(0.24))


def assert_valid(output, config):
    assert len(output.keyframes) == 1
    pose = output.keyframes[0].pose
    assert np.all(np.isfinite(pose.position)) and np.linalg.norm(pose.orientation) == pytest.approx(1.0)
    assert np.all(pose.position >= config.workspace_min) and np.all(pose.position <= config.workspace_max)
    assert SafetyLimits().inside(pose.position, tolerance=0.05)       # the executor accepts it


def test_select_action_returns_one_valid_keyframe_and_counts_keyframes():
    policy = POLICIES.create("rvt2", **TINY, max_keyframes=2)
    assert isinstance(policy, RVT2Policy) and policy.required_inputs == {"points", "camera", "path"}
    output = policy.select_action(scene_observation())
    assert_valid(output, policy.config)
    assert "randomly initialised" in output.info["warning"] and output.info["step"] == 1
    assert output.done == (output.info["done_prob"] > 0.5)
    policy.select_action(scene_observation())
    with pytest.raises(PolicyError, match="max_keyframes=2"):
        policy.select_action(scene_observation())
    policy.reset()
    assert policy.select_action(scene_observation()).info["step"] == 1
    assert POLICIES.create("rvt2", **TINY, always_done=True).select_action(scene_observation()).done


def test_select_action_names_missing_inputs():
    with pytest.raises(PolicyError, match="rvt2 needs path"):
        RVT2Policy(**TINY).select_action(scene_observation(path=None))


def test_coarse_to_fine_policy_acts(tmp_path):
    policy = RVT2Policy(**TINY, coarse_to_fine=True, conditioning="none")
    assert_valid(policy.select_action(scene_observation()), policy.config)


def test_save_and_load_give_identical_outputs(tmp_path):
    policy = RVT2Policy(**TINY, seed=3, conditioning="masks")
    folder = policy.save_pretrained(tmp_path / "ckpt")
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    loaded = RVT2Policy.from_pretrained(folder)
    # The checkpoint's config wins over defaults, except deployment fields.
    by_field = RVT2Policy(checkpoint=str(folder), max_keyframes=3)
    assert loaded.config.conditioning == by_field.config.conditioning == "masks"
    assert by_field.config.max_keyframes == 3 and by_field.config.dim == TINY["dim"]
    a, b = policy.select_action(scene_observation()), loaded.select_action(scene_observation())
    assert np.array_equal(a.keyframes[0].pose.position, b.keyframes[0].pose.position)
    assert np.array_equal(a.keyframes[0].pose.orientation, b.keyframes[0].pose.orientation)
    assert a.info["done_prob"] == b.info["done_prob"] and "warning" not in b.info
    for name, tensor in policy.model.state_dict().items():
        assert torch.equal(tensor, loaded.model.state_dict()[name]), name


def test_a_checkpoint_folder_without_weights_is_refused(tmp_path):
    with pytest.raises(ValueError, match="model.safetensors"):
        RVT2Policy(checkpoint=str(tmp_path))


@pytest.mark.slow  # 100 training steps; test_training trains both policies briefly in make test-fast
def test_overfits_one_keyframe():
    """The losses are wired to the right outputs: a hundred steps on one sample drive every loss down and
    the prediction onto the target."""
    torch.manual_seed(0)
    config = RVT2Config(**TINY, conditioning="path_channels")
    model = RVT2Model(config)
    target = Keyframe(Pose(np.array([0.55, 0.10, 0.08]), top_down_orientation(np.pi / 6)))
    batch = add_targets(collate([prepare_inputs(scene_observation(), config)]), [[target]], [False], [[True]])
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    first, _ = model.compute_loss(batch)
    for _ in range(100):
        loss, metrics = model.compute_loss(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert metrics["loss"] < first.item() / 20
    prediction = model.predict(batch)
    cell = (np.array(config.workspace_max) - np.array(config.workspace_min)) / config.image_size
    assert np.all(np.abs(prediction["position"][0, 0].numpy() - target.pose.position) <= 1.5 * cell)
    assert quaternion_angle(prediction["quaternion"][0, 0].numpy(), target.pose.orientation) < np.radians(16)
    assert prediction["gripper"][0, 0] > 0.9 and prediction["done"][0] < 0.1


@pytest.mark.parametrize("changes, named", [
    (dict(image_size=30), "patch_size"),
    (dict(views=("top",)), "views"),
    (dict(views=("top", "back")), "views"),
    (dict(rotation_bins=35), "rotation_bins"),
    (dict(dim=30, heads=4), "heads"),
    (dict(heatmap_sigma=0.0), "heatmap_sigma"),
    (dict(zoom_half_extent=5.0), "zoom_half_extent"),
    (dict(conditioning="rgb"), "conditioning"),
])
def test_bad_config_values_are_named(changes, named):
    with pytest.raises(ValueError, match=named):
        RVT2Config(**changes)
    with pytest.raises(ValueError, match=named):
        POLICIES.create("rvt2", **changes)


def test_config_fields_are_ros_parameter_types():
    """The policy node declares every field as a ROS parameter with its default: scalars or non-empty lists."""
    for field in dataclasses.fields(RVT2Config):
        value = field.default
        assert isinstance(value, (bool, int, float, str)) or (
            isinstance(value, tuple) and value and len({type(v) for v in value}) == 1), field.name
