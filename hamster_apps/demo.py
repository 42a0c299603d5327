"""One seeded episode end to end: the simulator and the three runtime nodes as separate processes over DDS
(this machine only), the episode recorded as a rosbag2, the path overlay saved. Prints one JSON line last.
`--robot franka` runs the franka_ros2 adapter and camera_cloud against the simulator's franka interface
(FrankaRobotState, target pose, franka_gripper actions) and enables the stream before the episode.

    hamster-demo [--seed N] [--out DIR] [--timeout SEC] [graph options as for hamster-run]

Exit code 0: the episode ran and the simulator found the task done. 1: it did not (the policy failed, the
success check said no, a node died, something timed out, or Ctrl-C): the reason is printed on stderr before the
JSON line, and the node logs are in <out>/episode-*/logs. 2: bad command-line options.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

RECORD_SENSOR_HZ = 2.0  # images and clouds are thinned to this rate in the bag; everything else is kept
EXIT_SUCCESS, EXIT_FAILED = 0, 1   # and 2, argparse's, for bad options


def _recorded_topics(sensor_hz: float | None):
    from geometry_msgs.msg import PoseStamped
    from rosgraph_msgs.msg import Clock
    from sensor_msgs.msg import CameraInfo, Image, JointState, PointCloud2
    from std_msgs.msg import String
    from visualization_msgs.msg import MarkerArray

    from hamster_msgs.msg import GripperCommand, GroundingMasks, Path2D
    from hamster_ros import interfaces as t
    from hamster_bag.recorder import RecordedTopic

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
        RecordedTopic(t.MASKS_IMAGE, Image, t.SENSOR, sensor_hz),
        RecordedTopic(t.MARKERS, MarkerArray, t.LATCHED),
        RecordedTopic(t.SIM_SCENE, String, t.LATCHED),
        RecordedTopic(t.EXECUTOR_STATUS, String, t.EVENTS),
        RecordedTopic(t.ROBOT_STATUS, String, t.LATCHED),
        RecordedTopic(t.GRIPPER_RESULT, String, t.EVENTS),
        RecordedTopic("/clock", Clock, t.SENSOR, 100.0),
    ]


HEAR_TIMEOUT_SEC = 15.0   # for the simulator's /clock, once its services are visible
LINK_ATTEMPTS = 3


class DemoLink:
    """The demo's own ROS participant: a node in its own context, spun on a thread, counting the simulator's /clock.

    Fast DDS sometimes starts a participant that discovers the graph and sends, but never receives its data (a
    fresh-clone test: the simulator logged three scene resets, the demo heard no reply and recorded nothing). So
    `hears_graph` checks that data arrives, and `run_demo` starts another participant when none does."""

    def __init__(self):
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.node import Node
        from rosgraph_msgs.msg import Clock

        from hamster_ros import interfaces as t
        from hamster_ros.spinner import BackgroundSpinner
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = Node("hamster_demo", context=self.context)
        self.clock_messages = 0
        self.node.create_subscription(Clock, "/clock", self._count_clock, t.SENSOR)
        # One thread: every callback here only records or hands a result over (far less CPU per message than the
        # multi-threaded executor, bench/bench_executor.py), so the stream is received as it was sent.
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.spinner = BackgroundSpinner(self.executor)

    def _count_clock(self, msg) -> None:
        self.clock_messages += 1

    def hears_graph(self, timeout: float, check_alive) -> bool:
        from hamster_apps.episode_client import within
        return within(lambda: self.clock_messages > 0, timeout, check_alive)

    def close(self) -> None:
        self.spinner.stop()
        self.node.destroy_node()
        self.context.try_shutdown()


def open_link(startup_timeout: float, check_alive, make_client):
    """A DemoLink that receives the graph's data, its EpisodeClient (`make_client(node)`) and the deaf links to close
    at the end, once the simulator and the policy node are up. A deaf participant stays open meanwhile, so the next
    one takes another shared-memory port."""
    from hamster_apps.episode_client import EpisodeError
    links = []
    try:
        for attempt in range(1, LINK_ATTEMPTS + 1):
            link = DemoLink()
            links.append(link)
            client = make_client(link.node)
            client.wait_until_ready(startup_timeout)
            if link.hears_graph(HEAR_TIMEOUT_SEC, check_alive):
                return link, client, links[:-1]
            print(f"the demo's ROS participant received no /clock in {HEAR_TIMEOUT_SEC:g} s though the graph is up "
                  f"(attempt {attempt} of {LINK_ATTEMPTS}): starting another one", file=sys.stderr)
        raise EpisodeError(f"the demo received no data from the graph with {LINK_ATTEMPTS} ROS participants "
                           f"({HEAR_TIMEOUT_SEC:g} s each): is DDS shared memory (/dev/shm) full or broken?")
    except BaseException:
        for link in links:
            link.close()
        raise


def run_demo(args) -> dict:
    from hamster_apps.runner import GraphRunner, graph_from_arguments, ros_environment, stop_on_signals
    from hamster_franka.franka_standin import StandinError, franka_environment

    stop_on_signals()

    env = ros_environment(args.domain_id)
    if args.robot == "franka":
        try:
            env = franka_environment(env, "hamster-demo")
        except StandinError as error:  # the build log's tail is in the message
            return {"success": False, "seed": args.seed, "error": str(error)}
    os.environ.update({k: env[k] for k in ("ROS_AUTOMATIC_DISCOVERY_RANGE", "FASTDDS_DEFAULT_PROFILES_FILE",
                                           "ROS_DOMAIN_ID")})
    from sensor_msgs.msg import Image

    from hamster_msgs.msg import Path2D
    from hamster_ros import interfaces as t
    from hamster_ros.conversions import image_to_rgb
    from hamster_bag.bag_stats import episode_timing
    from hamster_apps.episode_client import EpisodeClient, EpisodeError, enable_robot
    from hamster_bag.recorder import BagRecorder, episode_metadata

    specs = graph_from_arguments(args)
    if getattr(args, "sim_vlm_server", False):  # HAMSTER's server stand-in, where openai.* says it is
        from hamster_apps.graph import sim_vlm_server_spec
        specs.append(sim_vlm_server_spec(next(s for s in specs if s.name == "hamster_vlm_node").parameter_files))
    out = new_episode_folder(Path(args.out))
    started = time.monotonic()
    result = {"success": False, "seed": args.seed, "domain_id": int(env["ROS_DOMAIN_ID"])}

    runner = GraphRunner(specs, out / "logs", env)
    link, deaf_links = None, []
    recorder = None
    overlay = {}
    try:
        runner.start()

        def check_alive():
            if runner.exited():
                name, code = next(iter(runner.exited().items()))
                raise EpisodeError(f"{name} exited with {code}:\n{runner.log_tail(name)}")

        link, client, deaf_links = open_link(args.startup_timeout, check_alive,
                                             lambda node: EpisodeClient(node, check_alive))
        node = link.node
        node.create_subscription(Image, t.PATH_IMAGE, lambda msg: overlay.update(image=msg), t.LATCHED)
        node.create_subscription(Path2D, t.PATH, lambda msg: overlay.update(model_id=msg.model_id), t.LATCHED)
        if args.robot == "franka":
            result["enable"] = enable_robot(node, args.startup_timeout, check_alive)
        recorded = _recorded_topics(args.record_sensor_hz)
        if args.robot == "franka":  # the camera and joint topics under the robot PC's names (franka_remappings.yaml)
            import dataclasses
            remaps = dict(next(s for s in specs if s.name == "policy_node").remappings)
            recorded = [dataclasses.replace(r, name=remaps.get(r.name, r.name)) for r in recorded]
        recorder = BagRecorder(node, out / "bag", recorded, storage=args.bag_storage,
                               metadata=episode_metadata(
                                   command="hamster-demo", seed=args.seed, policy=args.policy,
                                   vlm_backend=args.vlm_backend, perception_backend=args.perception_backend,
                                   robot=args.robot, record_sensor_hz=args.record_sensor_hz,
                                   timeout_sec=args.timeout, parameter_files=[str(p) for s in specs
                                                                              for p in s.parameter_files]))
        result.update(client.episode(args.seed, args.timeout, args.settle))
        recorder.add_metadata(instruction=result["instruction"])
    except EpisodeError as error:
        result["error"] = str(error)
    except KeyboardInterrupt:
        result["error"] = "interrupted"
    finally:
        if recorder is not None:
            recorder.add_metadata(vlm_model_id=overlay.get("model_id", ""),
                                  **{k: result[k] for k in ("success", "policy_message", "episode_seconds")
                                     if k in result})
            recorder.close()
            result["bag"] = str(recorder.path)
            result["bag_messages"] = recorder.counts
            if recorder.error:
                result["bag_error"] = recorder.error
            result.update(episode_timing(recorder.path))
        if "image" in overlay:
            import cv2
            path = out / "path_overlay.png"
            cv2.imwrite(str(path), cv2.cvtColor(image_to_rgb(overlay["image"]), cv2.COLOR_RGB2BGR))
            result["overlay"] = str(path)
        for demo_link in ([link] if link is not None else []) + deaf_links:
            demo_link.close()
        runner.stop()
        result["pids"] = {name: process.pid for name, process in runner.processes.items()}
        result["logs"] = str(out / "logs")
        result["demo_seconds"] = round(time.monotonic() - started, 2)
    return result


def new_episode_folder(root: Path) -> Path:
    """root/episode-<date>-<time>, created; demos started in the same second (two at once, from one working
    directory) get -2, -3, ... instead of failing on the other's folder."""
    root.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("episode-%Y%m%d-%H%M%S")
    for n in range(1, 1000):
        folder = root / (stamp if n == 1 else f"{stamp}-{n}")
        try:
            folder.mkdir()
            return folder
        except FileExistsError:
            continue
    raise FileExistsError(f"{root}: no free folder name for {stamp}")


