"""Scene sampling, its JSON form, and the scripted expert (all pure Python: no MuJoCo)."""
import json
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hamster_core.geometry import TOP_DOWN, Pose, quaternion_to_matrix
from hamster_core.instruction import parse_pick_place_instruction
from hamster_core.geometry import top_down_orientation
from hamster_core.path2d import GripperState
from hamster_sim.expert import expert_keyframes, grasp_yaw
from hamster_sim.scene import (CONTAINER_BASE_THICKNESS, MAX_GRASP_WIDTH, ObjectSpec, SceneConfig,
                               SceneDescription, sample_scene)

START = Pose(np.array([0.55, 0.0, 0.52]), TOP_DOWN)


def footprints(scene):
    """(x, y, half size of the square covering it from above) for every item."""
    items = [(c.position[0], c.position[1], c.outer_half_extent) for c in scene.containers]
    return items + [(o.position[0], o.position[1], o.footprint_radius) for o in scene.objects]


def test_same_seed_same_scene():
    assert sample_scene(7) == sample_scene(7)
    assert sample_scene(7).to_json() == sample_scene(7).to_json()


def test_different_seeds_differ():
    scenes = [sample_scene(seed).to_json() for seed in range(20)]
    assert len(set(scenes)) == 20


def test_scenes_are_valid_over_many_seeds():
    config = SceneConfig()
    shapes, targets_per_shape = set(), {"box": 0, "cylinder": 0}
    for seed in range(200):
        scene = sample_scene(seed, config)
        assert len(scene.objects) == config.num_distractors + 1
        assert len(scene.containers) == config.num_containers
        colors = [item.color for item in scene.objects + scene.containers]
        assert len(set(colors)) == len(colors)
        items = footprints(scene)
        for i, (x, y, half) in enumerate(items):
            assert config.workspace_x[0] <= x <= config.workspace_x[1]
            assert config.workspace_y[0] <= y <= config.workspace_y[1]
            for other_x, other_y, other_half in items[i + 1:]:
                gap = max(abs(x - other_x), abs(y - other_y)) - half - other_half
                assert gap >= config.min_separation - 1e-12, f"seed {seed}: items overlap"
        for obj in scene.objects:
            assert obj.position[2] == pytest.approx(scene.table_height + obj.half_height)
            assert 2 * obj.size[0] <= MAX_GRASP_WIDTH - 0.01  # graspable across two faces
            shapes.add(obj.shape)
            if obj.shape == "box":
                assert obj.size[0] == obj.size[1] == obj.size[2]
        for container in scene.containers:
            assert container.wall_height > max(o.half_height for o in scene.objects)
        assert scene.instruction == f"pick up the {scene.target} and put it in the {scene.container}"
        assert parse_pick_place_instruction(scene.instruction) == (scene.target, scene.container)
        targets_per_shape[scene.target_object.shape] += 1
    assert shapes == {"box", "cylinder"}
    assert min(targets_per_shape.values()) > 50


def test_object_names_follow_colour_and_shape():
    scene = sample_scene(3)
    for obj in scene.objects:
        assert obj.name == f"{obj.color} {'cube' if obj.shape == 'box' else 'cylinder'}"
    for container in scene.containers:
        assert container.name == f"{container.color} bowl"


def test_config_changes_counts_and_shapes():
    config = SceneConfig(num_distractors=0, num_containers=1, shapes=("box",))
    scene = sample_scene(1, config)
    assert [o.shape for o in scene.objects] == ["box"]
    assert len(scene.containers) == 1
    assert scene.target == scene.objects[0].name


@pytest.mark.parametrize("seed", [0, 5, 11])
def test_json_round_trip(seed):
    scene = sample_scene(seed)
    text = scene.to_json()
    assert SceneDescription.from_json(text) == scene
    assert SceneDescription.from_json(text).to_json() == text


def _scene_dict(seed=0):
    return json.loads(sample_scene(seed).to_json())


