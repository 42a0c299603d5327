"""conditioning: the one Observation -> model inputs step of the learned policies, on the synthetic table scene
of scenes.py (camera looking at a table with a cube and a tray)."""
import dataclasses

import numpy as np
import pytest

from hamster_core.drawing import draw_path_channels
from hamster_core.geometry import TOP_DOWN
from hamster_core.policies.base import PolicyError
from hamster_core.policies.conditioning import (STEP_BUCKETS, SceneConfig, SceneMotion, collate, feature_channels,
                                                instruction_tokens,
                                                overlay_path, perturb_path, prepare_inputs, required_inputs)
from scenes import CAMERA, COLORS, MASKS, PATH, POINTS, TRAY_CENTER, path_through, scene_observation


def pixel_of(points):
    """Pixel (u, v) of each point and whether it is inside the image (others get conditioning zeros)."""
    pixels = np.floor(CAMERA.project(points)[0]).astype(int)
    inside = np.all((pixels >= 0) & (pixels < [CAMERA.width, CAMERA.height]), axis=1)
    return np.where(inside[:, None], pixels, 0).T, inside


@pytest.mark.parametrize("mode, channels", [("none", 3), ("path_overlay", 3), ("path_channels", 6), ("masks", 5),
                                           ("path_points", 6)])
def test_each_mode_gives_fixed_size_points_in_the_box_with_its_channels(mode, channels):
    config = SceneConfig(conditioning=mode, num_points=512)
    inputs = prepare_inputs(scene_observation(), config)
    assert feature_channels(config) == channels
    assert inputs.points.shape == (512, 3) and inputs.features.shape == (512, channels)
    assert inputs.points.dtype == inputs.features.dtype == np.float32
    assert np.all(inputs.points >= config.workspace_min) and np.all(inputs.points <= config.workspace_max)
    assert np.all((inputs.features >= 0) & (inputs.features <= 1))
    assert inputs.proprio.tolist() == pytest.approx([0.4, 0.0, 0.4, *TOP_DOWN, 0.08])
    assert {"points"} <= required_inputs(config)


def test_mask_channel_is_one_exactly_on_points_whose_pixel_is_in_the_mask():
    config = SceneConfig(conditioning="masks", num_points=2048)
    inputs = prepare_inputs(scene_observation(), config)
    (u, v), inside = pixel_of(inputs.points)
    for channel, label in enumerate(config.mask_labels, start=3):
        expected = MASKS[label][v, u] & inside
        assert expected.any()
        np.testing.assert_array_equal(inputs.features[:, channel], expected.astype(np.float32))


def test_a_mask_label_perception_left_out_is_an_empty_channel():
    # Regression (issue 22, 3dda demo seed 106): with the object hidden in the hand, perception published only
    # placement_area and the episode ended "cannot plan"; in training the simulator gives that label an empty mask.
    config = SceneConfig(conditioning="masks", num_points=2048)
    hidden = {"target_object": np.zeros_like(MASKS["target_object"]), "placement_area": MASKS["placement_area"]}
    left_out = {"placement_area": MASKS["placement_area"]}
    a = prepare_inputs(scene_observation(masks=hidden), config)
    b = prepare_inputs(scene_observation(masks=left_out), config)
    np.testing.assert_array_equal(a.features, b.features)
    assert np.all(b.features[:, 3] == 0) and np.any(b.features[:, 4] > 0)


def test_rgb_is_the_points_own_colour():
    observation = scene_observation()
    inputs = prepare_inputs(observation, SceneConfig(conditioning="none", num_points=256))
    rows = {tuple(p): c for p, c in zip(POINTS.tolist(), COLORS)}
    np.testing.assert_allclose(inputs.features * 255, [rows[tuple(p)] for p in inputs.points.tolist()], atol=1e-3)


def test_path_channels_are_draw_path_channels_at_each_points_pixel():
    inputs = prepare_inputs(scene_observation(), SceneConfig(conditioning="path_channels", num_points=4096))
    channels = draw_path_channels(CAMERA.height, CAMERA.width, PATH)
    (u, v), inside = pixel_of(inputs.points)
    np.testing.assert_array_equal(inputs.features[:, 3:], channels[v, u] * inside[:, None])
    on_path = inputs.features[:, 4] + inputs.features[:, 5]
    assert on_path.sum() > 10 and set(np.unique(on_path)) == {0.0, 1.0}


