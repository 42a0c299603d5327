"""One recorded episode read back from a rosbag2 (mcap or sqlite3), deterministically and without a ROS graph.

Topics are looked up under the runtime's names (`hamster_ros.interfaces`); a mapping file renames a bag's
own topics (e.g. a RealSense + franka_ros2 recording) onto them first. Messages are converted with the same
`hamster_ros.conversions` functions the live nodes use, so the Observation built here is the one the policy
node would have built from the same messages.

Mapping file (YAML), all keys optional except `topics`:

    topics: {<name in the bag>: <runtime name>, ...}
    camera_pose: {position: [x, y, z], orientation: [x, y, z, w]}   # extrinsics when the bag has no /camera/pose
    gripper_joint_names: [fr3_finger_joint1, fr3_finger_joint2]     # their positions add up to the opening
    ignore_distortion: false                                        # accept CameraInfo with distortion
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml
from rosbags.highlevel import AnyReader

from hamster_core.camera import PinholeCamera
from hamster_core.geometry import Pose
from hamster_core.path2d import Path2D
from hamster_ros import interfaces as t

EPISODE_METADATA = "/hamster/episode_metadata"  # std_msgs/String JSON, latched (see hamster_bag.recorder)
DEFAULT_GRIPPER_JOINTS = ("fr3_finger_joint1", "fr3_finger_joint2")

# Runtime topic -> the message types it may carry. A bag topic mapped onto a runtime name must have one.
RUNTIME_TYPES = {
    t.COLOR_IMAGE: {"sensor_msgs/msg/Image"}, t.DEPTH_IMAGE: {"sensor_msgs/msg/Image"},
    t.SEGMENTATION: {"sensor_msgs/msg/Image"}, t.COLOR_INFO: {"sensor_msgs/msg/CameraInfo"},
    t.POINTS: {"sensor_msgs/msg/PointCloud2"}, t.CAMERA_POSE: {"geometry_msgs/msg/PoseStamped"},
    t.JOINT_STATES: {"sensor_msgs/msg/JointState"}, t.EE_POSE: {"geometry_msgs/msg/PoseStamped"},
    t.CARTESIAN_TARGET: {"geometry_msgs/msg/PoseStamped"}, t.GRIPPER_COMMAND: {"hamster_msgs/msg/GripperCommand"},
    t.INSTRUCTION: {"std_msgs/msg/String"}, t.PATH: {"hamster_msgs/msg/Path2D"},
    t.PATH_IMAGE: {"sensor_msgs/msg/Image"}, t.MASKS: {"hamster_msgs/msg/GroundingMasks"},
    t.MASKS_IMAGE: {"sensor_msgs/msg/Image"}, t.SIM_SCENE: {"std_msgs/msg/String"},
    t.EXECUTOR_STATUS: {"std_msgs/msg/String"}, EPISODE_METADATA: {"std_msgs/msg/String"},
    "/clock": {"rosgraph_msgs/msg/Clock"},
}


class BagError(ValueError):
    """The bag cannot be evaluated: a needed topic is missing, a type is unknown or wrong, a file is bad."""


@dataclass(frozen=True)
class TopicMapping:
    topics: dict[str, str] = field(default_factory=dict)  # name in the bag -> runtime name
    camera_pose: Pose | None = None
    gripper_joint_names: tuple[str, ...] = DEFAULT_GRIPPER_JOINTS
    ignore_distortion: bool = False

    @classmethod
    def load(cls, path: Path | str | None) -> "TopicMapping":
        if path is None:
            return cls()
        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as error:
            raise BagError(f"cannot read mapping file {path}: {error}") from error
        unknown = set(data) - {"topics", "camera_pose", "gripper_joint_names", "ignore_distortion"}
        if not isinstance(data, dict) or unknown:
            raise BagError(f"mapping file {path}: unknown keys {sorted(unknown)}")
        topics = data.get("topics") or {}
        if not isinstance(topics, dict) or not all(isinstance(k, str) and isinstance(v, str) and
                                                   k.startswith("/") and v.startswith("/")
                                                   for k, v in topics.items()):
            raise BagError(f"mapping file {path}: 'topics' must map absolute topic names to absolute topic names")
        camera_pose = None
        if data.get("camera_pose") is not None:
            try:
                camera_pose = Pose(data["camera_pose"]["position"], data["camera_pose"]["orientation"])
            except (KeyError, TypeError, ValueError) as error:
                raise BagError(f"mapping file {path}: bad camera_pose: {error}") from error
        joints = tuple(data.get("gripper_joint_names") or DEFAULT_GRIPPER_JOINTS)
        return cls(dict(topics), camera_pose, joints, bool(data.get("ignore_distortion", False)))

    def runtime_name(self, bag_topic: str) -> str:
        return self.topics.get(bag_topic, bag_topic)

    def bag_names(self, runtime_topic: str) -> list[str]:
        return [bag for bag, runtime in self.topics.items() if runtime == runtime_topic] or [runtime_topic]


def open_reader(bag: Path | str) -> AnyReader:
    """An opened AnyReader with the project's types; a missing or unreadable bag raises BagError."""
    from hamster_bag.recorder import project_typestore
    path = Path(bag)
    if not path.exists():
        raise BagError(f"bag {path} does not exist")
    try:
        reader = AnyReader([path], default_typestore=project_typestore())
        reader.open()
    except Exception as error:  # rosbags raises its own error types for every kind of bad file
        raise BagError(f"cannot open bag {path}: {type(error).__name__}: {error}") from error
    return reader


