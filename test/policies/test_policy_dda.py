"""3dda: relative 3D attention, the diffusion head, and the policy behind the interface."""
import dataclasses

import numpy as np
import pytest
import torch

from hamster_core.executor import Keyframe, SafetyLimits
from hamster_core.geometry import Pose, quaternion_angle, top_down_orientation
from hamster_core.policies.base import POLICIES, PolicyError
from hamster_core.policies.conditioning import add_targets, collate, prepare_inputs
from hamster_core.policies.dda import DDAConfig, DDAModel, DDAPolicy
from hamster_core.policies.dda.modeling_dda import RelativeAttention, cosine_alphas_cumprod, rotary_3d
from hamster_core.policies.learned import (matrices_to_quaternions, matrix_to_rotation_6d, quaternion_to_matrix,
                                           rotation_6d_to_matrix)
from scenes import scene_observation
from tiny_models import TINY_DDA as TINY


def test_rotary_attention_depends_on_relative_position_only():
    torch.manual_seed(0)
    frequencies = RelativeAttention(48, 2, 2.0).frequencies
    q, k = torch.randn(1, 2, 5, 24), torch.randn(1, 2, 7, 24)
    pq, pk = torch.rand(1, 5, 3), torch.rand(1, 7, 3)
    shift = torch.tensor([0.3, -0.2, 0.1])
    scores = rotary_3d(q, pq, frequencies) @ rotary_3d(k, pk, frequencies).transpose(-1, -2)
    shifted = rotary_3d(q, pq + shift, frequencies) @ rotary_3d(k, pk + shift, frequencies).transpose(-1, -2)
    torch.testing.assert_close(scores, shifted, atol=2e-3, rtol=1e-3)   # float32 angles up to ~600 rad
    moved = rotary_3d(q, pq + shift, frequencies) @ rotary_3d(k, pk, frequencies).transpose(-1, -2)
    assert not torch.allclose(scores, moved, atol=1e-2)


def test_rotation_conversions_round_trip():
    q = torch.tensor(np.stack([top_down_orientation(y) for y in (0.0, 1.0, -2.5)]), dtype=torch.float32)
    back = matrices_to_quaternions(rotation_6d_to_matrix(matrix_to_rotation_6d(quaternion_to_matrix(q))))
    for a, b in zip(q.numpy(), back):
        assert quaternion_angle(a, b) < 1e-3
    m = rotation_6d_to_matrix(torch.randn(10, 6))                 # any 6 numbers give a proper rotation
    torch.testing.assert_close(m @ m.transpose(-1, -2), torch.eye(3).expand(10, 3, 3), atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.linalg.det(m), torch.ones(10), atol=1e-5, rtol=0)


def test_cosine_schedule_goes_from_signal_to_noise():
    alphas = cosine_alphas_cumprod(100)
    assert alphas.shape == (100,) and torch.all(alphas[1:] < alphas[:-1])
    assert alphas[0] > 0.999 and alphas[-1] < 1e-3


@pytest.mark.parametrize("horizon", [1, 3])
def test_forward_and_sample_shapes(horizon):
    config = DDAConfig(**TINY, horizon=horizon, conditioning="masks")
    model = DDAModel(config)
    batch = collate([prepare_inputs(scene_observation(), config)] * 2)
    out = model(batch, torch.randn(2, horizon, 10), torch.tensor([0, 50]))
    assert out["prediction"].shape == (2, horizon, 10) and out["done"].shape == (2,)
    prediction = model.predict(batch, torch.Generator().manual_seed(0))
    assert prediction["position"].shape == (2, horizon, 3) and prediction["quaternion"].shape == (2, horizon, 4)
    assert prediction["gripper"].shape == (2, horizon) and prediction["done"].shape == (2,)


def test_pointer_head_reads_positions_off_the_scene_points():
    model = DDAModel(DDAConfig(**TINY))
    torch.nn.init.zeros_(model.action_out.weight)        # no offset: the position is a mean of scene points
    torch.nn.init.zeros_(model.action_out.bias)
    batch = collate([prepare_inputs(scene_observation(), model.config)])
    scene = torch.cat([batch["points"][0], batch["proprio"][:, :3]])
    position = model.predict(batch, torch.Generator().manual_seed(0))["position"][0, 0]
    assert torch.all(position >= scene.min(0).values - 1e-5) and torch.all(position <= scene.max(0).values + 1e-5)
    regression = DDAModel(DDAConfig(**TINY, position_head="regression"))
    assert not hasattr(regression, "pointer_query")


def test_sampling_is_deterministic_under_a_seed():
    model = DDAModel(DDAConfig(**TINY))
    batch = collate([prepare_inputs(scene_observation(), model.config)])
    first = model.sample(batch, torch.Generator().manual_seed(7))[0]
    assert torch.equal(first, model.sample(batch, torch.Generator().manual_seed(7))[0])
    assert not torch.equal(first, model.sample(batch, torch.Generator().manual_seed(8))[0])
    policy = DDAPolicy(**TINY)
    a, b = policy.select_action(scene_observation()), policy.select_action(scene_observation())
    assert np.array_equal(a.keyframes[0].pose.position, b.keyframes[0].pose.position)


