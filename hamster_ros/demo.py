"""One seeded episode end to end: the simulator and the three runtime nodes as separate processes over DDS
(this machine only), the episode recorded as a rosbag2, the path overlay saved. Prints one JSON line last.

    hamster-demo [--seed N] [--out DIR] [--timeout SEC] [graph options as for hamster-run]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path

RECORD_SENSOR_HZ = 2.0  # images and clouds are thinned to this rate in the bag; everything else is kept


def _recorded_topics(sensor_hz: float | None):
    from geometry_msgs.msg import PoseStamped
    from rosgraph_msgs.msg import Clock
    from sensor_msgs.msg import CameraInfo, Image, JointState, PointCloud2
    from std_msgs.msg import String

    from hamster_msgs.msg import GripperCommand, GroundingMasks, Path2D
    from hamster_ros import interfaces as t
    from hamster_ros.recorder import RecordedTopic

    return [
        RecordedTopic(t.COLOR_IMAGE, Image, t.SENSOR, sensor_hz),
        RecordedTopic(t.DEPTH_IMAGE, Image, t.SENSOR, sensor_hz),
        RecordedTopic(t.SEGMENTATION, Image, t.SENSOR, sensor_hz),
        RecordedTopic(t.COLOR_INFO, CameraInfo, t.SENSOR, sensor_hz),
        RecordedTopic(t.POINTS, PointCloud2, t.SENSOR, sensor_hz),
        RecordedTopic(t.CAMERA_POSE, PoseStamped, t.LATCHED),
        RecordedTopic(t.JOINT_STATES, JointState, t.SENSOR),
        RecordedTopic(t.EE_POSE, PoseStamped, t.SENSOR),
        RecordedTopic(t.CARTESIAN_TARGET, PoseStamped, t.COMMAND),
        RecordedTopic(t.GRIPPER_COMMAND, GripperCommand, t.EVENTS),
        RecordedTopic(t.INSTRUCTION, String, t.LATCHED),
        RecordedTopic(t.PATH, Path2D, t.LATCHED),
        RecordedTopic(t.PATH_IMAGE, Image, t.LATCHED),
        RecordedTopic(t.MASKS, GroundingMasks, t.SENSOR, sensor_hz),
        RecordedTopic(t.SIM_SCENE, String, t.LATCHED),
        RecordedTopic(t.EXECUTOR_STATUS, String, t.EVENTS),
        RecordedTopic("/clock", Clock, t.SENSOR, 100.0),
    ]


class DemoError(RuntimeError):
    pass


def run_demo(args) -> dict:
    from hamster_ros.runner import GraphRunner, graph_from_arguments, ros_environment, stop_on_signals

    stop_on_signals()

    env = ros_environment(args.domain_id)
    os.environ.update({k: env[k] for k in ("ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_DOMAIN_ID")})
    import rclpy
    from rclpy.action import ActionClient
    from rclpy.executors import MultiThreadedExecutor
    from rclpy.node import Node
    from sensor_msgs.msg import Image
    from std_srvs.srv import Trigger

    from hamster_msgs.action import RunEpisode
    from hamster_msgs.srv import ResetScene
    from hamster_ros import interfaces as t
    from hamster_ros.conversions import image_to_rgb
    from hamster_ros.bag_stats import episode_timing
    from hamster_ros.recorder import BagRecorder

    specs = graph_from_arguments(args)
    out = Path(args.out) / time.strftime("episode-%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=False)
    started = time.monotonic()
    result = {"success": False, "seed": args.seed, "domain_id": int(env["ROS_DOMAIN_ID"])}

    runner = GraphRunner(specs, out / "logs", env)
    rclpy.init()
    node = Node("hamster_demo")
    executor = MultiThreadedExecutor(num_threads=2)
    executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    recorder = None
    overlay = {}
    try:
        runner.start()

        def check_alive():
            if runner.exited():
                name, code = next(iter(runner.exited().items()))
                raise DemoError(f"{name} exited with {code}:\n{runner.log_tail(name)}")

        def wait_for(ready, what: str, timeout: float):
            deadline = time.monotonic() + timeout
            while not ready():
                check_alive()
                if time.monotonic() > deadline:
                    raise DemoError(f"timed out after {timeout:.0f} s waiting for {what}")
                time.sleep(0.1)

        reset = node.create_client(ResetScene, t.SIM_RESET)
        check = node.create_client(Trigger, t.SIM_CHECK_SUCCESS)
        episode = ActionClient(node, RunEpisode, t.RUN_EPISODE)
        node.create_subscription(Image, t.PATH_IMAGE, lambda msg: overlay.update(image=msg), t.LATCHED)
        wait_for(lambda: reset.service_is_ready() and check.service_is_ready() and episode.server_is_ready(),
                 "the simulator and the policy node", args.startup_timeout)

        def call(future, what: str, timeout: float):
            wait_for(future.done, what, timeout)
            return future.result()

        bag = out / "bag"
        recorder = BagRecorder(node, bag, _recorded_topics(args.record_sensor_hz),
                               metadata={"seed": args.seed, "policy": args.policy,
                                         "vlm_backend": args.vlm_backend,
                                         "perception_backend": args.perception_backend})
        scene = call(reset.call_async(ResetScene.Request(seed=args.seed)), "the scene reset", 30)
        if not scene.success:
            raise DemoError(f"scene reset failed: {scene.message}")
        result["instruction"] = scene.instruction
        episode_started = time.monotonic()
        goal = call(episode.send_goal_async(RunEpisode.Goal(instruction=scene.instruction,
                                                            timeout_sec=float(args.timeout))),
                    "the episode to be accepted", 30)
        if not goal.accepted:
            raise DemoError("the policy node rejected the episode")
        outcome = call(goal.get_result_async(), "the episode", args.timeout + 30).result
        result.update(episode_seconds=round(time.monotonic() - episode_started, 2),
                      policy_success=outcome.success, policy_message=outcome.message)
        time.sleep(args.settle)  # let the released object come to rest before judging
        verdict = call(check.call_async(Trigger.Request()), "the success check", 30)
        result.update(success=bool(verdict.success and outcome.success), check=verdict.message)
    except DemoError as error:
        result["error"] = str(error)
    except KeyboardInterrupt:
        result["error"] = "interrupted"
    finally:
        if recorder is not None:
            recorder.close()
            result["bag"] = str(recorder.path)
            result["bag_messages"] = recorder.counts
            result.update(episode_timing(recorder.path))
        if "image" in overlay:
            import cv2
            path = out / "path_overlay.png"
            cv2.imwrite(str(path), cv2.cvtColor(image_to_rgb(overlay["image"]), cv2.COLOR_RGB2BGR))
            result["overlay"] = str(path)
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
        runner.stop()
        result["pids"] = {name: process.pid for name, process in runner.processes.items()}
        result["logs"] = str(out / "logs")
        result["demo_seconds"] = round(time.monotonic() - started, 2)
    return result


def main(argv=None) -> int:
    from hamster_ros.runner import add_graph_arguments

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_graph_arguments(parser)
    parser.add_argument("--out", type=Path, default=Path("runs"), help="folder for the episode's outputs")
    parser.add_argument("--timeout", type=float, default=120.0, help="episode time limit (s)")
    parser.add_argument("--startup-timeout", type=float, default=60.0)
    parser.add_argument("--settle", type=float, default=1.0, help="wait before the success check (s)")
    parser.add_argument("--record-sensor-hz", type=float, default=RECORD_SENSOR_HZ,
                        help="rate of images and clouds in the bag; 0 keeps every frame")
    parser.add_argument("--domain-id", type=int, default=None, help="ROS_DOMAIN_ID (default: from the pid)")
    args = parser.parse_args(argv)
    if args.record_sensor_hz == 0:
        args.record_sensor_hz = None
    if args.robot != "sim":
        parser.error("the demo runs in the simulator (--robot sim)")
    try:
        result = run_demo(args)
    except ValueError as error:  # bad graph options
        parser.error(str(error))
    print(json.dumps(result), flush=True)
    return 0 if result["success"] else 1


if __name__ == "__main__":
    sys.exit(main())
