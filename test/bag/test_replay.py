"""hamster-replay publishes a bag's messages in order with /clock; hamster-replay-eval evaluates a demo bag and
a real-robot (RealSense + franka_ros2 names, sqlite3) bag through the mapping file."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from rosbags.rosbag2 import StoragePlugin, Writer

from hamster_bag.recorder import project_typestore

ROOT = Path(__file__).resolve().parents[2]
MAPPING = ROOT / "config" / "bag_topics_realsense_franka.yaml"


def _env():
    return dict(os.environ)  # the session's ROS domain (conftest), shared with the collector node


def _write_small_bag(path: Path) -> list[tuple[str, int, bytes]]:
    """2 s of a 50 Hz pose stream, a 5 Hz status and one latched instruction, written with rosbags."""
    store = project_typestore()
    Pose, PoseStamped, Header, Time, Point, Quaternion, String = (store.types[n] for n in (
        "geometry_msgs/msg/Pose", "geometry_msgs/msg/PoseStamped", "std_msgs/msg/Header", "builtin_interfaces/msg/Time",
        "geometry_msgs/msg/Point", "geometry_msgs/msg/Quaternion", "std_msgs/msg/String"))
    written = []
    start = 1_000_000_000_000
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        poses = writer.add_connection("/robot/ee_pose", "geometry_msgs/msg/PoseStamped", typestore=store)
        status = writer.add_connection("/hamster/executor_status", "std_msgs/msg/String", typestore=store)
        instruction = writer.add_connection("/hamster/instruction", "std_msgs/msg/String", typestore=store)
        events = [(start, instruction, String(data="pick up the red cube"))]
        for i in range(100):
            stamp = start + 5_000_000 + i * 20_000_000
            events.append((stamp, poses, PoseStamped(
                header=Header(stamp=Time(sec=stamp // 10**9, nanosec=stamp % 10**9), frame_id="base"),
                pose=Pose(position=Point(x=0.5, y=0.001 * i, z=0.3), orientation=Quaternion(x=1.0, y=0.0, z=0.0, w=0.0)))))
            if i % 10 == 0:
                events.append((stamp + 1_000_000, status, String(data=json.dumps({"i": i}))))
        for stamp, connection, msg in sorted(events, key=lambda e: e[0]):
            raw = bytes(store.serialize_cdr(msg, connection.msgtype))
            writer.write(connection, stamp, raw)
            written.append((connection.topic, stamp, raw))
    return written


class Collector:
    """A subscriber node that keeps every raw message and /clock value with its receive time."""

    def __init__(self, topics):
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.node import Node
        from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
        from rosgraph_msgs.msg import Clock

        from hamster_bag.replay import message_class
        from hamster_ros.spinner import BackgroundSpinner
        rclpy.init()
        self.node = Node("replay_collector")
        self.received, self.clock = [], []
        deep = QoSProfile(history=HistoryPolicy.KEEP_ALL, reliability=ReliabilityPolicy.RELIABLE)
        for topic, msgtype in topics.items():
            qos = deep
            if topic == "/hamster/instruction":
                qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE,
                                 durability=DurabilityPolicy.TRANSIENT_LOCAL)
            self.node.create_subscription(message_class(msgtype), topic,
                                          lambda raw, topic=topic: self.received.append((topic, raw)), qos, raw=True)
        self.node.create_subscription(Clock, "/clock", lambda msg: self.clock.append(
            (time.monotonic(), msg.clock.sec * 10**9 + msg.clock.nanosec)), deep)
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self.spinner = BackgroundSpinner(self.executor)

    def close(self):
        import rclpy
        assert self.spinner.stop(), "the spin thread did not stop"
        self.node.destroy_node()
        rclpy.try_shutdown()


def _replay(bag, *args):
    return subprocess.run([sys.executable, "-m", "hamster_bag.replay", str(bag), *args], env=_env(),
                          capture_output=True, text=True, timeout=120)


@pytest.mark.graph
def test_replay_publishes_every_message_in_order_with_clock(tmp_path):
    bag = tmp_path / "bag"
    written = _write_small_bag(bag)
    collector = Collector({"/robot/ee_pose": "geometry_msgs/msg/PoseStamped",
                           "/hamster/executor_status": "std_msgs/msg/String",
                           "/hamster/instruction": "std_msgs/msg/String"})
    try:
        paced = _replay(bag, "--paced")
        assert paced.returncode == 0, paced.stderr
        summary = json.loads(paced.stdout.strip().splitlines()[-1])
        time.sleep(0.5)
        from collections import Counter
        print("received", Counter(t for t, _ in collector.received))
        for topic in ("/robot/ee_pose", "/hamster/executor_status", "/hamster/instruction"):
            got = [raw for t, raw in collector.received if t == topic]
            sent = [raw for t, _, raw in written if t == topic]
            assert len(got) == len(sent), topic
            # The same CDR bytes; the middleware pads the serialized payload to a 4-byte boundary.
            assert all(g[:len(s)] == s and not g[len(s):].strip(b"\0") for g, s in zip(got, sent)), topic
        clock_values = [value for _, value in collector.clock]
        assert clock_values == sorted(clock_values)
        assert {stamp for _, stamp, _ in written} <= set(clock_values)  # paced: /clock set to every message's time
        print(f"paced: {summary}")

        collector.received.clear()
        collector.clock.clear()
        timed = _replay(bag, "--rate", "2")
        assert timed.returncode == 0, timed.stderr
        summary = json.loads(timed.stdout.strip().splitlines()[-1])
        time.sleep(0.3)
        wall = np.array([w for w, _ in collector.clock])
        bag_time = np.array([c for _, c in collector.clock]) * 1e-9
        slope, intercept = np.polyfit(wall - wall[0], bag_time - bag_time[0], 1)
        error_ms = np.abs((bag_time - bag_time[0]) - (slope * (wall - wall[0]) + intercept)).max() * 1e3
        print(f"rate 2: achieved {summary['achieved_rate']} (bag s / wall s), /clock slope {slope:.3f}, "
              f"{len(wall)} clock messages, max deviation from the fitted line {error_ms:.1f} ms, "
              f"{sum(1 for t, _ in collector.received if t == '/robot/ee_pose')}/100 poses received")
        assert summary["published"] == len(written)
    finally:
        collector.close()


def test_replay_names_bad_input(tmp_path, capsys):
    # hamster-replay's main in this process: bad input is refused before any node starts.
    from hamster_bag.replay import ReplayError, main, message_class
    bag = tmp_path / "bag"
    _write_small_bag(bag)
    assert main([str(bag), "--topics", "/nope"]) == 2 and "/nope" in capsys.readouterr().err
    assert main([str(tmp_path / "absent")]) == 2
    with pytest.raises(ReplayError, match="foo_msgs/msg/Bar"):
        message_class("foo_msgs/msg/Bar")
    capsys.readouterr()
    assert main([str(bag), "--rate", "-1"]) == 2 and "-1" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------------------
# replay-eval

def _eval(out, *args):
    """hamster-replay-eval's main in this process (it starts no node), with the command's exit code and output."""
    import contextlib
    import io
    from types import SimpleNamespace

    from hamster_bag.replay_eval import main
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        try:
            code = main([*map(str, args), "--out", str(out)])
        except SystemExit as exit_:   # argparse refusing the arguments
            code = exit_.code
    return SimpleNamespace(returncode=code, stdout=stdout.getvalue(), stderr=stderr.getvalue())


@pytest.fixture(scope="module")
def demo_bag(tmp_path_factory):
    """One short recorded demo episode."""
    out = tmp_path_factory.mktemp("demo")
    process = subprocess.run([sys.executable, "-m", "hamster_apps.demo", "--seed", "2", "--out", str(out),
                              "--bag-storage", "mcap"], env=_env(),
                             capture_output=True, text=True, timeout=400)
    result = json.loads(process.stdout.strip().splitlines()[-1])
    assert result.get("bag"), process.stderr[-3000:]
    return Path(result["bag"]), result


@pytest.mark.graph
@pytest.mark.slow  # the demo_bag fixture runs the demo
def test_demo_bag_has_metadata_and_qos(demo_bag):
    from hamster_bag.bag_episode import EpisodeBag, load_episode
    bag, result = demo_bag
    assert (bag / "bag.mcap").exists()
    with EpisodeBag(bag) as episode_bag:
        episode = load_episode(episode_bag)
        assert episode_bag.custom_data["policy"] == "path_follower"
        latched = next(c for c in episode_bag.reader.connections if c.topic == "/hamster/path")
        assert latched.ext.offered_qos_profiles[0].durability.name == "TRANSIENT_LOCAL"
    assert episode.metadata["instruction"] == result["instruction"]
    assert episode.metadata["package_version"] and episode.metadata["vlm_model_id"].startswith("oracle")


@pytest.mark.graph
@pytest.mark.slow  # the demo_bag fixture runs the demo
def test_replay_eval_on_a_demo_bag(demo_bag, tmp_path):
    bag, _ = demo_bag
    process = _eval(tmp_path, bag, "--vlm-backend", "oracle")
    assert process.returncode == 0, process.stderr[-3000:]
    report = json.loads((tmp_path / "report.json").read_text())[0]
    path, policy, masks = report["path"], report["policy"], report["masks"]
    print(json.dumps({k: report[k] for k in ("path", "masks", "timing")}, indent=1))
    assert path["source"].startswith("vlm:oracle") and path["gripper_same_sequence"]
    assert path["frechet"] < 0.15 and path["start_error"] < 0.05
    assert policy["gripper_same_sequence"] and policy["grasp_translation_error"] < 0.03
    assert masks.get("iou_target_object", 1.0) > 0.9 or "skipped" in masks
    assert report["timing"]["path_latency_ms"] > 0
    markdown = (tmp_path / "report.md").read_text()
    assert "| bag |" in markdown and "paths.png" in markdown
    assert Path(report["figures"]["paths"]).stat().st_size > 1000


# A hand-eye result for the synthetic bag below, which has no /tf_static: given explicitly in a mapping file.
LAB_CAMERA_POSE = {"position": [1.35, 0.0, 0.95], "orientation": [-0.6571, -0.6571, 0.2612, 0.2612]}


def _mapping_with_camera_pose(folder: Path) -> Path:
    mapping = yaml.safe_load(MAPPING.read_text())
    mapping["camera_pose"] = LAB_CAMERA_POSE
    del mapping["topics"]["/camera/camera/aligned_depth_to_color/image_raw"]   # this bag has no depth image
    path = folder / "mapping.yaml"
    path.write_text(yaml.safe_dump(mapping))
    return path


def _write_realsense_bag(path: Path, with_pose: bool = True) -> None:
    """A synthetic real-robot recording: RealSense and franka_ros2 topic names, standard types, sqlite3. A red
    box on a table, seen by the camera of the mapping file; the arm goes down to it, closes, lifts, moves, opens."""

    from hamster_core.camera import PinholeCamera
    from hamster_core.geometry import Pose as CorePose
    store = project_typestore()
    T = store.types
    pose = CorePose(LAB_CAMERA_POSE["position"], LAB_CAMERA_POSE["orientation"])
    camera = PinholeCamera(160, 120, 145.0, 145.0, 80.0, 60.0, pose.matrix())
    xs, ys = np.meshgrid(np.linspace(0.25, 0.75, 120), np.linspace(-0.35, 0.35, 160))
    table = np.stack([xs.ravel(), ys.ravel(), np.zeros(xs.size)], axis=1)
    box = (np.abs(table[:, 0] - 0.5) < 0.02) & (np.abs(table[:, 1]) < 0.02)
    table[box, 2] = 0.04
    in_camera = (table - pose.position) @ pose.matrix()[:3, :3]  # optical frame, as the driver publishes it
    rgb = np.full((120, 160, 3), 120, np.uint8)

    def stamp_of(ns):
        return T["builtin_interfaces/msg/Time"](sec=ns // 10**9, nanosec=ns % 10**9)

    def header(ns, frame):
        return T["std_msgs/msg/Header"](stamp=stamp_of(ns), frame_id=frame)

    start = 1_700_000_000 * 10**9
    with Writer(path, version=9, storage_plugin=StoragePlugin.SQLITE3) as writer:
        c = {name: writer.add_connection(name, msgtype, typestore=store) for name, msgtype in (
            ("/camera/camera/color/image_raw", "sensor_msgs/msg/Image"),
            ("/camera/camera/color/camera_info", "sensor_msgs/msg/CameraInfo"),
            ("/camera/camera/depth/color/points", "sensor_msgs/msg/PointCloud2"),
            ("/joint_states", "sensor_msgs/msg/JointState"),
            *((("/franka_robot_state_broadcaster/current_pose", "geometry_msgs/msg/PoseStamped"),) if with_pose else ()))}
        frame = "camera_color_optical_frame"
        fields = [T["sensor_msgs/msg/PointField"](name=n, offset=4 * i, datatype=7, count=1) for i, n in enumerate("xyz")]
        cloud = T["sensor_msgs/msg/PointCloud2"](header=header(start, frame), height=1, width=len(in_camera), fields=fields,
                                                 is_bigendian=False, point_step=12, row_step=12 * len(in_camera),
                                                 data=in_camera.astype(np.float32).view(np.uint8).ravel(), is_dense=True)
        info = T["sensor_msgs/msg/CameraInfo"](
            header=header(start, frame), height=120, width=160, distortion_model="plumb_bob",
            d=np.array([0.01, 0, 0, 0, 0], float), k=camera.K.ravel(), r=np.eye(3).ravel(),
            p=np.hstack([camera.K, np.zeros((3, 1))]).ravel(), binning_x=0, binning_y=0,
            roi=T["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False))
        image = T["sensor_msgs/msg/Image"](header=header(start, frame), height=120, width=160, encoding="rgb8",
                                           is_bigendian=0, step=480, data=rgb.ravel())
        for connection, msg in ((c["/camera/camera/color/camera_info"], info),
                                (c["/camera/camera/color/image_raw"], image),
                                (c["/camera/camera/depth/color/points"], cloud)):
            writer.write(connection, start, bytes(store.serialize_cdr(msg, connection.msgtype)))
        # Waypoints (position, width) at 1 s each, 100 Hz in between, a 0.5 s rest at every waypoint.
        waypoints = [([0.5, 0.0, 0.3], 0.08), ([0.5, 0.0, 0.03], 0.08), ([0.5, 0.0, 0.03], 0.04),
                     ([0.5, 0.0, 0.2], 0.04), ([0.4, 0.2, 0.2], 0.04), ([0.4, 0.2, 0.1], 0.04),
                     ([0.4, 0.2, 0.1], 0.08)]  # placed 10 cm above the table, as the path follower releases
        ns = start + 10_000_000
        for (a, _), (b, width) in zip(waypoints[:-1], waypoints[1:]):
            for s in list(np.linspace(0, 1, 100)) + [1.0] * 50:
                position = np.array(a) + s * (np.array(b) - np.array(a))
                if with_pose:
                    msg = T["geometry_msgs/msg/PoseStamped"](header=header(ns, "fr3_link0"), pose=T["geometry_msgs/msg/Pose"](
                        position=T["geometry_msgs/msg/Point"](x=position[0], y=position[1], z=position[2]),
                        orientation=T["geometry_msgs/msg/Quaternion"](x=1.0, y=0.0, z=0.0, w=0.0)))
                    writer.write(c["/franka_robot_state_broadcaster/current_pose"], ns,
                                 bytes(store.serialize_cdr(msg, "geometry_msgs/msg/PoseStamped")))
                joints = T["sensor_msgs/msg/JointState"](header=header(ns, ""), name=["fr3_finger_joint1", "fr3_finger_joint2"],
                                                         position=np.array([width / 2] * 2), velocity=np.zeros(0),
                                                         effort=np.zeros(0))
                writer.write(c["/joint_states"], ns, bytes(store.serialize_cdr(joints, "sensor_msgs/msg/JointState")))
                ns += 10_000_000


def test_replay_eval_on_a_real_robot_sqlite3_bag_with_the_mapping_file(tmp_path):
    bag = tmp_path / "robot_bag"
    _write_realsense_bag(bag)
    process = _eval(tmp_path / "out", bag, "--mapping", _mapping_with_camera_pose(tmp_path))
    assert process.returncode == 0, process.stderr[-3000:]
    report = json.loads((tmp_path / "out" / "report.json").read_text())[0]
    print(json.dumps({k: v for k, v in report["policy"].items() if k not in ("predicted", "reference")}, indent=1))
    assert report["camera_pose_source"] == "mapping"
    assert report["gripper_source"] == "joint widths (fr3_finger_joint1, fr3_finger_joint2)"
    assert "skipped" in report["path"] and "skipped" in report["masks"]
    policy = report["policy"]
    assert policy["path_input"].startswith("oracle") and policy["gripper_same_sequence"]
    # The path follower grasps the box top (z 0.04 - grasp depth) where the recorded arm closed at z 0.03.
    assert policy["grasp_translation_error"] < 0.03 and policy["release_translation_error"] < 0.12


def test_replay_eval_names_a_missing_topic(tmp_path):
    bag = tmp_path / "robot_bag"
    _write_realsense_bag(bag, with_pose=False)
    process = _eval(tmp_path / "out", bag, "--mapping", _mapping_with_camera_pose(tmp_path))
    assert process.returncode == 2
    assert "/franka_robot_state_broadcaster/current_pose" in process.stderr
    unmapped = _eval(tmp_path / "out2", bag)
    assert unmapped.returncode == 2 and "/camera/color/image_raw" in unmapped.stderr


def test_replay_keeps_the_recorded_depth_and_every_latched_message():
    """rosbag2 records depth 0 when it could not discover the publisher's depth: replayed with rosbag2 player's
    default 10, not 1; a latched topic keeps all its recorded messages (one per static broadcaster)."""
    from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime

    from hamster_bag.replay import replay_qos

    def recorded(depth, latched=False):
        never = QosTime(0, 0)
        return [Qos(history=QosHistory.UNKNOWN, depth=depth, reliability=QosReliability.RELIABLE,
                    durability=QosDurability.TRANSIENT_LOCAL if latched else QosDurability.VOLATILE, deadline=never,
                    lifespan=never, liveliness=QosLiveliness.AUTOMATIC, liveliness_lease_duration=never,
                    avoid_ros_namespace_conventions=False)]

    pose = "geometry_msgs/msg/PoseStamped"
    assert replay_qos("/robot/ee_pose", pose, recorded(0), paced=False, window=10).depth == 10
    assert replay_qos("/robot/ee_pose", pose, recorded(3), paced=False, window=10).depth == 3
    assert replay_qos("/tf_static", "tf2_msgs/msg/TFMessage", recorded(0, latched=True), paced=False, window=10,
                      count=2).depth == 10
    assert replay_qos("/tf_static", "tf2_msgs/msg/TFMessage", recorded(1, latched=True), paced=False, window=10,
                      count=3).depth == 3
