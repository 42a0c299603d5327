"""Record topics of a live graph into a rosbag2 (mcap by default) with the pure-Python `rosbags` writer.

Messages arrive serialized (raw subscriptions) and are written as they are: no deserialization on the hot
path, and the bag carries the same CDR bytes and type definitions `ros2 bag record` would write.
"""
from __future__ import annotations

import os
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore, get_types_from_msg

INTERFACE_PACKAGES = ("hamster_msgs",)
RECORDER_QUEUE_DEPTH = 200


def ros_type_name(msg_class) -> str:
    """sensor_msgs.msg.Image -> 'sensor_msgs/msg/Image'."""
    package, kind = msg_class.__module__.split(".")[:2]
    return f"{package}/{kind}/{msg_class.__name__}"


def interface_share_directory(package: str) -> Path:
    """Where `package`'s interface files are installed: the ament index when sourced, else this prefix
    (the venv set-up installs hamster_msgs there without a setup script to source)."""
    if os.environ.get("AMENT_PREFIX_PATH"):
        from ament_index_python.packages import get_package_share_directory
        return Path(get_package_share_directory(package))
    return Path(sys.prefix) / "share" / package


def project_typestore():
    """The ROS 2 kilted types plus this project's own interfaces, read from their installed .msg files."""
    typestore = get_typestore(Stores.ROS2_KILTED)
    types = {}
    for package in INTERFACE_PACKAGES:
        for path in sorted((interface_share_directory(package) / "msg").glob("*.msg")):
            types.update(get_types_from_msg(path.read_text(), f"{package}/msg/{path.stem}"))
    typestore.register(types)
    return typestore


@dataclass(frozen=True)
class RecordedTopic:
    name: str
    msg_class: type
    qos: QoSProfile
    max_rate_hz: float | None = None    # thin out heavy streams; None keeps every message


class BagRecorder:
    def __init__(self, node: Node, path: Path | str, topics: list[RecordedTopic], storage: str = "mcap",
                 metadata: dict[str, str] | None = None):
        plugins = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
        if storage not in plugins:
            raise ValueError(f"storage must be one of {sorted(plugins)}, got {storage!r}")
        self.path = Path(path)
        if self.path.exists():
            raise ValueError(f"bag {self.path} already exists")
        self._node = node
        self._lock = threading.Lock()
        self._closed = False
        self._writer = Writer(self.path, version=9, storage_plugin=plugins[storage])
        for key, value in (metadata or {}).items():
            self._writer.set_custom_data(key, str(value))
        self._writer.open()
        typestore = project_typestore()
        self.counts: dict[str, int] = {}
        self._subscriptions = []
        for topic in topics:
            connection = self._writer.add_connection(topic.name, ros_type_name(topic.msg_class),
                                                     typestore=typestore)
            self.counts[topic.name] = 0
            # Same reliability and durability as the topic's publishers, but a deep queue: a recorder that
            # falls behind for a moment must not lose messages that keep-last-1 would overwrite.
            qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=RECORDER_QUEUE_DEPTH,
                             reliability=topic.qos.reliability, durability=topic.qos.durability)
            self._subscriptions.append(node.create_subscription(
                topic.msg_class, topic.name, self._writer_callback(topic, connection), qos, raw=True))

    def _writer_callback(self, topic: RecordedTopic, connection):
        min_interval_ns = int(1e9 / topic.max_rate_hz) if topic.max_rate_hz else 0
        last = [-min_interval_ns]

        def callback(data: bytes):
            now = self._node.get_clock().now().nanoseconds
            if now - last[0] < min_interval_ns:
                return
            last[0] = now
            with self._lock:
                if not self._closed:
                    self._writer.write(connection, now, data)
                    self.counts[topic.name] += 1
        return callback

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for subscription in self._subscriptions:
                self._node.destroy_subscription(subscription)
            self._writer.close()