@pytest.mark.parametrize("mutate, field", [
    (lambda d: d.pop("target"), "target"),
    (lambda d: d.update(extra=1), "extra"),
    (lambda d: d.update(target="purple elephant"), "purple elephant"),
    (lambda d: d.update(container="red cube"), "container"),
    (lambda d: d.update(seed="zero"), "seed"),
    (lambda d: d.update(table_height=float("nan")), "table_height"),
    (lambda d: d.update(objects=[]), "objects"),
    (lambda d: d.update(objects="cube"), "objects"),
    (lambda d: d["objects"][1].update(shape="sphere"), "objects[1]"),
    (lambda d: d["objects"][0].update(size=[0.02, 0.02]) if d["objects"][0]["shape"] == "box"
     else d["objects"][0].update(size=[0.02, 0.02, 0.02]), "size"),
    (lambda d: d["objects"][0].update(rgba=[1, 0, 0, 2]), "rgba"),
    (lambda d: d["objects"][0].update(position=[0.5, 0.0]), "position"),
    (lambda d: d["objects"][0].pop("yaw"), "yaw"),
    (lambda d: d["containers"][0].update(inner_half_extent=-0.05), "inner_half_extent"),
    (lambda d: d["containers"][1].update(name=d["objects"][0]["name"]), "unique"),
])
def test_from_json_rejects_bad_fields(mutate, field):
    data = _scene_dict()
    mutate(data)
    with pytest.raises(ValueError, match=field.replace("[", r"\[").replace("]", r"\]")):
        SceneDescription.from_json(json.dumps(data))


@pytest.mark.parametrize("text", ["not json", "[]", "3"])
def test_from_json_rejects_non_scene_documents(text):
    with pytest.raises(ValueError):
        SceneDescription.from_json(text)


@pytest.mark.parametrize("kwargs, name", [
    (dict(num_distractors=-1), "num_distractors"),
    (dict(num_distractors=1.5), "num_distractors"),
    (dict(num_containers=0), "num_containers"),
    (dict(num_distractors=7), "palette"),
    (dict(palette={"red": (1, 0, 0, 1)}), "palette"),
    (dict(palette={"red": (1, 0, 0)}), "palette"),
    (dict(shapes=("sphere",)), "shapes"),
    (dict(cube_half_extent_range=(0.03, 0.05)), "cube_half_extent_range"),
    (dict(cylinder_radius_range=(0.03, 0.02)), "cylinder_radius_range"),
    (dict(workspace_x=(0.65, 0.35)), "workspace_x"),
    (dict(workspace_y=(-1.0, 0.2)), "workspace_y"),
    (dict(min_separation=-0.01), "min_separation"),
    (dict(container_wall_height_range=(0.02, 0.05)), "container_wall_height_range"),
    (dict(table_height=float("inf")), "table_height"),
    (dict(placement_attempts=0), "placement_attempts"),
])
def test_invalid_config_raises_naming_the_value(kwargs, name):
    with pytest.raises(ValueError, match=name):
        SceneConfig(**kwargs)


def test_crowded_config_raises():
    config = SceneConfig(num_distractors=3, num_containers=3, workspace_x=(0.4, 0.45), workspace_y=(0.0, 0.05),
                         placement_attempts=50)
    with pytest.raises(ValueError, match="crowded"):
        sample_scene(0, config)


def test_sample_scene_rejects_bad_seed():
    with pytest.raises(ValueError, match="seed"):
        sample_scene("1")


# ------------------------------------------------------------------------------------------------- expert


def test_expert_keyframes_pick_then_place():
    scene = sample_scene(4)
    keyframes = expert_keyframes(scene, START)
    poses = [pose for pose, _ in keyframes]
    assert [state for _, state in keyframes] == [GripperState.OPEN, GripperState.OPEN, GripperState.CLOSED, GripperState.CLOSED,
                                                 GripperState.CLOSED, GripperState.OPEN, GripperState.OPEN]
    assert poses[0] is START
    obj, container = scene.target_object, scene.target_container
    above, grasp, lift, over, release, retreat = poses[1:]
    for pose in (above, grasp, lift):
        np.testing.assert_allclose(pose.position[:2], obj.position[:2])
    for pose in (over, release, retreat):
        np.testing.assert_allclose(pose.position[:2], container.position)
    assert obj.position[2] <= grasp.position[2] < obj.position[2] + obj.half_height
    assert above.position[2] == pytest.approx(grasp.position[2] + 0.10)
    assert lift.position[2] == pytest.approx(grasp.position[2] + 0.15)
    floor = scene.table_height + CONTAINER_BASE_THICKNESS
    assert release.position[2] >= floor + 0.08
    hanging_bottom = release.position[2] - (grasp.position[2] - (obj.position[2] - obj.half_height))
    assert hanging_bottom > floor
    for pose in poses[1:]:
        hand_z = quaternion_to_matrix(pose.orientation)[:, 2]
        np.testing.assert_allclose(hand_z, [0, 0, -1], atol=1e-12)  # pointing straight down