def main(argv=None) -> int:
    from hamster_apps.runner import add_graph_arguments

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_graph_arguments(parser)
    parser.add_argument("--out", type=Path, default=Path("runs"), help="folder for the episode's outputs")
    parser.add_argument("--timeout", type=float, default=120.0, help="episode time limit (s)")
    parser.add_argument("--startup-timeout", type=float, default=60.0)
    parser.add_argument("--settle", type=float, default=1.0, help="wait before the success check (s)")
    parser.add_argument("--record-sensor-hz", type=float, default=RECORD_SENSOR_HZ,
                        help="rate of images and clouds in the bag; 0 keeps every frame")
    parser.add_argument("--bag-storage", choices=("mcap", "sqlite3"), default="mcap",
                        help="rosbag2 storage of the recorded episode")
    parser.add_argument("--domain-id", type=int, default=None, help="ROS_DOMAIN_ID (default: from the pid)")
    parser.add_argument("--sim-vlm-server", action="store_true",
                        help="also start an OpenAI-compatible server answering with the simulator's oracle path, "
                             "at the VLM node's openai.base_url (use with --vlm-backend openai)")
    args = parser.parse_args(argv)
    if args.record_sensor_hz == 0:
        args.record_sensor_hz = None
    if args.robot == "franka":  # the demo always runs the simulator: here, behind its franka interface
        args.franka_sim = True
    from hamster_apps.runner import random_weights_warning
    if random_weights_warning(args):
        print(f"hamster-demo: {random_weights_warning(args)}", file=sys.stderr, flush=True)
    try:
        result = run_demo(args)
    except ValueError as error:  # bad graph options
        parser.error(str(error))
    from hamster_apps.episode_client import failure_reason  # rclpy: not imported for --help or bad options
    reason = failure_reason(result)
    if reason:  # the JSON stays the last line; the reason is what a person reads first
        logs = f"\n(node logs: {result['logs']})" if "logs" in result else ""
        print(f"hamster-demo: FAILED: {reason}{logs}", file=sys.stderr, flush=True)
    print(json.dumps(result), flush=True)
    return EXIT_SUCCESS if result["success"] else EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
