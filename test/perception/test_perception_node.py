"""perception_node with the `pipeline` backend (tiny random Grounding DINO + SAM, template tracker) in a real ROS
graph with the simulator: masks with every object's track state and per-stage diagnostics are published for the
instruction's objects, and the redetect service answers. A bad parameter ends the node with exit code 2 and the
value in the message."""
import os
import subprocess
import sys
import time

import pytest
import yaml

from hamster_core.tiny_checkpoints.perception import build_grounding_dino, build_sam
from hamster_apps.graph import describe_graph
from hamster_apps.runner import GraphRunner, ros_environment

pytestmark = pytest.mark.graph

DOMAIN = 140 + os.getpid() % 10


@pytest.fixture(scope="module")
def params_file(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    params = {"perception_node": {"ros__parameters": {"pipeline": {
        "detector": "grounding_dino", "detector_checkpoint": str(build_grounding_dino(root)),
        "segmenter": "sam", "segmenter_checkpoint": str(build_sam(root)), "tracker": "template",
        "box_threshold": 0.0, "text_threshold": 0.0, "redetect_every_n": 5, "segment_every_k": 2},
        "publish_object_clouds": True, "extra_queries": ["table=the table"]}}}
    path = root / "perception.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


@pytest.mark.slow  # the simulator and the node with tiny models (~20 s)
def test_pipeline_node_publishes_masks_diagnostics_and_clouds(tmp_path, params_file):
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.executors import SingleThreadedExecutor
    from sensor_msgs.msg import PointCloud2
    from std_msgs.msg import String
    from std_srvs.srv import Trigger

    from hamster_msgs.msg import GroundingMasks
    from hamster_ros import interfaces as topics
    from hamster_sim.ground_truth import decode_scene_payload

    specs = [s for s in describe_graph(perception_backend="pipeline", params_files=(str(params_file),), seed=2)
             if s.name in ("sim_node", "perception_node")]
    env = ros_environment(DOMAIN)
    os.environ["ROS_DOMAIN_ID"] = str(DOMAIN)
    rclpy.init()
    node = rclpy.create_node("perception_probe")
    masks, diagnostics, clouds, instruction = [], [], [], node.create_publisher(String, topics.INSTRUCTION,
                                                                                topics.LATCHED)
    node.create_subscription(GroundingMasks, topics.MASKS, masks.append, topics.SENSOR)
    node.create_subscription(DiagnosticArray, topics.DIAGNOSTICS,
                             lambda m: diagnostics.extend(s for s in m.status if s.name == "perception_node"),
                             topics.EVENTS)
    node.create_subscription(PointCloud2, "/hamster/object_points/target_object", clouds.append, topics.SENSOR)

    def on_scene(msg):
        scene, _ = decode_scene_payload(msg.data)
        instruction.publish(String(data=scene.instruction))
    node.create_subscription(String, topics.SIM_SCENE, on_scene, topics.LATCHED)
    redetect = node.create_client(Trigger, "/hamster/redetect")
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        with GraphRunner(specs, tmp_path / "logs", env) as runner:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and (len(masks) < 5 or len(diagnostics) < 5 or not clouds):
                executor.spin_once(timeout_sec=0.1)
                assert not runner.exited(), runner.log_tail("perception_node")
            assert len(masks) >= 5, runner.log_tail("perception_node")
            assert redetect.wait_for_service(timeout_sec=10)
            future = redetect.call_async(Trigger.Request())
            executor.spin_until_future_complete(future, timeout_sec=10)
            assert future.result().success
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()

    labelled = [m for m in masks if m.labels]
    assert labelled, "the tiny detector with zero thresholds finds every query"
    for msg in masks:   # every queried object on every frame: with a mask, or hidden with its state
        assert len(msg.states) == len(msg.labels) and len(msg.hidden_states) == len(msg.hidden_labels)
        assert sorted([*msg.labels, *msg.hidden_labels]) == ["placement_area", "table", "target_object"]
        assert set(msg.states) <= {"detected", "tracked"} and set(msg.hidden_states) <= {"occluded", "lost"}
    for msg in labelled:
        assert set(msg.labels) <= {"target_object", "placement_area", "table"}
        for mask in msg.masks:
            assert (mask.width, mask.height, mask.encoding) == (320, 240, "mono8")
    values = [{kv.key: kv.value for kv in status.values} for status in diagnostics]
    assert all({"detect_ms", "track_ms", "segment_ms", "total_ms", "frame_ms"} <= set(v) for v in values)
    assert {v["detect_reason"] for v in values} & {"new_queries", "every_n", "lost"}
    last = values[-1]
    assert last["state/target_object"] in ("detected", "tracked", "occluded", "lost")
    counted = sum(int(last.get(f"frames_{state}/target_object", 0))
                  for state in ("detected", "tracked", "occluded", "lost"))
    assert counted >= 5 and counted == sum(int(last.get(f"frames_{state}/table", 0))
                                           for state in ("detected", "tracked", "occluded", "lost"))
    assert clouds and clouds[0].header.frame_id == "base"


def test_bad_parameter_exits_2_naming_the_value():
    env = ros_environment(DOMAIN)
    process = subprocess.run([sys.executable, "-m", "perception_node.node", "--ros-args", "-p", "backend:=pipeline",
                              "-p", "pipeline.detector:=sim_ground_truth", "-p", "pipeline.segmenter:=box",
                              "-p", "pipeline.segment_every_k:=0"], env=env, capture_output=True, text=True,
                             timeout=120)
    assert process.returncode == 2
    assert "segment_every_k" in process.stderr and "0" in process.stderr
