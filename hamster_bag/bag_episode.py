"""One recorded episode read back from a rosbag2 (mcap or sqlite3), deterministically and without a ROS graph.

Topics are looked up under the runtime's names (`hamster_ros.interfaces`); a mapping file renames a bag's
own topics (e.g. a RealSense + franka_ros2 recording) onto them first. Messages are converted with the same
`hamster_ros.conversions` functions the live nodes use, so the Observation built here is the one the policy
node would have built from the same messages.

Mapping file (YAML), all keys optional except `topics`:

    topics: {<name in the bag>: <runtime name>, ...}
    camera_pose: {position: [x, y, z], orientation: [x, y, z, w]}   # explicit extrinsics: override the bag's TF
    base_frame: fr3_link0              # the robot frame poses are in (default: the end-effector pose's frame_id)
    gripper_joint_names: [fr3_finger_joint1, fr3_finger_joint2]     # their positions add up to the opening;
                                       # a bag with only some of them counts each present one for the missing
    gripper_width_range: [0.0, 0.08]   # the hand's opening range (m): the open/closed hysteresis scales with it
    ignore_distortion: false           # accept CameraInfo with distortion

Camera pose, first match wins, and the report always says which (`camera_pose_source`): a calibration file
given on the command line ("calibration"), the mapping's camera_pose ("mapping"), the bag's /tf_static
("tf_static") or /tf ("tf", when a dynamic link is in the chain) from the base frame to the colour
camera_info's frame_id, the runtime's own /camera/pose topic ("camera_pose_topic"). None of them: BagError
naming the frames that were missing.
"""
from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml
from rosbags.highlevel import AnyReader

from hamster_core.camera import PinholeCamera
from hamster_core.geometry import Pose
from hamster_core.keyframes import FRANKA_HAND_WIDTH_RANGE
from hamster_core.transforms import TransformBuffer, TransformError
from hamster_core.path2d import Path2D
from hamster_ros import interfaces as t
from hamster_ros.conversions import stamp_to_ns
from hamster_ros.observation import gripper_width_from_joints

EPISODE_METADATA = "/hamster/episode_metadata"  # std_msgs/String JSON, latched (see hamster_bag.recorder)
DEFAULT_GRIPPER_JOINTS = ("fr3_finger_joint1", "fr3_finger_joint2")
TF, TF_STATIC = "/tf", "/tf_static"
MAPPING_KEYS = {"topics", "camera_pose", "base_frame", "gripper_joint_names", "gripper_width_range",
                "ignore_distortion"}

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
    "/clock": {"rosgraph_msgs/msg/Clock"}, TF: {"tf2_msgs/msg/TFMessage"}, TF_STATIC: {"tf2_msgs/msg/TFMessage"},
}


class BagError(ValueError):
    """The bag cannot be evaluated: a needed topic is missing, a type is unknown or wrong, a file is bad."""


@dataclass(frozen=True)
class TopicMapping:
    topics: dict[str, str] = field(default_factory=dict)  # name in the bag -> runtime name
    camera_pose: Pose | None = None
    gripper_joint_names: tuple[str, ...] = DEFAULT_GRIPPER_JOINTS
    ignore_distortion: bool = False
    base_frame: str | None = None
    gripper_width_range: tuple[float, float] = FRANKA_HAND_WIDTH_RANGE
    source: str = ""                   # the file it was read from, for messages

    @classmethod
    def load(cls, path: Path | str | None) -> "TopicMapping":
        if path is None:
            return cls()
        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as error:
            raise BagError(f"cannot read mapping file {path}: {error}") from error
        unknown = set(data) - MAPPING_KEYS if isinstance(data, dict) else {"<not a mapping>"}
        if unknown:
            raise BagError(f"mapping file {path}: unknown keys {sorted(unknown)} (known: {', '.join(sorted(MAPPING_KEYS))})")
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
        joints = data.get("gripper_joint_names") or DEFAULT_GRIPPER_JOINTS
        if isinstance(joints, str) or not all(isinstance(j, str) and j for j in joints):
            raise BagError(f"mapping file {path}: gripper_joint_names must be a list of joint names, got {joints!r}")
        width_range = data.get("gripper_width_range") or FRANKA_HAND_WIDTH_RANGE
        try:
            low, high = (float(v) for v in width_range)
            if not 0 <= low < high:
                raise ValueError
        except (TypeError, ValueError):
            raise BagError(f"mapping file {path}: gripper_width_range must be [low, high] metres with "
                           f"0 <= low < high, got {width_range!r}") from None
        base_frame = data.get("base_frame")
        if base_frame is not None and (not isinstance(base_frame, str) or not base_frame):
            raise BagError(f"mapping file {path}: base_frame must be a frame name, got {base_frame!r}")
        return cls(dict(topics), camera_pose, tuple(joints), bool(data.get("ignore_distortion", False)),
                   base_frame, (low, high), str(path))

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
    if path.is_dir() and not (path / "metadata.yaml").is_file():
        files = sorted(p.name for p in path.iterdir() if p.suffix in (".mcap", ".db3", ".zstd"))
        raise BagError(f"bag {path} has no metadata.yaml" + (
            f" (storage files: {', '.join(files)}): regenerate it with `ros2 bag reindex {path}`" if files else
            ": not a rosbag2 folder"))
    try:
        reader = AnyReader([path], default_typestore=project_typestore())
        reader.open()
    except Exception as error:  # rosbags raises its own error types for every kind of bad file
        raise BagError(f"cannot open bag {path}: {type(error).__name__}: {error}; {DAMAGED_HINT}") from error
    return reader