def test_path_overlay_paints_the_drawn_path_onto_the_points_it_covers():
    rgb = np.full((CAMERA.height, CAMERA.width, 3), 128, np.uint8)
    observation = scene_observation(colors=None, rgb=rgb)
    inputs = prepare_inputs(observation, SceneConfig(conditioning="path_overlay", num_points=4096))
    drawn = overlay_path(rgb, PATH)
    (u, v), inside = pixel_of(inputs.points)
    np.testing.assert_allclose(inputs.features * 255, np.where(inside[:, None], drawn[v, u], 0), atol=1e-3)
    assert np.sum(np.any(drawn[v, u] != 128, axis=1)) > 10


def test_path_overlay_without_an_image_draws_on_the_clouds_colours():
    config = SceneConfig(conditioning="path_overlay", num_points=4096)
    plain = prepare_inputs(scene_observation(), dataclasses.replace(config, conditioning="none"))
    overlay = prepare_inputs(scene_observation(), config)
    np.testing.assert_array_equal(plain.points, overlay.points)   # same seed, same points
    changed = np.any(plain.features != overlay.features, axis=1)
    assert 10 < changed.sum() < 0.2 * len(changed)


def test_crop_and_downsampling():
    outside = np.array([[0.0, 0.0, 0.0], [0.5, 0.0, 1.0]], np.float32)
    points = np.concatenate([POINTS, outside])
    colors = np.concatenate([COLORS, np.zeros((2, 3), np.uint8)])
    config = SceneConfig(conditioning="none", num_points=1024, voxel_size=0.01)
    inputs = prepare_inputs(scene_observation(points=points, colors=colors), config)
    assert not np.any(np.all(np.isin(inputs.points, outside), axis=1))
    cells = np.floor((inputs.points.astype(np.float64) - config.workspace_min) / 0.01).astype(int)
    assert len(np.unique(cells, axis=0)) == 1024                  # one point per voxel while there are enough
    again = prepare_inputs(scene_observation(points=points, colors=colors), config)
    np.testing.assert_array_equal(inputs.points, again.points)    # seeded: repeatable
    other = prepare_inputs(scene_observation(points=points, colors=colors), config, np.random.default_rng(5))
    assert not np.array_equal(inputs.points, other.points)
    some = np.flatnonzero(np.all((POINTS > [0.3, -0.3, -0.01]) & (POINTS < [0.7, 0.3, 0.5]), axis=1))[:10]
    few = prepare_inputs(scene_observation(points=POINTS[some], colors=COLORS[some]),
                         SceneConfig(conditioning="none", num_points=64, sampling="random"))
    assert few.points.shape == (64, 3) and len(np.unique(few.points, axis=0)) == 10


def test_path_noise_is_training_time_only():
    rng = np.random.default_rng(0)
    noisy = perturb_path(PATH, rng, 0.01)
    assert np.array_equal(noisy.gripper, PATH.gripper) and np.all((noisy.points >= 0) & (noisy.points <= 1))
    offsets = np.concatenate([perturb_path(PATH, rng, 0.01).points - PATH.points for _ in range(300)])
    assert np.std(offsets) == pytest.approx(0.01, rel=0.1)
    config = SceneConfig(conditioning="path_channels", num_points=4096)
    clean = prepare_inputs(scene_observation(), config, np.random.default_rng(0))
    train = prepare_inputs(scene_observation(), config, np.random.default_rng(0), train=True)
    np.testing.assert_array_equal(clean.points, train.points)
    assert not np.array_equal(clean.features, train.features)
    repeat = prepare_inputs(scene_observation(), config, np.random.default_rng(0))
    assert np.array_equal(clean.features, repeat.features)


def test_instruction_tokens_are_stable_hashed_words():
    tokens = instruction_tokens("Pick up the red cube!", 8, 1024)
    assert tokens.tolist()[5:] == [0, 0, 0] and np.all((tokens[:5] >= 1) & (tokens[:5] < 1024))
    assert tokens[:5].tolist() == instruction_tokens("pick  UP the red cube", 8, 1024)[:5].tolist()
    assert tokens[3] == instruction_tokens("red", 1, 1024)[0] != tokens[4]
    assert len(instruction_tokens("a " * 40, 8, 1024)) == 8


@pytest.mark.parametrize("mode, changes, named", [
    ("path_channels", dict(path=None), "path"),
    ("path_points", dict(path=None), "path"),
    ("path_overlay", dict(camera=None), "camera"),
    ("masks", dict(masks={}), "masks"),
    ("none", dict(colors=None), "colors"),
])
def test_missing_inputs_are_named(mode, changes, named):
    with pytest.raises(PolicyError, match=named):
        prepare_inputs(scene_observation(**changes), SceneConfig(conditioning=mode))


