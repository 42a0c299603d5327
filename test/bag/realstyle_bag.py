"""Real-style robot bags for tests: an FR3 + RealSense episode written the way a lab records it with
`ros2 bag record`, from the MuJoCo simulator's expert demonstration. Independent of the code under test: it
builds messages with rosbags' own types (never hamster_ros.conversions, never the project's bag writers) and
keeps the ground truth (true camera pose, TCP at every colour stamp, finger motion times) beside the bag.

What it imitates (read from the sources, pinned in test_realstyle_bags.py):
- realsense-ros 4.x (camera_namespace "camera", camera_name "camera"): `/camera/camera/color/image_raw` rgb8 in
  `camera_color_optical_frame`; `/camera/camera/aligned_depth_to_color/image_raw` 16UC1 in millimetres in the
  colour optical frame (publishFrame(..., COLOR, _depth_aligned_image ...)); camera_info per stream;
  `/camera/camera/depth/color/points` unorganized (height 1, is_dense) in `camera_depth_optical_frame`
  (publishPointCloud: OPTICAL_FRAME_ID(DEPTH)) with fields x, y, z, rgb FLOAT32 (rgb bytes b, g, r, 0);
  `/tf_static`: camera_link -> camera_{color,depth}_frame (extrinsics), each -> its _optical_frame with
  RPY(-pi/2, 0, -pi/2) and zero translation (tfs.cpp quaternion_optical), transient local depth 1
  (tf2_ros StaticBroadcasterQoS).
- franka_ros2: `/franka_robot_state_broadcaster/current_pose` (PoseStamped, o_t_ee, frame the robot's root link
  `fr3_link0`); `/joint_states` with fr3_joint1..7 and only `fr3_finger_joint1` (= half the opening, 0..0.04 m:
  franka_description hand.xacro).
- the lab's hand-eye result: `fr3_link0 -> camera_link` on /tf_static (static_transform_publisher), or on /tf.
Header stamps are the system clock of a robot PC (an epoch offset on simulated time); receive times add a
per-topic transport latency (LATENCY_NS), as `ros2 bag record` stamps messages when it receives them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.rosbag2.enums import CompressionFormat, CompressionMode
from rosbags.typesys import Stores, get_typestore

EPOCH_NS = 1_765_000_000 * 10**9
COLOR = "/camera/camera/color/image_raw"
COLOR_INFO = "/camera/camera/color/camera_info"
DEPTH = "/camera/camera/aligned_depth_to_color/image_raw"
DEPTH_INFO = "/camera/camera/aligned_depth_to_color/camera_info"
POINTS = "/camera/camera/depth/color/points"
POSE = "/franka_robot_state_broadcaster/current_pose"
JOINTS = "/joint_states"
TF, TF_STATIC = "/tf", "/tf_static"
ROOT_FRAME = "fr3_link0"
COLOR_OPTICAL, DEPTH_OPTICAL = "camera_color_optical_frame", "camera_depth_optical_frame"
LATENCY_NS = {COLOR: 28_000_000, COLOR_INFO: 28_000_000, DEPTH: 33_000_000, DEPTH_INFO: 33_000_000,
              POINTS: 45_000_000, POSE: 1_000_000, JOINTS: 2_000_000, TF: 1_000_000, TF_STATIC: 0}
# realsense-ros tfs.cpp: quaternion_optical.setRPY(-M_PI / 2, 0, -M_PI / 2)
OPTICAL_RPY = (-math.pi / 2, 0.0, -math.pi / 2)
# camera_link -> camera_color_frame of a D435-like camera: the colour imager 15 mm to the left of the depth origin
LINK_TO_COLOR = ([0.0, 0.015, 0.0], [0.0, 0.0, 0.0, 1.0])


def quaternion_from_rpy(roll: float, pitch: float, yaw: float) -> np.ndarray:
    """x, y, z, w of fixed-axis roll, pitch, yaw (tf2::Quaternion::setRPY)."""
    cr, sr, cp, sp, cy, sy = (math.cos(roll / 2), math.sin(roll / 2), math.cos(pitch / 2), math.sin(pitch / 2),
                              math.cos(yaw / 2), math.sin(yaw / 2))
    return np.array([sr * cp * cy - cr * sp * sy, cr * sp * cy + sr * cp * sy, cr * cp * sy - sr * sp * cy,
                     cr * cp * cy + sr * sp * sy])


def _rotation(q) -> np.ndarray:
    x, y, z, w = np.asarray(q, float) / np.linalg.norm(q)
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def _quaternion(m) -> np.ndarray:
    """x, y, z, w of a rotation matrix (Shepperd)."""
    m = np.asarray(m, float)
    w = math.sqrt(max(0.0, 1 + m[0, 0] + m[1, 1] + m[2, 2])) / 2
    x = math.copysign(math.sqrt(max(0.0, 1 + m[0, 0] - m[1, 1] - m[2, 2])) / 2, m[2, 1] - m[1, 2])
    y = math.copysign(math.sqrt(max(0.0, 1 - m[0, 0] + m[1, 1] - m[2, 2])) / 2, m[0, 2] - m[2, 0])
    z = math.copysign(math.sqrt(max(0.0, 1 - m[0, 0] - m[1, 1] + m[2, 2])) / 2, m[1, 0] - m[0, 1])
    return np.array([x, y, z, w])


def matrix(translation, q) -> np.ndarray:
    result = np.eye(4)
    result[:3, :3] = _rotation(q)
    result[:3, 3] = translation
    return result


@dataclass
class Truth:
    """What really happened, for the tests to compare reports with."""

    base_from_color_optical: np.ndarray            # 4x4, the true extrinsic
    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int
    color_stamps_ns: list = field(default_factory=list)
    tcp_at_color: list = field(default_factory=list)  # (3,) TCP position at each colour stamp
    finger_motion: list = field(default_factory=list)  # (stamp ns, "closed"|"open") where the fingers start moving
    object_position: np.ndarray | None = None        # target object at the start
    container_position: np.ndarray | None = None
    instruction: str = ""


def finger_motion(stamps_ns, widths, min_speed: float = 0.005, min_change: float = 0.002) -> list:
    """(stamp ns, "closed"|"open") at the start of every run of finger motion faster than `min_speed` (m/s)
    that changes the opening by more than `min_change` (m)."""
    stamps, widths = np.asarray(stamps_ns, np.int64), np.asarray(widths, float)
    speed = np.diff(widths) / (np.diff(stamps) * 1e-9)
    moving = np.abs(speed) > min_speed
    motions, index = [], 0
    while index < len(moving):
        if not moving[index]:
            index += 1
            continue
        end = index
        while end < len(moving) and moving[end] and np.sign(speed[end]) == np.sign(speed[index]):
            end += 1
        change = widths[end] - widths[index]
        if abs(change) > min_change:
            motions.append((int(stamps[index]), "closed" if change < 0 else "open"))
        index = end
    return motions


class RealStyleRecorder:
    """An hamster_sim.rollout EpisodeObserver (duck-typed) that keeps states and frames for write()."""

    def __init__(self, camera_rate_hz: float = 5.0, joint_rate_hz: float = 30.0):
        self.camera_rate_hz = camera_rate_hz
        self.joint_period = 1.0 / joint_rate_hz
        self.states, self.frames = [], []
        self.world = None
        self.instruction = ""
        self._next_joint = 0.0
        self._last_width = None
        self._moving_since = None

    def on_start(self, world, instruction, first):
        self.world, self.instruction = world, instruction
        self.object_position = world.object_position(world.scene.target)
        self.container_position = world.object_position(world.scene.container)

    def on_state(self, time, world):
        tcp = world.tcp_pose()
        record_joints = time >= self._next_joint - 1e-9
        if record_joints:
            self._next_joint = time + self.joint_period
        self.states.append((time, np.array(tcp.position), np.array(tcp.orientation), world.gripper_width(),
                            np.array(world.joint_positions()[:7]) if record_joints else None))

    def on_frame(self, frame):
        self.frames.append((frame.time, frame.rgb.copy(), frame.depth.copy(), frame.camera,
                            np.array(self.world.tcp_pose().position)))

    def on_command(self, time, command):
        pass

    def on_status(self, time, status):
        pass


def record_expert_episode(scene_seed: int = 3, camera_rate_hz: float = 5.0) -> RealStyleRecorder:
    from hamster_sim.rollout import ExpertPolicy, RolloutSettings, run_episode
    from hamster_sim.variations import scene_for
    from hamster_sim.world import FrankaWorld

    scene = scene_for("base", scene_seed)
    recorder = RealStyleRecorder(camera_rate_hz)
    with FrankaWorld(scene) as world:
        result = run_episode(world, ExpertPolicy(scene), settings=RolloutSettings(pause_sec=0.4, settle_sec=0.5),
                             observer=recorder)
    if not result.success:
        raise RuntimeError(f"the expert failed: {result.message}")
    return recorder


def _qos(reliable: bool, latched: bool) -> Qos:
    """A recorded offered QoS as `ros2 bag record` writes it: the publisher's depth is not discoverable over
    DDS, so rosbag2 records history unknown, depth 0."""
    never = QosTime(0, 0)
    return Qos(history=QosHistory.UNKNOWN, depth=0,
               reliability=QosReliability.RELIABLE if reliable else QosReliability.BEST_EFFORT,
               durability=QosDurability.TRANSIENT_LOCAL if latched else QosDurability.VOLATILE,
               deadline=never, lifespan=never, liveliness=QosLiveliness.AUTOMATIC,
               liveliness_lease_duration=never, avoid_ros_namespace_conventions=False)


def write_realstyle_bag(recorder: RealStyleRecorder, path: Path, *, storage: str = "mcap",
                        extrinsic_on: str = TF_STATIC, with_points: bool = True, instruction_in_metadata: bool = False,
                        link_from_camera_error: tuple[float, float] = (0.0, 0.0)) -> Truth:
    """Write the recorded episode; returns the ground truth. extrinsic_on: TF_STATIC or TF (the hand-eye
    transform streamed at 30 Hz). with_points: also the driver's PointCloud2."""
    store = get_typestore(Stores.ROS2_KILTED)
    T = store.types
    frames = recorder.frames
    camera = frames[0][3]
    base_from_optical = camera.base_from_camera
    # The lab's transforms: base <- camera_link (hand-eye), camera_link <- colour frame <- colour optical.
    optical_q = quaternion_from_rpy(*OPTICAL_RPY)
    link_from_color = matrix(*LINK_TO_COLOR)
    color_from_optical = matrix([0, 0, 0], optical_q)
    base_from_link = base_from_optical @ np.linalg.inv(link_from_color @ color_from_optical)
    depth_from_optical = color_from_optical  # camera_depth_frame = camera_link, same optical rotation
    # A point in the colour optical frame -> the depth optical frame: optical_d <- link <- colour optical.
    depth_optical_from_color_optical = np.linalg.inv(depth_from_optical) @ link_from_color @ color_from_optical

    def stamp(ns):
        return T["builtin_interfaces/msg/Time"](sec=ns // 10**9, nanosec=ns % 10**9)

    def header(ns, frame):
        return T["std_msgs/msg/Header"](stamp=stamp(ns), frame_id=frame)

    def transform(ns, parent, child, m):
        q = _quaternion(m[:3, :3])
        return T["geometry_msgs/msg/TransformStamped"](
            header=header(ns, parent), child_frame_id=child, transform=T["geometry_msgs/msg/Transform"](
                translation=T["geometry_msgs/msg/Vector3"](x=m[0, 3], y=m[1, 3], z=m[2, 3]),
                rotation=T["geometry_msgs/msg/Quaternion"](x=q[0], y=q[1], z=q[2], w=q[3])))

    def ns_of(sim_seconds):
        return EPOCH_NS + int(round(sim_seconds * 1e9))

    messages = []   # (receive ns, topic, msg)

    def put(topic, ns, msg):
        messages.append((ns + LATENCY_NS[topic], topic, msg))

    t0 = ns_of(frames[0][0])
    driver_static = [transform(t0, "camera_link", "camera_color_frame", link_from_color),
                     transform(t0, "camera_color_frame", COLOR_OPTICAL, color_from_optical),
                     transform(t0, "camera_link", "camera_depth_frame", np.eye(4)),
                     transform(t0, "camera_depth_frame", DEPTH_OPTICAL, depth_from_optical)]
    put(TF_STATIC, t0 - 2 * 10**9, T["tf2_msgs/msg/TFMessage"](transforms=driver_static))
    hand_eye = base_from_link.copy()
    if link_from_camera_error != (0.0, 0.0):       # a wrong calibration, for tests of explicit overrides
        shift, degrees = link_from_camera_error
        error = matrix([shift, 0, 0], quaternion_from_rpy(0, 0, math.radians(degrees)))
        hand_eye = hand_eye @ error
    if extrinsic_on == TF_STATIC:
        put(TF_STATIC, t0 - 10**9, T["tf2_msgs/msg/TFMessage"](
            transforms=[transform(t0, ROOT_FRAME, "camera_link", hand_eye)]))

    width, height = camera.width, camera.height
    k = np.array([camera.fx, 0, camera.cx, 0, camera.fy, camera.cy, 0, 0, 1.0])

    def info(ns):
        return T["sensor_msgs/msg/CameraInfo"](
            header=header(ns, COLOR_OPTICAL), height=height, width=width, distortion_model="plumb_bob",
            d=np.zeros(5), k=k, r=np.eye(3).ravel(), p=np.array([camera.fx, 0, camera.cx, 0, 0, camera.fy,
                                                                  camera.cy, 0, 0, 0, 1.0, 0]),
            binning_x=0, binning_y=0, roi=T["sensor_msgs/msg/RegionOfInterest"](
                x_offset=0, y_offset=0, height=0, width=0, do_rectify=False))

    truth = Truth(base_from_optical, camera.fx, camera.fy, camera.cx, camera.cy, width, height,
                  object_position=recorder.object_position, container_position=recorder.container_position,
                  instruction=recorder.instruction)
    fields = [T["sensor_msgs/msg/PointField"](name=name, offset=4 * i, datatype=7, count=1)
              for i, name in enumerate(("x", "y", "z", "rgb"))]
    v, u = np.mgrid[0:height, 0:width]
    for time, rgb, depth, _, tcp in frames:
        ns = ns_of(time)
        truth.color_stamps_ns.append(ns)
        truth.tcp_at_color.append(tcp)
        put(COLOR_INFO, ns, info(ns))
        put(COLOR, ns, T["sensor_msgs/msg/Image"](header=header(ns, COLOR_OPTICAL), height=height, width=width,
                                                  encoding="rgb8", is_bigendian=0, step=3 * width,
                                                  data=np.ascontiguousarray(rgb).ravel()))
        millimetres = np.where(np.isfinite(depth) & (depth > 0) & (depth < 10.0),
                               np.round(depth * 1000.0), 0).astype(np.uint16)
        put(DEPTH_INFO, ns, info(ns))
        put(DEPTH, ns, T["sensor_msgs/msg/Image"](header=header(ns, COLOR_OPTICAL), height=height, width=width,
                                                  encoding="16UC1", is_bigendian=0, step=2 * width,
                                                  data=millimetres.view(np.uint8).ravel()))
        if with_points:
            valid = millimetres[::2, ::2] > 0
            z = millimetres[::2, ::2][valid] * 0.001
            x = (u[::2, ::2][valid] + 0.5 - camera.cx) / camera.fx * z
            y = (v[::2, ::2][valid] + 0.5 - camera.cy) / camera.fy * z
            in_depth = np.stack([x, y, z], 1) @ depth_optical_from_color_optical[:3, :3].T \
                + depth_optical_from_color_optical[:3, 3]
            colours = rgb[::2, ::2][valid]
            packed = np.zeros((len(z), 4), np.uint8)
            packed[:, 0], packed[:, 1], packed[:, 2] = colours[:, 2], colours[:, 1], colours[:, 0]  # b, g, r
            data = np.concatenate([in_depth.astype(np.float32).view(np.uint8).reshape(-1, 12), packed], axis=1)
            put(POINTS, ns, T["sensor_msgs/msg/PointCloud2"](
                header=header(ns, DEPTH_OPTICAL), height=1, width=len(z), fields=fields, is_bigendian=False,
                point_step=16, row_step=16 * len(z), data=data.ravel(), is_dense=True))

    arm_names = [f"fr3_joint{i}" for i in range(1, 8)]
    for time, position, orientation, gripper_width, arm in recorder.states:
        ns = ns_of(time)
        put(POSE, ns, T["geometry_msgs/msg/PoseStamped"](header=header(ns, ROOT_FRAME), pose=T["geometry_msgs/msg/Pose"](
            position=T["geometry_msgs/msg/Point"](x=position[0], y=position[1], z=position[2]),
            orientation=T["geometry_msgs/msg/Quaternion"](x=orientation[0], y=orientation[1], z=orientation[2],
                                                          w=orientation[3]))))
        if arm is not None:
            put(JOINTS, ns, T["sensor_msgs/msg/JointState"](
                header=header(ns, ""), name=arm_names + ["fr3_finger_joint1"],
                position=np.append(arm, gripper_width / 2), velocity=np.zeros(0), effort=np.zeros(0)))
            if extrinsic_on == TF:
                put(TF, ns, T["tf2_msgs/msg/TFMessage"](transforms=[transform(ns, ROOT_FRAME, "camera_link", hand_eye)]))
    truth.finger_motion = finger_motion([ns_of(state[0]) for state in recorder.states],
                                        [state[3] for state in recorder.states])
    qos = {COLOR: _qos(False, False), COLOR_INFO: _qos(False, False), DEPTH: _qos(False, False),
           DEPTH_INFO: _qos(False, False), POINTS: _qos(False, False), POSE: _qos(True, False),
           JOINTS: _qos(True, False), TF: _qos(True, False), TF_STATIC: _qos(True, True)}
    types = {COLOR: "sensor_msgs/msg/Image", COLOR_INFO: "sensor_msgs/msg/CameraInfo", DEPTH: "sensor_msgs/msg/Image",
             DEPTH_INFO: "sensor_msgs/msg/CameraInfo", POINTS: "sensor_msgs/msg/PointCloud2",
             POSE: "geometry_msgs/msg/PoseStamped", JOINTS: "sensor_msgs/msg/JointState",
             TF: "tf2_msgs/msg/TFMessage", TF_STATIC: "tf2_msgs/msg/TFMessage"}
    writer = Writer(path, version=9, storage_plugin=StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3)
    writer.set_compression(CompressionMode.MESSAGE, CompressionFormat.ZSTD)
    if instruction_in_metadata:
        writer.set_custom_data("instruction", recorder.instruction)
    with writer:
        used = sorted({topic for _, topic, _ in messages})
        connections = {topic: writer.add_connection(topic, types[topic], typestore=store,
                                                    offered_qos_profiles=[qos[topic]]) for topic in used}
        for ns, topic, msg in sorted(messages, key=lambda item: item[0]):
            writer.write(connections[topic], ns, bytes(store.serialize_cdr(msg, types[topic])))
    return truth