def assert_valid(output, config, count=1):
    assert len(output.keyframes) == count
    for keyframe in output.keyframes:
        pose = keyframe.pose
        assert np.all(np.isfinite(pose.position)) and np.linalg.norm(pose.orientation) == pytest.approx(1.0)
        assert np.all(pose.position >= config.workspace_min) and np.all(pose.position <= config.workspace_max)
        assert SafetyLimits().inside(pose.position, tolerance=0.05)


def test_select_action_returns_valid_keyframes():
    policy = POLICIES.create("3dda", **TINY, conditioning="none")
    assert isinstance(policy, DDAPolicy) and policy.required_inputs == {"points"}
    output = policy.select_action(scene_observation(path=None, camera=None, masks={}))
    assert_valid(output, policy.config)
    assert "randomly initialised" in output.info["warning"] and output.done == (output.info["done_prob"] > 0.5)
    trajectory = DDAPolicy(**TINY, horizon=3).select_action(scene_observation())
    assert_valid(trajectory, policy.config, count=3)


def test_select_action_names_missing_inputs():
    with pytest.raises(PolicyError, match="3dda needs masks"):
        DDAPolicy(**TINY, conditioning="masks").select_action(scene_observation(masks={}))


def test_save_and_load_give_identical_outputs(tmp_path):
    policy = DDAPolicy(**TINY, seed=4, conditioning="path_overlay")
    loaded = DDAPolicy.from_pretrained(policy.save_pretrained(tmp_path / "ckpt"), always_done=True)
    assert loaded.config == dataclasses.replace(policy.config, checkpoint=str(tmp_path / "ckpt"), always_done=True)
    a, b = policy.select_action(scene_observation()), loaded.select_action(scene_observation())
    for x, y in zip(a.keyframes, b.keyframes):
        assert np.array_equal(x.pose.position, y.pose.position)
        assert np.array_equal(x.pose.orientation, y.pose.orientation) and x.gripper == y.gripper
    assert b.done and "warning" not in b.info
    with pytest.raises(ValueError, match="a checkpoint fixes dim"):
        DDAPolicy.from_pretrained(tmp_path / "ckpt", dim=96)


def test_a_checkpoint_with_unknown_fields_is_refused(tmp_path):
    folder = DDAPolicy(**TINY).save_pretrained(tmp_path / "ckpt")
    (folder / "config.json").write_text('{"dim": 48, "n_layers": 3}')
    with pytest.raises(ValueError, match="unknown DDAConfig fields: n_layers"):
        DDAPolicy(checkpoint=str(folder))


def overfit(config: DDAConfig, steps: int):
    torch.manual_seed(0)
    model = DDAModel(config)
    target = Keyframe(Pose(np.array([0.55, 0.10, 0.08]), top_down_orientation(np.pi / 6)))
    copies = 8   # one sample, several noise levels per step
    batch = add_targets(collate([prepare_inputs(scene_observation(), config)] * copies), [[target]] * copies,
                        [False] * copies, [[True]] * copies)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    evaluate = lambda: model.compute_loss(batch, torch.Generator().manual_seed(1))[1]["loss"]  # noqa: E731
    first = evaluate()
    for _ in range(steps):
        loss, _ = model.compute_loss(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return first, evaluate(), model.predict(batch, torch.Generator().manual_seed(0)), target


@pytest.mark.slow  # 80 training steps (~3 s)
def test_overfits_one_keyframe():
    first, last, prediction, target = overfit(DDAConfig(**TINY, conditioning="path_channels"), 80)
    assert last < first / 50
    assert np.linalg.norm(prediction["position"][0, 0].numpy() - target.pose.position) < 0.02
    assert quaternion_angle(prediction["quaternion"][0, 0].numpy(), target.pose.orientation) < 0.1
    assert prediction["gripper"][0, 0] > 0.9 and prediction["done"][0] < 0.1


@pytest.mark.slow  # 40 training steps; test_training trains both policies briefly in make test-fast
def test_epsilon_prediction_trains():
    first, last, _, _ = overfit(DDAConfig(**TINY, prediction="epsilon", position_head="regression"), 40)
    assert last < first / 4


@pytest.mark.parametrize("changes, named", [
    (dict(dim=64, heads=4), "multiple of 6"),
    (dict(inference_steps=200), "inference_steps"),
    (dict(horizon=0), "horizon"),
    (dict(prediction="v"), "prediction"),
    (dict(max_wavelength=0.0), "max_wavelength"),
    (dict(position_head="voxels"), "position_head"),
    (dict(prediction="epsilon"), "position_head pointer"),
    (dict(workspace_max=(0.8, 0.45)), "workspace_max"),
])
def test_bad_config_values_are_named(changes, named):
    with pytest.raises(ValueError, match=named):
        DDAConfig(**changes)
    with pytest.raises(ValueError, match=named):
        POLICIES.create("3dda", **changes)


def test_config_fields_are_ros_parameter_types():
    for field in dataclasses.fields(DDAConfig):
        value = field.default
        assert isinstance(value, (bool, int, float, str)) or (
            isinstance(value, tuple) and value and len({type(v) for v in value}) == 1), field.name
