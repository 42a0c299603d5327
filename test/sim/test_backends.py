"""The first backends: the oracle VLM and the simulator's ground-truth perception (no ROS graph)."""
import numpy as np
import pytest

from hamster_core.path2d import GripperState, parse_hamster_answer
from hamster_core.perception.backend import PERCEPTION_BACKENDS, PerceptionFrame
from hamster_core.vlm import VLM_BACKENDS, VlmError
from hamster_sim.ground_truth import decode_scene_payload
from oracle_requests import CAMERA, IDS, PAYLOAD, SCENE, request


def test_scene_payload_round_trip_and_rejects_garbage():
    scene, ids = decode_scene_payload(PAYLOAD)
    assert scene == SCENE and ids == IDS
    for bad in ("", "{}", '{"scene": 1, "segmentation_ids": {}}', "[1, 2]"):
        with pytest.raises(ValueError):
            decode_scene_payload(bad)


def test_oracle_answers_in_hamster_format_with_grasp_over_the_target():
    oracle = VLM_BACKENDS.create("oracle")
    answer = oracle.query(request())
    assert answer.startswith("<ans>[") and answer.endswith("]</ans>")
    path = parse_hamster_answer(answer)
    changes = path.gripper_change_indices()
    assert [int(path.gripper[i]) for i in changes] == [GripperState.CLOSED, GripperState.OPEN]
    # The close point is the target seen from the camera (the TCP at grasp height above the object's centre).
    target = SCENE.target_object.position
    pixel, _ = CAMERA.project(np.array([target]))
    np.testing.assert_allclose(path.points[changes[0]], CAMERA.normalize(pixel)[0], atol=0.04)
    container = SCENE.target_container.position
    pixel, _ = CAMERA.project(np.array([[*container, 0.05]]))
    np.testing.assert_allclose(path.points[changes[1]], CAMERA.normalize(pixel)[0], atol=0.06)
    # RDP leaves a handful of points, as HAMSTER's labels have.
    assert 4 <= len(path) <= 10


def test_oracle_refuses_other_tasks_and_missing_context():
    oracle = VLM_BACKENDS.create("oracle")
    with pytest.raises(VlmError, match="only knows"):
        oracle.query(request("stack the blocks"))
    with pytest.raises(VlmError, match="needs"):
        oracle.query(request(scene_json=None))
    with pytest.raises(ValueError, match="rdp_epsilon"):
        VLM_BACKENDS.create("oracle", rdp_epsilon=-1)


def test_ground_truth_masks_match_phrases_to_objects():
    backend = PERCEPTION_BACKENDS.create("sim_ground_truth")
    target_id, container_id = IDS[SCENE.target], IDS[SCENE.container]
    segmentation = np.zeros((240, 320), np.int32)
    segmentation[100:120, 50:70] = target_id
    segmentation[10:60, 200:260] = container_id
    backend.set_queries({"target_object": f"the {SCENE.target}", "placement_area": SCENE.container.upper(),
                         "extra": "a unicorn"})
    detections = {d.label: d for d in backend.process(PerceptionFrame(0.0, np.zeros((240, 320, 3), np.uint8),
                                                                      segmentation, PAYLOAD))}
    assert set(detections) == {"target_object", "placement_area"}   # nothing invented for the unicorn
    assert detections["target_object"].mask.sum() == 400
    assert detections["target_object"].box == (50, 100, 20, 20)
    assert detections["placement_area"].box == (200, 10, 60, 50)


def test_ground_truth_needs_matching_segmentation():
    backend = PERCEPTION_BACKENDS.create("sim_ground_truth")
    backend.set_queries({"target_object": SCENE.target})
    with pytest.raises(ValueError, match="segmentation"):
        backend.process(PerceptionFrame(0.0, np.zeros((240, 320, 3), np.uint8), None, PAYLOAD))
    with pytest.raises(ValueError, match="does not match"):
        backend.process(PerceptionFrame(0.0, np.zeros((240, 320, 3), np.uint8), np.zeros((10, 10), np.int32),
                                        PAYLOAD))