def test_expert_closes_fingers_across_cube_faces():
    cube = ObjectSpec("red cube", "box", "red", (1, 0, 0, 1), (0.025,) * 3, (0.5, 0.0, 0.025), yaw=1.2)
    yaw = grasp_yaw(cube)
    assert -math.pi / 4 <= yaw < math.pi / 4
    finger_axis = quaternion_to_matrix(top_down_orientation(yaw))[:, 1]  # the fingers slide along hand y
    face_normal = np.array([math.cos(cube.yaw), math.sin(cube.yaw), 0.0])
    # The closing direction is a face normal of the cube: parallel or perpendicular to this one.
    assert max(abs(np.dot(finger_axis, face_normal)), abs(np.cross(finger_axis, face_normal)[2])) > 1 - 1e-9


@given(st.floats(-10, 10))
def test_grasp_yaw_is_a_quarter_turn_equivalent_of_the_cube_yaw(cube_yaw):
    cube = ObjectSpec("c", "box", "red", (1, 0, 0, 1), (0.02,) * 3, (0.5, 0.0, 0.02), yaw=cube_yaw)
    yaw = grasp_yaw(cube)
    quarter_turns = (cube_yaw - yaw) / (math.pi / 2)
    assert -math.pi / 4 - 1e-9 <= yaw < math.pi / 4 + 1e-9
    assert quarter_turns == pytest.approx(round(quarter_turns), abs=1e-6)


def test_expert_rejects_bad_heights():
    with pytest.raises(ValueError, match="lift_height"):
        expert_keyframes(sample_scene(0), START, lift_height=-0.1)


def _perturbed_plan(perturbation: float, seed: int):
    from hamster_core.policies.base import Observation
    from hamster_sim.rollout import ExpertPolicy

    expert = ExpertPolicy(sample_scene(4), perturbation=perturbation, seed=seed)
    observation = Observation(stamp=0.0, instruction="", tcp_pose=START, gripper_width=0.08,
                              points=np.zeros((1, 3), np.float32))
    while not expert.select_action(observation).done:
        pass
    return expert.executed


def test_perturbed_expert_keeps_grasp_and_release_exact_and_never_lowers_a_held_object():
    sigma = 0.02
    executed = _perturbed_plan(sigma, seed=7)
    clean = _perturbed_plan(0.0, seed=7)
    for (_, planned), (unperturbed, _) in zip(executed, clean, strict=True):  # the plan itself is not noisy
        np.testing.assert_array_equal(planned.pose.position, unperturbed.pose.position)
    names = ["above", "grasp", "lift", "over", "release", "retreat"]
    offsets = {name: done.pose.position - planned.pose.position for name, (done, planned) in zip(names, executed)}
    assert np.all(offsets["grasp"] == 0) and np.all(offsets["release"] == 0)
    for name in ("above", "lift", "over", "retreat"):
        assert 0 < np.linalg.norm(offsets[name]) and np.all(np.abs(offsets[name]) <= 2 * sigma), (name, offsets)
    assert offsets["lift"][2] >= 0 and offsets["over"][2] >= 0           # holding: only ever higher
    for done, planned in executed:
        np.testing.assert_array_equal(done.pose.orientation, planned.pose.orientation)
        assert done.gripper == planned.gripper
    again = _perturbed_plan(sigma, seed=7)
    assert all(np.array_equal(a.pose.position, b.pose.position) for (a, _), (b, _) in zip(executed, again))


@pytest.mark.parametrize("bad", [-0.01, 0.2, float("nan"), "0.02"])
def test_perturbed_expert_rejects_a_bad_perturbation(bad):
    from hamster_sim.rollout import ExpertPolicy

    with pytest.raises(ValueError, match="perturbation"):
        ExpertPolicy(sample_scene(0), perturbation=bad)