# What to do about a damaged storage file, for every error that says the bag cannot be read.
DAMAGED_HINT = ("the bag is damaged or was cut short (recording killed, disk full): recover an mcap with "
                "`mcap recover`, a sqlite3 one with `sqlite3 FILE .recover`, then `ros2 bag reindex`, or record again")


class EpisodeBag:
    """Random access by runtime topic name to one bag's messages, with receive times in nanoseconds."""

    def __init__(self, bag: Path | str, mapping: TopicMapping | None = None):
        self.path = Path(bag)
        self.mapping = mapping or TopicMapping()
        self.reader = open_reader(bag)
        self.connections: dict[str, list] = {}
        self._header_stamps: dict[int, tuple[np.ndarray, np.ndarray] | None] = {}   # connection id -> header_stamps
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
        recorded = {c.topic for c in self.reader.connections if c.msgcount}
        absent = [topic for topic in self.mapping.topics if topic not in recorded]
        if absent:
            self.close()
            raise BagError(f"{self.path}: the mapping file {self.mapping.source or ''} names "
                           f"{', '.join(absent)}, which the bag does not have (it has: {', '.join(sorted(recorded))}); "
                           f"remove the line(s) from the mapping file or record the topic(s)")
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
        with self._reading(topic):
            for connection, stamp, raw in self.reader.messages(connections=connections, start=start, stop=stop):
                yield stamp, self.reader.deserialize(raw, connection.msgtype)

    @contextmanager
    def _reading(self, topic: str):
        """A storage error in the middle of the file (a truncated chunk or page) -> BagError naming the bag."""
        try:
            yield
        except BagError:
            raise
        except Exception as error:  # rosbags, zstd, sqlite3 and struct each raise their own
            raise BagError(f"{self.path}: cannot read {topic}: {type(error).__name__}: {error}; "
                           f"{DAMAGED_HINT}") from error

    def times(self, topic: str) -> np.ndarray:
        connections = self.connections.get(topic, [])
        if not connections:
            return np.empty(0, np.int64)
        with self._reading(topic):
            return np.array([stamp for _, stamp, _ in self.reader.messages(connections=connections)], np.int64)

    def header_stamps(self, connection) -> tuple[np.ndarray, np.ndarray] | None:
        """(receive ns, header stamp ns) of every message of a connection whose type starts with a
        std_msgs/Header, read from the CDR bytes without deserializing (images stay cheap); None otherwise. Read once
        per connection: the report's latencies, the colour pairing and the dataset all ask for the image topics."""
        if connection.id not in self._header_stamps:
            self._header_stamps[connection.id] = self._read_header_stamps(connection)
        return self._header_stamps[connection.id]

    def _read_header_stamps(self, connection) -> tuple[np.ndarray, np.ndarray] | None:
        fields = self.reader.typestore.fielddefs.get(connection.msgtype, ((), ()))[1]
        if not fields or fields[0][0] != "header":
            return None
        received, stamps = [], []
        with self._reading(connection.topic):
            for _, stamp, raw in self.reader.messages(connections=[connection]):
                order = "<" if raw[1] == 1 else ">"          # CDR encapsulation: 0x0001 little, 0x0000 big endian
                sec, nanosec = np.frombuffer(raw[4:12], np.dtype(f"{order}i4")).tolist()
                received.append(stamp)
                stamps.append(sec * 1_000_000_000 + (nanosec & 0xFFFFFFFF))
        arrays = np.array(received, np.int64), np.array(stamps, np.int64)
        for array in arrays:
            array.flags.writeable = False   # shared by every caller
        return arrays

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
    gripper_source: str        # "commands", "joint widths (...)" or "none"
    stamps_ns: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))  # (N,) on the episode clock
    gripper_events: list = field(default_factory=list)   # [(stamp ns, closed bool)] where the state changed

    def position_at(self, stamp_ns) -> np.ndarray:
        """TCP positions (M, 3) linearly interpolated at stamps on the episode clock (held at the ends)."""
        stamps = np.asarray(stamp_ns, np.int64).reshape(-1)
        return np.stack([np.interp(stamps, self.stamps_ns, self.positions[:, axis]) for axis in range(3)], axis=1)


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
    camera_pose_source: str = ""        # calibration, mapping, tf_static, tf or camera_pose_topic
    base_frame: str = "base"
    frame_stamp_ns: int = 0             # header stamp of the first colour image (episode clock)
    cloud_source: str = ""              # "<topic> (<frame>)" or "depth <topic>"
    clock: str = "header"               # the trajectory's times: "header" stamps or "receive" times
    camera_frame: str = ""              # the colour camera's frame (camera_info's)
    transforms: TransformBuffer | None = None   # the bag's /tf_static and /tf


