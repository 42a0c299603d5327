"""The real thing: simulator + VLM + perception + policy as separate processes over DDS (this machine only),
one seeded episode, recorded to mcap. Asserts the object ends in the container and the bag holds it all."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from rosbags.highlevel import AnyReader

pytestmark = [pytest.mark.graph, pytest.mark.slow]  # a whole demo run

REQUIRED_TOPICS = {"/camera/color/image_raw", "/camera/depth/image_raw", "/camera/points", "/camera/color/camera_info",
                   "/hamster/path", "/hamster/masks", "/robot/cartesian_target", "/robot/gripper_command",
                   "/robot/ee_pose", "/hamster/instruction"}


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    env = dict(os.environ, ROS_DOMAIN_ID=str(150 + os.getpid() % 50))
    process = subprocess.run([sys.executable, "-m", "hamster_apps.demo", "--seed", "1", "--out", str(out),
                              "--timeout", "120"], env=env, capture_output=True, text=True, timeout=400)
    lines = process.stdout.strip().splitlines()
    assert lines, f"demo printed nothing; stderr:\n{process.stderr[-3000:]}"
    return json.loads(lines[-1]), process


def test_episode_puts_the_object_in_the_container(demo_run):
    result, process = demo_run
    assert result["success"], json.dumps(result, indent=1)
    assert process.returncode == 0
    assert result["policy_success"] and result["episode_seconds"] > 0


def test_bag_holds_inputs_path_masks_and_commands(demo_run):
    from hamster_bag.recorder import project_typestore
    result, _ = demo_run
    with AnyReader([Path(result["bag"])], default_typestore=project_typestore()) as reader:
        counts = {c.topic: c.msgcount for c in reader.connections}
        assert REQUIRED_TOPICS <= {t for t, n in counts.items() if n > 0}, counts
        path_connection = next(c for c in reader.connections if c.topic == "/hamster/path")
        _, _, raw = next(reader.messages(connections=[path_connection]))
        path = reader.deserialize(raw, path_connection.msgtype)
        assert path.instruction == result["instruction"]
        assert len(path.x) == len(path.y) == len(path.gripper) >= 3
        assert 1 in path.gripper.tolist() and path.raw_answer.startswith("<ans>")
        # Every commanded target stayed inside the simulator's workspace box (config/sim.yaml).
        target_connection = next(c for c in reader.connections if c.topic == "/robot/cartesian_target")
        positions = np.array([[m.pose.position.x, m.pose.position.y, m.pose.position.z]
                              for m in (reader.deserialize(raw, target_connection.msgtype)
                                        for _, _, raw in reader.messages(connections=[target_connection]))])
        assert len(positions) > 100
        assert np.all(positions >= [0.20, -0.45, 0.02]) and np.all(positions <= [0.80, 0.45, 0.60])


def test_overlay_image_was_saved(demo_run):
    import cv2
    result, _ = demo_run
    image = cv2.imread(result["overlay"])
    assert image is not None and image.shape == (240, 320, 3)


def test_every_process_was_stopped(demo_run):
    result, _ = demo_run
    assert len(result["pids"]) == 4
    for pid in result["pids"].values():
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_frame_to_command_latency_is_wall_clock_and_covers_its_parts(demo_run):
    """Issue 21: measured on simulated time it came out 0.0 while a plan took ~6.5 ms to compute. On the wall clock
    it spans the cloud's publication -> the first target, so it holds the transport, the wait and the compute."""
    result, _ = demo_run
    plans = list(zip(result["frame_to_command_ms"], result["frame_transport_ms"], result["frame_age_at_plan_ms"],
                     result["plan_compute_ms"]))
    assert plans and all(value is not None for plan in plans for value in plan), result
    for total, transport, age, compute in plans:
        assert total > 0 and transport >= 0 and age >= 0 and compute > 0, plans
        assert total >= transport + age + compute - 0.1, plans   # (each part is rounded)