def test_a_cloud_outside_the_workspace_is_refused():
    with pytest.raises(PolicyError, match="workspace"):
        prepare_inputs(scene_observation(points=POINTS + 5), SceneConfig(conditioning="none"))


@pytest.mark.parametrize("changes, named", [
    (dict(conditioning="overlay"), "conditioning"),
    (dict(sampling="fps"), "sampling"),
    (dict(num_points=0), "num_points"),
    (dict(num_points=1.5), "num_points"),
    (dict(workspace_min=(0.9, 0, 0)), "workspace_min"),
    (dict(voxel_size=0.0), "voxel_size"),
    (dict(path_noise_std=-1.0), "path_noise_std"),
    (dict(mask_labels=()), "mask_labels"),
    (dict(max_keyframes=0), "max_keyframes"),
])
def test_bad_config_values_are_named(changes, named):
    with pytest.raises(ValueError, match=named):
        SceneConfig(**changes)


def test_collate_stacks_a_batch():
    config = SceneConfig(conditioning="masks", num_points=128)
    batch = collate([prepare_inputs(scene_observation(), config, step=step) for step in (0, 5, 20)])
    assert {k: tuple(v.shape) for k, v in batch.items()} == {
        "points": (3, 128, 3), "features": (3, 128, 5), "proprio": (3, 8), "tokens": (3, 16), "step": (3,)}
    assert batch["step"].tolist() == [0, 5, STEP_BUCKETS - 1]   # later steps share the last bucket


@pytest.mark.parametrize("step", [-1, 1.0, True, None])
def test_prepare_inputs_rejects_a_bad_step(step):
    with pytest.raises(ValueError, match="step must be an integer"):
        prepare_inputs(scene_observation(), SceneConfig(conditioning="none", num_points=64), step=step)


def test_path_thickness_widens_the_path_channels_only():
    thin = prepare_inputs(scene_observation(), SceneConfig(conditioning="path_channels", num_points=2048))
    default = prepare_inputs(scene_observation(), SceneConfig(conditioning="path_channels", num_points=2048,
                                                              path_thickness=0))
    thick = prepare_inputs(scene_observation(), SceneConfig(conditioning="path_channels", num_points=2048,
                                                            path_thickness=9))
    np.testing.assert_array_equal(thin.features, default.features)
    np.testing.assert_array_equal(thin.points, thick.points)            # same sampling, wider line
    on_path = lambda inputs: int((inputs.features[:, 3:].max(axis=1) > 0).sum())  # noqa: E731
    assert on_path(thick) > 2 * on_path(thin) > 0
    with pytest.raises(ValueError, match="path_thickness"):
        SceneConfig(path_thickness=-1)


def test_path_points_are_the_lifted_path_appended_to_the_scene():
    from hamster_core.lifting import LIFTED_PATH_POINTS, lift_path

    config = SceneConfig(conditioning="path_points", num_points=512)
    lifted = lift_path(PATH, POINTS, CAMERA)
    inputs = prepare_inputs(scene_observation(path_points=lifted), config)
    scene, path = slice(0, 512 - LIFTED_PATH_POINTS), slice(512 - LIFTED_PATH_POINTS, 512)
    in_box = np.clip(lifted.points, config.workspace_min, config.workspace_max)   # clipped like the scene
    np.testing.assert_allclose(inputs.points[path], in_box, atol=1e-6)
    np.testing.assert_array_equal(inputs.features[path, 3:], lifted.channels)
    assert np.all(inputs.features[path, :3] == 0) and np.all(inputs.features[scene, 3:] == 0)
    assert np.any(inputs.features[scene, :3] > 0)
    # Without a lifted path the observation's own frame is used; with one, its points whatever the cloud shows.
    own = prepare_inputs(scene_observation(), config)
    np.testing.assert_array_equal(own.features, inputs.features)
    moved = dataclasses.replace(lifted, points=lifted.points + [0.0, 0.0, 0.05])
    np.testing.assert_allclose(prepare_inputs(scene_observation(path_points=moved), config).points[path],
                               in_box + [0.0, 0.0, 0.05], atol=1e-6)
    # Translation augmentation moves the lifted path with the scene; training noise is metres on the points.
    shifted = prepare_inputs(scene_observation(path_points=lifted), config,
                             motion=SceneMotion(translation=(0.02, 0.0, 0.0)))
    np.testing.assert_allclose(shifted.points[path], np.clip(lifted.points + [0.02, 0, 0], config.workspace_min,
                                                             config.workspace_max), atol=1e-6)
    noisy = prepare_inputs(scene_observation(path_points=lifted), config, rng=np.random.default_rng(0), train=True)
    assert 0.003 < np.abs(noisy.points[path] - in_box).mean() < 0.03
    # Few points: a quarter of them for the path, evenly along it from its start to its end.
    small = prepare_inputs(scene_observation(path_points=lifted), dataclasses.replace(config, num_points=64))
    assert small.points.shape == (64, 3)
    np.testing.assert_array_equal(small.features[48:, 3:], lifted.channels[[0, 4, 8, 13, 17, 21, 25, 29, 34, 38, 42,
                                                                            46, 50, 55, 59, 63]])


