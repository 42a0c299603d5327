"""path_follower and the image<->cloud lifting it relies on, on a synthetic table scene (scenes.py)."""
import numpy as np
import pytest

from hamster_core.geometry import TOP_DOWN, Pose, quaternion_to_matrix
from hamster_core.lifting import ProjectedCloud
from hamster_core.path2d import GripperState
from hamster_core.policies.base import POLICIES, Observation, PolicyError
from hamster_core.policies.path_follower import PathFollowerConfig, PathFollowerPolicy
from scenes import CAMERA, CUBE_CENTER, CUBE_HALF, TRAY_CENTER, TRAY_WALL, path_through, synthetic_scene


def observation(path, masks=None, points=None):
    scene_points, scene_masks = synthetic_scene()
    return Observation(stamp=0.0, instruction="pick up the red cube and put it in the blue bowl",
                       tcp_pose=Pose(np.array([0.4, 0.0, 0.4]), TOP_DOWN), gripper_width=0.08,
                       points=scene_points if points is None else points, camera=CAMERA, path=path,
                       masks=scene_masks if masks is None else masks)


START = [0.5, 0.0, 0.2]
GRASP = [*CUBE_CENTER[:2], 0.05]
RELEASE = [*TRAY_CENTER, 0.0]
DEFAULT_PATH = path_through([START, GRASP, [0.5, 0.0, 0.15], RELEASE], [0, 1, 1, 0])


def test_lift_recovers_surface_points_and_fills_holes():
    points, _ = synthetic_scene()
    cloud = ProjectedCloud(points, CAMERA)
    target = np.array([[0.45, -0.05, 0.0]])
    pixel, _ = CAMERA.project(target)
    lifted, found = cloud.lift(pixel, max_hole_radius_px=3)
    assert found[0] and np.linalg.norm(lifted[0] - target[0]) < 0.01
    # Punch a 30 cm hole into the table around that point: nearest support is now at the hole's edge.
    holed = points[np.linalg.norm(points[:, :2] - target[0, :2], axis=1) > 0.15]
    cloud = ProjectedCloud(holed, CAMERA)
    _, found = cloud.lift(pixel, max_hole_radius_px=3)
    assert not found[0]
    lifted, found = cloud.lift(pixel, max_hole_radius_px=200)
    assert found[0] and 0.1 < np.linalg.norm(lifted[0, :2] - target[0, :2]) < 0.25


def test_grasps_the_cube_and_releases_above_the_tray():
    output = PathFollowerPolicy().select_action(observation(DEFAULT_PATH))
    assert output.done
    grippers = [k.gripper for k in output.keyframes]
    close = grippers.index(GripperState.CLOSED)
    release = grippers.index(GripperState.OPEN)
    grasp_pose, release_pose = output.keyframes[close].pose, output.keyframes[release].pose
    config = PathFollowerConfig()
    np.testing.assert_allclose(grasp_pose.position[:2], CUBE_CENTER[:2], atol=0.006)
    assert grasp_pose.position[2] == pytest.approx(2 * CUBE_HALF - config.grasp_depth, abs=0.005)
    np.testing.assert_allclose(release_pose.position[:2], TRAY_CENTER, atol=0.01)
    assert release_pose.position[2] == pytest.approx(TRAY_WALL + config.release_height, abs=0.01)
    # Approach from above, lift before travelling, retreat up after releasing.
    assert output.keyframes[close - 1].pose.position[2] > grasp_pose.position[2] + 0.05
    assert output.keyframes[close + 1].pose.position[2] > grasp_pose.position[2] + 0.1
    assert output.keyframes[-1].pose.position[2] > release_pose.position[2]
    # Hand points down throughout.
    for keyframe in output.keyframes:
        assert quaternion_to_matrix(keyframe.pose.orientation)[2, 2] == pytest.approx(-1.0, abs=1e-6)


def test_without_masks_uses_the_lifted_path_points():
    output = PathFollowerPolicy().select_action(observation(DEFAULT_PATH, masks={}))
    close = [k.gripper for k in output.keyframes].index(GripperState.CLOSED)
    assert output.info["refined_with"] == []
    np.testing.assert_allclose(output.keyframes[close].pose.position[:2], CUBE_CENTER[:2], atol=0.02)


def test_mask_of_the_wrong_size_is_ignored_not_fatal():
    masks = {"target_object": np.ones((10, 10), bool)}
    output = PathFollowerPolicy().select_action(observation(DEFAULT_PATH, masks=masks))
    assert "target_object" not in output.info["refined_with"]


def test_path_without_close_gripper_point_is_refused():
    path = path_through([START, GRASP, RELEASE], [0, 0, 0])
    with pytest.raises(PolicyError, match="close-gripper"):
        PathFollowerPolicy().select_action(observation(path))


def test_path_off_the_cloud_is_refused():
    far = np.array([[0.5, 0.0, 0.0]])
    points = far.astype(np.float32)       # a single point: no 3D support near the grasp pixel
    with pytest.raises(PolicyError, match="no 3D point"):
        PathFollowerPolicy(max_hole_radius_px=2).select_action(observation(DEFAULT_PATH, masks={}, points=points))


def test_missing_inputs_are_named():
    obs = observation(DEFAULT_PATH)
    obs.path = None
    with pytest.raises(PolicyError, match="path"):
        PathFollowerPolicy().select_action(obs)


def test_registry_builds_it_by_name_and_rejects_unknown_names():
    assert isinstance(POLICIES.create("path_follower", lift_height=0.2), PathFollowerPolicy)
    with pytest.raises(ValueError, match="unknown policy 'nope'.*path_follower"):
        POLICIES.create("nope")


@pytest.mark.parametrize("field,value", [("approach_height", -0.1), ("grasp_depth", 0.5),
                                         ("max_hole_radius_px", 0), ("min_mask_points", 0)])
def test_invalid_config_raises(field, value):
    with pytest.raises(ValueError, match=field):
        PathFollowerConfig(**{field: value})


@pytest.mark.parametrize("yaw", [-0.7, -0.437, 0.0, 0.3, 0.78])
def test_grasp_yaw_lines_fingers_up_with_the_faces_of_a_square(yaw):
    """Regression: PCA gave an arbitrary yaw for squares, closing the fingers across the corners."""
    from hamster_core.policies.path_follower.modeling_path_follower import grasp_yaw
    g = np.linspace(-0.025, 0.025, 30)
    xx, yy = np.meshgrid(g, g)
    rotation = np.array([[np.cos(yaw), -np.sin(yaw)], [np.sin(yaw), np.cos(yaw)]])
    points = np.stack([xx.ravel(), yy.ravel()], axis=1) @ rotation.T + [0.5, 0.1]
    error = (grasp_yaw(points) - yaw + np.pi / 4) % (np.pi / 2) - np.pi / 4
    assert abs(error) < np.radians(3)
    assert -np.pi / 4 <= grasp_yaw(points) < np.pi / 4


def test_grasp_yaw_of_a_long_box_closes_across_its_short_side():
    from hamster_core.policies.path_follower.modeling_path_follower import grasp_yaw
    xx, yy = np.meshgrid(np.linspace(-0.05, 0.05, 40), np.linspace(-0.015, 0.015, 12))
    points = np.stack([yy.ravel(), xx.ravel()], axis=1)      # long side along base y
    assert abs(abs(grasp_yaw(points)) - np.pi / 2) < np.radians(3)