class EpisodeBag:
    """Random access by runtime topic name to one bag's messages, with receive times in nanoseconds."""

    def __init__(self, bag: Path | str, mapping: TopicMapping | None = None):
        self.path = Path(bag)
        self.mapping = mapping or TopicMapping()
        self.reader = open_reader(bag)
        self.connections: dict[str, list] = {}
        wrong = []
        for connection in self.reader.connections:
            name = self.mapping.runtime_name(connection.topic)
            allowed = RUNTIME_TYPES.get(name)
            if allowed is not None and connection.msgtype not in allowed:
                wrong.append(f"{connection.topic} ({connection.msgtype}; {name} needs {' or '.join(sorted(allowed))})")
                continue
            self.connections.setdefault(name, []).append(connection)
        if wrong:
            self.close()
            raise BagError(f"{self.path}: unexpected message type on {', '.join(wrong)}")
        self.custom_data = _custom_data(self.path)

    def close(self) -> None:
        self.reader.close()

    def __enter__(self):
        return self

    def __exit__(self, *_):
        self.close()

    def has(self, topic: str) -> bool:
        return any(c.msgcount > 0 for c in self.connections.get(topic, []))

    def require(self, topics, why: str) -> None:
        missing = [topic for topic in topics if not self.has(topic)]
        if missing:
            names = ", ".join(" or ".join(dict.fromkeys([m, *self.mapping.bag_names(m)])) for m in missing)
            present = ", ".join(sorted(c.topic for c in self.reader.connections if c.msgcount)) or "none"
            raise BagError(f"{self.path}: missing topic(s) {names} needed for {why}; the bag has: {present}")

    def messages(self, topic: str, start: int | None = None, stop: int | None = None):
        """(receive time ns, deserialized message) in bag order."""
        connections = self.connections.get(topic, [])
        if not connections:
            return
        for connection, stamp, raw in self.reader.messages(connections=connections, start=start, stop=stop):
            yield stamp, self.reader.deserialize(raw, connection.msgtype)

    def times(self, topic: str) -> np.ndarray:
        connections = self.connections.get(topic, [])
        if not connections:
            return np.empty(0, np.int64)
        return np.array([stamp for _, stamp, _ in self.reader.messages(connections=connections)], np.int64)

    def first(self, topic: str, at_or_after: int | None = None):
        return next(self.messages(topic, start=at_or_after), None)

    def last_before(self, topic: str, time_ns: int):
        """The newest message received at or before time_ns, else the first one after it (latched topics)."""
        found = None
        for stamp, msg in self.messages(topic):
            if stamp > time_ns and found is not None:
                break
            found = (stamp, msg)
            if stamp > time_ns:
                break
        return found


