"""Write an in-process episode (hamster_sim.rollout) into a rosbag2 with the project's message types, on the
topics and QoS of a live run, without DDS: every message is built with the same hamster_ros.conversions
functions sim_node and policy_node publish with and serialized with rclpy, so the bag holds the bytes a live
recording (hamster_bag.recorder) would.

Receive times are simulated time (there is no transport in between); header stamps are simulated time too, as
sim_node stamps them. The demonstration's path is written as HAMSTER labels its data: the executed
end-effector trajectory projected into the first frame's camera and RDP-simplified ("proprioceptive
projection"), latched on /hamster/path at the first frame.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from rclpy.serialization import serialize_message
from rosbags.rosbag2 import Writer

from hamster_core.executor import ExecutorCommand, ExecutorStatus
from hamster_core.geometry import Pose
from hamster_ros import interfaces as t
from hamster_bag.recorder import (EPISODE_METADATA_TOPIC, STORAGES, episode_metadata, project_typestore,
                                  ros_type_name, rosbags_qos)
from hamster_sim.rollout import ORACLE_RDP_EPSILON, EpisodeObserver, Frame, projected_path
from hamster_sim.sim_node import JOINT_NAME_MAP

PATH_MODEL_ID = f"proprioceptive_projection(rdp_epsilon={ORACLE_RDP_EPSILON})"
BASE_FRAME, CAMERA_FRAME = "base", "camera_color_optical_frame"   # sim_node's frame ids


def _ns(seconds: float) -> int:
    return int(round(seconds * 1e9))


def cdr_bytes(msg, typestore) -> bytes:
    """rclpy's CDR of `msg` as a bag stores it. rclpy (Fast CDR 2) pads the end of some messages to 8 bytes
    (a JointState: 76 bytes for rosbags' 72), and rosbags' reader refuses any size but the exact one, so
    the trailing padding is cut to the length that reads back."""
    data = serialize_message(msg)
    msgtype = ros_type_name(type(msg))
    for trim in range(0, 8):
        try:
            typestore.deserialize_cdr(data[:len(data) - trim], msgtype)
        except Exception:  # noqa: BLE001 - rosbags raises its own errors for a wrong size
            continue
        return data[:len(data) - trim]
    raise ValueError(f"cannot serialize a {msgtype} that reads back")


class BagEpisodeWriter(EpisodeObserver):
    """Collects an episode's messages (state and commands every executor tick, camera frames at
    `camera_rate_hz` plus every planning frame), then writes them in time order with `close()`."""

    def __init__(self, path: Path | str, *, camera_rate_hz: float = 2.0, storage: str = "mcap",
                 metadata: dict | None = None, keep_messages: bool = False):
        """keep_messages: keep the written (receive ns, topic, rclpy message) list in `messages` after close()
        (tests compare them with what the bag gives back)."""
        if storage not in STORAGES:
            raise ValueError(f"storage must be one of {sorted(STORAGES)}, got {storage!r}")
        if not 0 <= camera_rate_hz <= 100:
            raise ValueError(f"camera_rate_hz must be in [0, 100], got {camera_rate_hz}")
        self.path = Path(path)
        if self.path.exists():
            raise ValueError(f"bag {self.path} already exists")
        self.camera_rate_hz = camera_rate_hz
        self.storage = storage
        self.metadata = episode_metadata(**(metadata or {}))
        self._messages: list[tuple[int, int, str, object]] = []   # (ns, order, topic, message)
        self._qos: dict[str, object] = {}
        self._types: dict[str, str] = {}
        self._positions: list[np.ndarray] = []
        self._closed_state: list[bool] = []
        self._gripper_closed = False
        self._first: Frame | None = None
        self._instruction = ""
        self._phrases: dict[str, str] = {}
        self.counts: dict[str, int] = {}
        self.keep_messages = keep_messages
        self.messages: list[tuple[int, str, object]] = []

    # -- messages ---------------------------------------------------------------------------------------------
    def _add(self, topic: str, qos, time: float, msg) -> None:
        self._qos.setdefault(topic, qos)
        self._types.setdefault(topic, ros_type_name(type(msg)))
        self._messages.append((_ns(time), len(self._messages), topic, msg))

    @staticmethod
    def _header(frame_id: str, time: float):
        from std_msgs.msg import Header

        from hamster_ros.conversions import seconds_to_stamp
        return Header(frame_id=frame_id, stamp=seconds_to_stamp(time))

    # -- EpisodeObserver --------------------------------------------------------------------------------------
    def on_start(self, world, instruction: str, first: Frame) -> None:
        from std_msgs.msg import String

        from hamster_ros.conversions import pose_to_msg
        from hamster_sim.ground_truth import encode_scene_payload

        self._first, self._instruction = first, instruction
        self._phrases = {"target_object": world.scene.target, "placement_area": world.scene.container}
        time = first.time
        self._add(t.SIM_SCENE, t.LATCHED, time,
                  String(data=encode_scene_payload(world.scene, world.segmentation_ids())))
        self._add(t.CAMERA_POSE, t.LATCHED, time,
                  pose_to_msg(Pose.from_matrix(first.camera.base_from_camera), self._header(BASE_FRAME, time)))
        self._add(t.INSTRUCTION, t.LATCHED, time, String(data=instruction))
        self.on_state(time, world)

    def on_state(self, time: float, world) -> None:
        from rosgraph_msgs.msg import Clock
        from sensor_msgs.msg import JointState

        from hamster_ros.conversions import pose_to_msg, seconds_to_stamp
        header = self._header(BASE_FRAME, time)
        tcp = world.tcp_pose()
        self._add("/clock", t.SENSOR, time, Clock(clock=seconds_to_stamp(time)))
        self._add(t.JOINT_STATES, t.SENSOR, time, JointState(
            header=header, name=[JOINT_NAME_MAP.get(n, n) for n in world.joint_names()],
            position=[float(p) for p in world.joint_positions()],
            velocity=[float(v) for v in world.joint_velocities()]))
        self._add(t.EE_POSE, t.SENSOR, time, pose_to_msg(tcp, header))
        self._positions.append(tcp.position.copy())
        self._closed_state.append(self._gripper_closed)

    def on_frame(self, frame: Frame) -> None:
        from hamster_ros.conversions import camera_info_to_msg, masks_to_msg, numpy_to_image, numpy_to_pointcloud2
        from hamster_core.perception.backend import box_of

        header = self._header(CAMERA_FRAME, frame.time)
        self._add(t.COLOR_IMAGE, t.SENSOR, frame.time, numpy_to_image(frame.rgb, "rgb8", header))
        self._add(t.DEPTH_IMAGE, t.SENSOR, frame.time, numpy_to_image(frame.depth, "32FC1", header))
        self._add(t.SEGMENTATION, t.SENSOR, frame.time, numpy_to_image(frame.segmentation, "32SC1", header))
        self._add(t.COLOR_INFO, t.SENSOR, frame.time, camera_info_to_msg(frame.camera, header))
        self._add(t.POINTS, t.SENSOR, frame.time,
                  numpy_to_pointcloud2(frame.points, frame.colors, self._header(BASE_FRAME, frame.time)))
        present = [(label, mask) for label, mask in frame.masks.items() if mask.any()]
        if present:
            phrases = self._phrases
            self._add(t.MASKS, t.SENSOR, frame.time, masks_to_msg(
                header, [label for label, _ in present], [phrases.get(label, "") for label, _ in present],
                [mask for _, mask in present], [1.0] * len(present),
                np.array([box_of(mask) for _, mask in present], dtype=np.int64)))

    def on_command(self, time: float, command: ExecutorCommand) -> None:
        from hamster_ros.conversions import gripper_goal_to_msg, pose_to_msg
        header = self._header(BASE_FRAME, time)
        if command.target is not None:
            self._add(t.CARTESIAN_TARGET, t.COMMAND, time, pose_to_msg(command.target, header))
        if command.gripper is not None:
            self._gripper_closed = command.gripper.grasp
            self._add(t.GRIPPER_COMMAND, t.EVENTS, time, gripper_goal_to_msg(command.gripper, header))

    def on_status(self, time: float, status: ExecutorStatus) -> None:
        from std_msgs.msg import String
        self._add(t.EXECUTOR_STATUS, t.EVENTS, time, String(data=json.dumps(
            {"status": status.value, "progress": 0.0, "detail": "", "waiting_for": None, "stamp": time,
             "stream": {}})))

    # -- writing ------------------------------------------------------------------------------------------------
    def close(self, **metadata) -> Path:
        """Add the demonstration's path and the metadata, then write the bag. Returns its folder."""
        from std_msgs.msg import String

        from hamster_ros.conversions import path_to_msg
        if self._first is None:
            raise ValueError("the episode never started: nothing to write")
        self.metadata.update(metadata)
        first = self._first
        path = projected_path(first.camera, np.array(self._positions), np.array(self._closed_state))
        self._add(t.PATH, t.LATCHED, first.time, path_to_msg(
            path, self._header(CAMERA_FRAME, first.time), first.camera.width, first.camera.height,
            instruction=self._instruction, model_id=PATH_MODEL_ID))
        end = max(ns for ns, *_ in self._messages) * 1e-9
        self._add(EPISODE_METADATA_TOPIC, t.LATCHED, end, String(data=json.dumps(self.metadata, sort_keys=True)))
        self._messages.sort(key=lambda item: (item[0], item[1]))
        typestore = project_typestore()
        writer = Writer(self.path, version=9, storage_plugin=STORAGES[self.storage])
        writer.open()
        try:
            connections = {topic: writer.add_connection(topic, self._types[topic], typestore=typestore,
                                                        offered_qos_profiles=[rosbags_qos(self._qos[topic])])
                           for topic in dict.fromkeys(topic for _, _, topic, _ in self._messages)}
            for key, value in self.metadata.items():
                writer.set_custom_data(key, value if isinstance(value, str) else json.dumps(value))
            for ns, _, topic, msg in self._messages:
                writer.write(connections[topic], ns, cdr_bytes(msg, typestore))
                self.counts[topic] = self.counts.get(topic, 0) + 1
        finally:
            writer.close()
        if self.keep_messages:
            self.messages = [(ns, topic, msg) for ns, _, topic, msg in self._messages]
        self._messages.clear()
        return self.path