def _pose_arrays(msgs) -> tuple[np.ndarray, np.ndarray]:
    positions = np.array([[m.pose.position.x, m.pose.position.y, m.pose.position.z] for m in msgs], float)
    orientations = np.array([[m.pose.orientation.x, m.pose.orientation.y, m.pose.orientation.z,
                              m.pose.orientation.w] for m in msgs], float)
    return positions.reshape(-1, 3), orientations.reshape(-1, 4)


def _stamps_usable(msgs) -> bool:
    stamps = np.array([stamp_seconds(m.header) for m in msgs])
    return len(stamps) > 1 and bool(np.all(np.diff(stamps) >= 0)) and stamps[-1] > stamps[0]


def transform_buffer(bag: EpisodeBag) -> TransformBuffer:
    """Every transform of the bag's /tf_static (static) and /tf (dynamic, at their header stamps)."""
    buffer = TransformBuffer()
    for topic, static in ((TF_STATIC, True), (TF, False)):
        for _, msg in bag.messages(topic):
            for transform in msg.transforms:
                translation = transform.transform.translation
                rotation = transform.transform.rotation
                args = ([translation.x, translation.y, translation.z], [rotation.x, rotation.y, rotation.z, rotation.w])
                try:
                    if static:
                        buffer.add_static(transform.header.frame_id, transform.child_frame_id, *args)
                    else:
                        buffer.add(transform.header.frame_id, transform.child_frame_id,
                                   stamp_to_ns(transform.header.stamp), *args)
                except ValueError as error:
                    raise BagError(f"{bag.path}: bad transform on {topic}: {error}") from None
    return buffer


def resolve_camera_pose(bag: EpisodeBag, buffer: TransformBuffer, base_frame: str, camera_frame: str,
                        stamp: int, frame_ns: int, calibration=None) -> tuple[np.ndarray, str]:
    """(base_from_camera 4x4, source): see the module docstring for the order."""
    from hamster_ros.conversions import pose_from_msg

    if calibration is not None:
        return calibration.base_from_camera, "calibration"
    if bag.mapping.camera_pose is not None:
        return bag.mapping.camera_pose.matrix(), "mapping"
    problem = f"/tf_static and /tf are empty (camera frame {camera_frame!r}, base frame {base_frame!r})"
    if buffer.frames:
        if not camera_frame:
            problem = "the colour camera_info has no frame_id to look up in /tf_static or /tf"
        else:
            try:
                matrix, dynamic = buffer.lookup(base_frame, camera_frame, stamp)
                return matrix, "tf" if dynamic else "tf_static"
            except TransformError as error:
                problem = f"no transform from {base_frame!r} to {camera_frame!r} in /tf_static or /tf: {error}"
    if bag.has(t.CAMERA_POSE):
        return pose_from_msg(bag.last_before(t.CAMERA_POSE, frame_ns)[1]).matrix(), "camera_pose_topic"
    raise BagError(f"{bag.path}: no camera pose: {problem}; the bag has no {t.CAMERA_POSE} either. Record the "
                   f"camera driver's /tf_static and the hand-eye transform, or give --calibration FILE or camera_pose "
                   f"in the mapping file")