def test_lifted_path_lies_on_the_surfaces_the_camera_sees_with_progress_and_gripper():
    from hamster_core.lifting import LIFTED_PATH_POINTS, lift_path

    lifted = lift_path(PATH, POINTS, CAMERA)
    assert lifted.points.shape == (LIFTED_PATH_POINTS, 3) and lifted.channels.shape == (LIFTED_PATH_POINTS, 3)
    nearest = np.min(np.linalg.norm(lifted.points[:, None] - POINTS[None, ::4], axis=2), axis=1)
    assert nearest.max() < 0.02                                    # each one a point of the cloud
    progress, opened, closed = lifted.channels.T
    assert progress[0] < 0.05 and progress[-1] == 1 and np.all(np.diff(progress) >= 0)
    np.testing.assert_array_equal(opened + closed, 1)
    assert closed.any() and opened[0] == 1 and opened[-1] == 1     # open, closed over the cube's stretch, open
    with pytest.raises(ValueError, match="no pixel of the path has a 3D point"):
        lift_path(PATH, POINTS + [0, 0, -50.0], CAMERA)             # the cloud behind the camera


def test_learned_policy_lifts_the_path_once_per_episode_and_again_for_a_new_path():
    # Regression: looked up per pixel on later frames, path_channels put the path's end on the hand (which by
    # then stands between the camera and the container) and 3dda never found the container.
    from hamster_core.policies.base import POLICIES

    policy = POLICIES.create("3dda", conditioning="path_points", num_points=256, dim=24, heads=2, denoiser_layers=1,
                             scene_layers=0, diffusion_steps=10, inference_steps=2)
    first = scene_observation()
    policy.select_action(first)
    lifted = policy._lifted[1]
    later = scene_observation(points=POINTS + [0.0, 0.0, 0.03])     # the scene moved under the path's pixels
    policy.select_action(later)
    assert policy._lifted[1] is lifted                               # still the first frame's
    other = path_through([[0.40, 0.0, 0.30], [*TRAY_CENTER, 0.10]], [0, 0])
    policy.select_action(scene_observation(path=other))
    assert policy._lifted[1] is not lifted and policy._lifted[0] == other
    policy.reset()
    assert policy._lifted is None


def test_path_channels_points_carry_both_views_of_the_path():
    from hamster_core.lifting import LIFTED_PATH_POINTS, lift_path

    lifted = lift_path(PATH, POINTS, CAMERA)
    both = prepare_inputs(scene_observation(path_points=lifted), SceneConfig(conditioning="path_channels_points",
                                                                             num_points=512))
    points = prepare_inputs(scene_observation(path_points=lifted), SceneConfig(conditioning="path_points",
                                                                               num_points=512))
    assert both.features.shape == (512, 3 + 3 + 1)
    scene, path = slice(0, 512 - LIFTED_PATH_POINTS), slice(512 - LIFTED_PATH_POINTS, 512)
    # The same points as path_points, the lifted ones flagged; the scene's path channels are path_channels'.
    np.testing.assert_array_equal(both.points, points.points)
    np.testing.assert_array_equal(both.features[path, :6], points.features[path])
    assert np.all(both.features[path, 6] == 1) and np.all(both.features[scene, 6] == 0)
    drawn = draw_path_channels(CAMERA.height, CAMERA.width, PATH)
    u, v = np.floor(both.pixels[scene]).astype(int).T
    seen = (u >= 0) & (v >= 0) & (u < CAMERA.width) & (v < CAMERA.height)
    np.testing.assert_array_equal(both.features[scene, 3:6][seen], drawn[v[seen], u[seen]])
    assert np.all(both.features[scene, 3:6][~seen] == 0)
    assert np.any(both.features[scene, 3:6] > 0)                 # some scene points lie on the drawn path