def _custom_data(path: Path) -> dict:
    """metadata.yaml's custom_data (rosbags' reader does not expose it)."""
    try:
        info = yaml.safe_load((path / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    except (OSError, KeyError, TypeError, yaml.YAMLError):
        return {}
    custom = info.get("custom_data") if isinstance(info, dict) else None
    if not isinstance(custom, dict):
        return {}
    # rosbag2 writes a string -> string map; anything else in a hand-edited file is not ours to interpret.
    return {key: value for key, value in custom.items() if isinstance(key, str) and isinstance(value, str)}


# --------------------------------------------------------------------------------------------------------
# Typed views of the messages rosbags returns (plain dataclasses with numpy arrays): the conversions module's
# functions read attributes, so they accept them as they accept rclpy messages.

def stamp_seconds(header) -> float:
    return header.stamp.sec + header.stamp.nanosec * 1e-9


@dataclass
class Trajectory:
    """End-effector samples over the episode, in the base frame, with the gripper state at each."""

    times: np.ndarray          # (N,) s since the first sample (header stamps when usable)
    positions: np.ndarray      # (N, 3)
    orientations: np.ndarray   # (N, 4) x, y, z, w
    closed: np.ndarray         # (N,) bool
    gripper_source: str        # "commands", "joint widths" or "none"


@dataclass
class Episode:
    path: Path
    instruction: str
    metadata: dict
    start_ns: int
    end_ns: int
    frame_ns: int                       # receive time of the first colour image of the episode
    rgb: np.ndarray                     # first frame (H, W, 3) RGB
    camera: PinholeCamera
    trajectory: Trajectory
    cloud: tuple | None = None          # (points (N, 3) base frame, colors) of the first frame
    gripper_width: float = 0.0
    recorded_path: Path2D | None = None
    path_info: dict = field(default_factory=dict)
    masks_msgs: list = field(default_factory=list)   # (receive ns, GroundingMasks) of the episode
    scene_json: str | None = None


def _pose_arrays(msgs) -> tuple[np.ndarray, np.ndarray]:
    positions = np.array([[m.pose.position.x, m.pose.position.y, m.pose.position.z] for m in msgs], float)
    orientations = np.array([[m.pose.orientation.x, m.pose.orientation.y, m.pose.orientation.z,
                              m.pose.orientation.w] for m in msgs], float)
    return positions.reshape(-1, 3), orientations.reshape(-1, 4)


def _joint_width(msg, joints) -> float | None:
    positions = dict(zip(msg.name, np.asarray(msg.position, float).tolist()))
    return float(sum(positions[j] for j in joints)) if all(j in positions for j in joints) else None


def _stamps_usable(msgs) -> bool:
    stamps = np.array([stamp_seconds(m.header) for m in msgs])
    return len(stamps) > 1 and bool(np.all(np.diff(stamps) >= 0)) and stamps[-1] > stamps[0]


def load_episode(bag: EpisodeBag, *, open_fraction: float = 0.9) -> Episode:
    """Read what evaluation needs. The episode starts at the instruction (the recorder may have been
    running before the scene reset) and ends with the bag."""
    from hamster_core.keyframes import gripper_closed_from_widths
    from hamster_ros.conversions import (camera_from_msg, image_to_rgb, path_from_msg, pointcloud2_to_numpy,
                                         pose_from_msg)

    bag.require([t.COLOR_IMAGE, t.COLOR_INFO, t.EE_POSE], "an episode (first frame, camera model, end-effector "
                "trajectory; forward kinematics from joint states alone is not supported)")
    if bag.mapping.camera_pose is None:
        bag.require([t.CAMERA_POSE], "the camera pose (or give camera_pose in the mapping file)")
    metadata = {}
    for _, msg in bag.messages(EPISODE_METADATA):  # the last record is the fullest
        metadata = json.loads(msg.data)
    instruction_msg = bag.first(t.INSTRUCTION)
    instruction = instruction_msg[1].data if instruction_msg else metadata.get("instruction", "")
    start = instruction_msg[0] if instruction_msg else bag.reader.start_time
    end = bag.reader.end_time

    frame_ns, image = bag.first(t.COLOR_IMAGE, start) or bag.first(t.COLOR_IMAGE)
    rgb = image_to_rgb(image)
    _, info = bag.last_before(t.COLOR_INFO, frame_ns)
    if bag.has(t.CAMERA_POSE):
        camera_pose = pose_from_msg(bag.last_before(t.CAMERA_POSE, frame_ns)[1])
    else:
        camera_pose = bag.mapping.camera_pose
    camera = camera_from_msg(info, camera_pose.matrix(), ignore_distortion=bag.mapping.ignore_distortion)

    cloud = None
    if bag.has(t.POINTS):
        _, cloud_msg = bag.first(t.POINTS, start) or bag.first(t.POINTS)
        points, colors = pointcloud2_to_numpy(cloud_msg)
        # A camera driver's cloud is in the camera's optical frame; the runtime's is in the base frame.
        if cloud_msg.header.frame_id and cloud_msg.header.frame_id == info.header.frame_id:
            matrix = camera.base_from_camera
            points = (points @ matrix[:3, :3].T + matrix[:3, 3]).astype(np.float32)
        cloud = (points, colors)

    poses = [(stamp, msg) for stamp, msg in bag.messages(t.EE_POSE, start)]
    if len(poses) < 2:
        raise BagError(f"{bag.path}: fewer than 2 end-effector poses after the episode start")
    # Kinematics on the sender's clock (header stamps): receive times carry transport jitter that would show
    # up as speed spikes. Stamps that do not increase (a driver that leaves them empty) fall back to receive times.
    use_stamps = _stamps_usable([msg for _, msg in poses])
    clock = (lambda stamp, msg: int(stamp_seconds(msg.header) * 1e9)) if use_stamps else (lambda stamp, msg: stamp)
    times = np.array([clock(stamp, msg) for stamp, msg in poses], np.int64)
    positions, orientations = _pose_arrays([msg for _, msg in poses])

    joint_msgs = list(bag.messages(t.JOINT_STATES)) if bag.has(t.JOINT_STATES) else []
    widths = [(stamp, clock(stamp, msg), _joint_width(msg, bag.mapping.gripper_joint_names))
              for stamp, msg in joint_msgs]
    gripper_width = next((w for stamp, _, w in reversed(widths) if stamp <= frame_ns and w is not None), None)
    widths = [(when, w) for _, when, w in widths if w is not None]
    if gripper_width is None:
        gripper_width = widths[0][1] if widths else 0.08
    if bag.has(t.GRIPPER_COMMAND):
        events = [(clock(stamp, msg), msg.command == 1 or msg.width < open_fraction * 0.08)  # GRASP, or a narrow MOVE
                  for stamp, msg in bag.messages(t.GRIPPER_COMMAND)]
        event_times = np.array([stamp for stamp, _ in events], np.int64)
        states = np.array([closed for _, closed in events], bool)
        index = np.searchsorted(event_times, times, side="right") - 1
        closed = np.where(index >= 0, states[np.maximum(index, 0)], gripper_width < open_fraction * 0.08)
        source = "commands"
    elif len(widths) > 1:
        width_times = np.array([stamp for stamp, _ in widths], np.int64)
        width_closed = gripper_closed_from_widths([w for _, w in widths])
        index = np.clip(np.searchsorted(width_times, times, side="right") - 1, 0, len(widths) - 1)
        closed, source = width_closed[index], "joint widths"
    else:
        closed, source = np.zeros(len(times), bool), "none"
    trajectory = Trajectory((times - times[0]) * 1e-9, positions, orientations, np.asarray(closed, bool), source)

    episode = Episode(bag.path, instruction, metadata, start, end, frame_ns, rgb, camera, trajectory, cloud,
                      gripper_width)
    path_msg = bag.first(t.PATH, start)
    if path_msg is not None:
        stamp, msg = path_msg
        episode.recorded_path = path_from_msg(msg)
        episode.path_info = {"receive_ns": stamp, "stamp": stamp_seconds(msg.header), "model_id": msg.model_id,
                             "raw_answer": msg.raw_answer}
    episode.masks_msgs = list(bag.messages(t.MASKS, start)) if bag.has(t.MASKS) else []
    if bag.has(t.SIM_SCENE):
        episode.scene_json = bag.last_before(t.SIM_SCENE, frame_ns)[1].data
    return episode


def sim_to_receive_time(bag: EpisodeBag):
    """A function from header stamps (s) to bag receive times (ns). With a recorded /clock the stamps are
    simulated time and the recorded (receive time, clock) pairs interpolate between the two clocks;
    without one, stamps are taken to be on the recorder's clock already (wall time on a real robot)."""
    pairs = [(stamp, msg.clock.sec + msg.clock.nanosec * 1e-9) for stamp, msg in bag.messages("/clock")]
    if len(pairs) < 2:
        return lambda seconds: np.asarray(seconds, float) * 1e9
    receive = np.array([p[0] for p in pairs], float)
    clock = np.array([p[1] for p in pairs], float)
    clock, unique = np.unique(clock, return_index=True)
    return lambda seconds: np.interp(np.asarray(seconds, float), clock, receive[unique])