def to_base_frame(points: np.ndarray, frame_id: str, stamp: int, base_frame: str, camera: PinholeCamera,
                  camera_frame: str, buffer: TransformBuffer, where: str) -> np.ndarray:
    """Points in `frame_id` -> the base frame: the camera's own frame with the episode's camera pose (whatever
    its source), any other frame through the transform buffer at `stamp`."""
    if frame_id == base_frame:
        return points
    if frame_id == camera_frame:
        matrix = camera.base_from_camera
    else:
        try:
            matrix, _ = buffer.lookup(base_frame, frame_id, stamp)
        except TransformError as error:
            raise BagError(f"{where}: cannot put the cloud in frame {frame_id!r} into the base frame "
                           f"{base_frame!r}: {error}") from None
    return (points @ matrix[:3, :3].T + matrix[:3, 3]).astype(np.float32)


def _nearest(bag: EpisodeBag, topic: str, stamp: int, tolerance_ns: int):
    """The message on `topic` whose header stamp is nearest `stamp` (within tolerance), else None. Only the
    stamps are read for the search (a real bag's depth images are large)."""
    best = None
    for connection in bag.connections.get(topic, []):
        received, stamps = bag.header_stamps(connection)
        if len(stamps):
            index = int(np.argmin(np.abs(stamps - stamp)))
            offset = abs(int(stamps[index]) - stamp)
            if offset <= tolerance_ns and (best is None or offset < best[0]):
                best = (offset, int(received[index]))
    return bag.first(topic, best[1])[1] if best else None


def gripper_from_widths(width_stamps: np.ndarray, widths: np.ndarray, width_range) -> tuple[np.ndarray, list]:
    """closed (N,) at the width samples and the events [(stamp ns, closed)] where the state changed."""
    from hamster_core.keyframes import gripper_closed_from_widths

    closed = gripper_closed_from_widths(widths, width_range)
    changes = np.flatnonzero(np.diff(closed.astype(np.int8))) + 1
    return closed, [(int(width_stamps[i]), bool(closed[i])) for i in changes]


DEPTH_PAIR_TOLERANCE_NS = 20_000_000   # aligned depth belongs to the colour frame within 20 ms of its stamp
CLOUD_STRIDE = 2


def oracle_path(episode: Episode) -> Path2D:
    """The end effector's own path over the episode, as the first frame's camera saw the scene, clipped to the
    image and RDP-simplified like a HAMSTER label (hamster_sim.rollout.projected_path)."""
    from hamster_sim.rollout import projected_path

    trajectory = episode.trajectory
    try:
        return projected_path(episode.camera, trajectory.positions, trajectory.closed)
    except ValueError as error:
        raise BagError(f"{episode.path}: {error}") from None


def load_episode(bag: EpisodeBag, *, open_fraction: float = 0.9, calibration=None) -> Episode:
    """Read what evaluation needs. The episode starts at the instruction (the recorder may have been
    running before the scene reset) and ends with the bag. `calibration`: a CameraCalibration given
    explicitly (overrides the bag's transforms)."""
    from hamster_core.calibration import CloudProjector, depth_in_metres
    from hamster_ros.conversions import (camera_from_msg, image_to_numpy, image_to_rgb, path_from_msg,
                                         pointcloud2_to_numpy)

    bag.require([t.COLOR_IMAGE, t.COLOR_INFO, t.EE_POSE], "an episode (first frame, camera model, end-effector "
                "trajectory; forward kinematics from joint states alone is not supported)")
    metadata = {}
    for _, msg in bag.messages(EPISODE_METADATA):  # the last record is the fullest
        metadata = json.loads(msg.data)
    instruction_msg = bag.first(t.INSTRUCTION)
    instruction = instruction_msg[1].data if instruction_msg else (
        metadata.get("instruction") or bag.custom_data.get("instruction", ""))   # ros2 bag record --custom-data
    start = instruction_msg[0] if instruction_msg else bag.reader.start_time
    end = bag.reader.end_time

    frame_ns, image = bag.first(t.COLOR_IMAGE, start) or bag.first(t.COLOR_IMAGE)
    rgb = image_to_rgb(image)
    _, info = bag.last_before(t.COLOR_INFO, frame_ns)
    poses = [(stamp, msg) for stamp, msg in bag.messages(t.EE_POSE, start)]
    if len(poses) < 2:
        raise BagError(f"{bag.path}: fewer than 2 end-effector poses after the episode start")
    base_frame = bag.mapping.base_frame or poses[0][1].header.frame_id or "base"
    camera_frame = info.header.frame_id or image.header.frame_id
    buffer = transform_buffer(bag)
    # Kinematics on the sender's clock (header stamps): receive times carry transport jitter that would show
    # up as speed spikes. Stamps that do not increase (a driver that leaves them empty) fall back to receive times.
    use_stamps = _stamps_usable([msg for _, msg in poses])
    clock = (lambda stamp, msg: stamp_to_ns(msg.header.stamp)) if use_stamps else (lambda stamp, msg: stamp)
    frame_stamp = clock(frame_ns, image)
    base_from_camera, pose_source = resolve_camera_pose(bag, buffer, base_frame, camera_frame, frame_stamp, frame_ns,
                                                        calibration)
    camera = camera_from_msg(info, base_from_camera, ignore_distortion=bag.mapping.ignore_distortion)

    cloud, cloud_source = None, ""
    if bag.has(t.POINTS):
        _, cloud_msg = bag.first(t.POINTS, start) or bag.first(t.POINTS)
        points, colors = pointcloud2_to_numpy(cloud_msg)
        # A camera driver's cloud is in an optical frame of the camera; the runtime's is in the base frame.
        points = to_base_frame(points, cloud_msg.header.frame_id or base_frame, clock(frame_ns, cloud_msg), base_frame,
                               camera, camera_frame, buffer, f"{bag.path} {bag.mapping.bag_names(t.POINTS)[0]}")
        cloud = (points, colors)
        cloud_source = f"{bag.mapping.bag_names(t.POINTS)[0]} ({cloud_msg.header.frame_id or base_frame})"
    elif bag.has(t.DEPTH_IMAGE):
        depth_msg = _nearest(bag, t.DEPTH_IMAGE, stamp_to_ns(image.header.stamp), DEPTH_PAIR_TOLERANCE_NS)
        if depth_msg is not None:
            # Aligned depth shares the colour stream's intrinsics and frame (realsense-ros aligned_depth_to_color).
            projector = CloudProjector(info.width, info.height, camera.fx, camera.fy, camera.cx, camera.cy,
                                       camera.base_from_camera, CLOUD_STRIDE)
            depth = depth_in_metres(image_to_numpy(depth_msg), depth_msg.encoding)
            cloud = projector.points(depth, rgb if rgb.shape[:2] == depth.shape else None)
            cloud_source = f"depth {bag.mapping.bag_names(t.DEPTH_IMAGE)[0]}"

    times = np.array([clock(stamp, msg) for stamp, msg in poses], np.int64)
    positions, orientations = _pose_arrays([msg for _, msg in poses])

    joints = bag.mapping.gripper_joint_names
    joint_msgs = list(bag.messages(t.JOINT_STATES)) if bag.has(t.JOINT_STATES) else []
    widths = [(stamp, clock(stamp, msg), gripper_width_from_joints(msg, joints)) for stamp, msg in joint_msgs]
    gripper_width = next((w for stamp, _, w in reversed(widths) if stamp <= frame_ns and w is not None), None)
    widths = [(when, w) for _, when, w in widths if w is not None]
    if gripper_width is None:
        gripper_width = widths[0][1] if widths else 0.08
    events = []
    if bag.has(t.GRIPPER_COMMAND):
        commands = [(clock(stamp, msg), msg.command == 1 or msg.width < open_fraction * 0.08)  # GRASP, or a narrow MOVE
                    for stamp, msg in bag.messages(t.GRIPPER_COMMAND)]
        event_times = np.array([stamp for stamp, _ in commands], np.int64)
        states = np.array([closed for _, closed in commands], bool)
        index = np.searchsorted(event_times, times, side="right") - 1
        closed = np.where(index >= 0, states[np.maximum(index, 0)], gripper_width < open_fraction * 0.08)
        source = "commands"
        previous = bool(closed[0]) if len(closed) else False
        for when, state in commands:
            if state != previous:
                events.append((int(when), bool(state)))
                previous = state
    elif len(widths) > 1:
        width_times = np.array([stamp for stamp, _ in widths], np.int64)
        width_closed, events = gripper_from_widths(width_times, np.array([w for _, w in widths]),
                                                   bag.mapping.gripper_width_range)
        index = np.clip(np.searchsorted(width_times, times, side="right") - 1, 0, len(widths) - 1)
        present = sorted({name for _, msg in joint_msgs for name in msg.name if name in joints})
        closed, source = width_closed[index], f"joint widths ({', '.join(present)})"
    else:
        closed, source = np.zeros(len(times), bool), "none"
    trajectory = Trajectory((times - times[0]) * 1e-9, positions, orientations, np.asarray(closed, bool), source,
                            times, events)

    episode = Episode(bag.path, instruction, metadata, start, end, frame_ns, rgb, camera, trajectory, cloud,
                      gripper_width, camera_pose_source=pose_source, base_frame=base_frame,
                      frame_stamp_ns=frame_stamp, cloud_source=cloud_source,
                      clock="header" if use_stamps else "receive", camera_frame=camera_frame, transforms=buffer)
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
