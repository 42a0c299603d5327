"""Record topics of a live graph into a rosbag2 (mcap by default) with the pure-Python `rosbags` writer.

Messages arrive serialized (raw subscriptions) and are written as they are: no deserialization on the hot
path, and the bag carries the same CDR bytes and type definitions `ros2 bag record` would write. Each topic's
QoS goes into the bag (offered_qos_profiles), so `hamster-replay` can republish latched topics as latched.

Episode metadata (instruction, backends, model ids, parameters, package version) is written twice: as the
bag's metadata.yaml custom_data (for `ros2 bag info`-style tools) and as a latched std_msgs/String JSON on
/hamster/episode_metadata inside the bag (it survives conversion and replay; the last one is the fullest).
"""
from __future__ import annotations

import json
import os
import queue
import sys
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

from rclpy.clock import ClockType
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.subscription import MessageInfo
from rosbags.interfaces import (Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime)
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


EPISODE_METADATA_TOPIC = "/hamster/episode_metadata"
STORAGES = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}


def package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("hamster_runtime")
    except PackageNotFoundError:
        return "unknown"


def episode_metadata(**fields) -> dict:
    """The metadata record of an episode: the caller's fields plus package version, ROS distro and time."""
    return {"package": "hamster_runtime", "package_version": package_version(),
            "ros_distro": os.environ.get("ROS_DISTRO", "kilted"), "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            **fields}


def rosbags_qos(qos: QoSProfile) -> Qos:
    """An rclpy QoS profile as the rosbags (rosbag2 metadata) record."""
    never = QosTime(0, 0)
    return Qos(history=QosHistory.KEEP_ALL if qos.history == HistoryPolicy.KEEP_ALL else QosHistory.KEEP_LAST,
               depth=int(qos.depth),
               reliability=(QosReliability.BEST_EFFORT if qos.reliability == ReliabilityPolicy.BEST_EFFORT
                            else QosReliability.RELIABLE),
               durability=(QosDurability.TRANSIENT_LOCAL if qos.durability == DurabilityPolicy.TRANSIENT_LOCAL
                           else QosDurability.VOLATILE),
               deadline=never, lifespan=never, liveliness=QosLiveliness.AUTOMATIC,
               liveliness_lease_duration=never, avoid_ros_namespace_conventions=False)


@dataclass(frozen=True)
class RecordedTopic:
    name: str
    msg_class: type
    qos: QoSProfile
    max_rate_hz: float | None = None    # thin out heavy streams; None keeps every message


class BagRecorder:
    """Subscribes raw to `topics` and writes every message, stamped with its receive time, into a new bag.

    One writer thread owns the rosbags Writer: it opens it, adds the connections, writes and closes. The
    subscription callbacks (any executor thread) and add_metadata (any thread) only queue work for it. rosbags'
    sqlite3 storage holds a Python sqlite3 connection, which raises ProgrammingError for every call from a
    thread other than the one that opened it: written from the callbacks, a sqlite3 bag would keep only what
    the opening thread wrote (test/bag/test_recorder.py). The writer thread also keeps disk I/O off the executor's
    threads for either storage.

    `counts` holds the messages actually written per topic; a failed write is logged once, kept in `error`
    and ends the recording (later messages are dropped).
    """

    def __init__(self, node: Node, path: Path | str, topics: list[RecordedTopic], storage: str = "mcap",
                 metadata: dict | None = None):
        if storage not in STORAGES:
            raise ValueError(f"storage must be one of {sorted(STORAGES)}, got {storage!r}")
        self.path = Path(path)
        if self.path.exists():
            raise ValueError(f"bag {self.path} already exists")
        self._node = node
        self._lock = threading.Lock()
        self._closed = False
        self.error: str | None = None
        self.counts: dict[str, int] = {}
        self.metadata: dict = {}
        self._subscriptions = []
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=f"bag-writer:{self.path.name}", daemon=True)
        self._thread.start()
        try:
            self._writer = Writer(self.path, version=9, storage_plugin=STORAGES[storage])
            self._call(self._writer.open)
            typestore = project_typestore()
            self._typestore = typestore
            self._metadata_connection = self._add_connection(
                EPISODE_METADATA_TOPIC, "std_msgs/msg/String",
                QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL))
            if metadata:
                self.add_metadata(**metadata)
            for topic in topics:
                connection = self._add_connection(topic.name, ros_type_name(topic.msg_class), topic.qos)
                # Same reliability and durability as the topic's publishers, but a deep queue: a recorder that
                # falls behind for a moment must not lose messages that keep-last-1 would overwrite.
                qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=RECORDER_QUEUE_DEPTH,
                                 reliability=topic.qos.reliability, durability=topic.qos.durability)
                self._subscriptions.append(node.create_subscription(
                    topic.msg_class, topic.name, self._writer_callback(topic, connection), qos, raw=True))
        except BaseException:
            self._abort()
            raise

    # -- the writer thread -------------------------------------------------------------------------------------
    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            function, args, future = item
            try:
                result = function(*args)
            except Exception as error:  # noqa: BLE001 - reported to the caller or logged, never lost
                if future is not None:
                    future.set_exception(error)
                else:
                    self._fail(error)
            else:
                if future is not None:
                    future.set_result(result)

    def _call(self, function, *args):
        """Run function on the writer thread, after everything queued before it; return its result."""
        future: Future = Future()
        self._queue.put((function, args, future))
        return future.result()

    def _post(self, function, *args) -> None:
        """Queue function for the writer thread without waiting."""
        self._queue.put((function, args, None))

    def _fail(self, error: Exception) -> None:
        if self.error is None:
            self.error = f"{type(error).__name__}: {error}"
            self._node.get_logger().error(f"writing bag {self.path} failed, recording stopped: {self.error}")

    def _write(self, topic: str, connection, stamp_ns: int, data: bytes) -> None:
        if self.error is not None:
            return
        self._writer.write(connection, stamp_ns, data)
        self.counts[topic] += 1

    def _add_connection(self, topic: str, msgtype: str, qos: QoSProfile):
        self.counts[topic] = 0
        return self._call(lambda: self._writer.add_connection(
            topic, msgtype, typestore=self._typestore, offered_qos_profiles=[rosbags_qos(qos)]))

    def _abort(self) -> None:
        for subscription in self._subscriptions:
            self._node.destroy_subscription(subscription)
        self._subscriptions.clear()
        self._queue.put(None)
        self._thread.join()

    # -- any thread ---------------------------------------------------------------------------------------------
    def _writer_callback(self, topic: RecordedTopic, connection):
        min_interval_ns = int(1e9 / topic.max_rate_hz) if topic.max_rate_hz else 0
        last = [-min_interval_ns]

        def callback(data: bytes, info: MessageInfo):
            now = self._receive_time(info)
            if now - last[0] < min_interval_ns:
                return
            last[0] = now
            with self._lock:
                if not self._closed:
                    self._post(self._write, topic.name, connection, now, data)
        return callback

    def _receive_time(self, info: MessageInfo) -> int:
        """When the middleware received the message, on the recorder's clock. The executor takes pending
        messages of different topics in no particular order and late when it falls behind, so callback time
        can put a message ahead of one that arrived before it (test_recorder pins this). rmw's receive stamp
        is system time: with ROS time active (use_sim_time) the callback time is the only one on that clock."""
        clock = self._node.get_clock()
        received = info.get("received_timestamp") or 0
        if received > 0 and not (clock.clock_type == ClockType.ROS_TIME and clock.ros_time_is_active):
            return received
        return clock.now().nanoseconds

    def add_metadata(self, **fields) -> None:
        """Merge fields into the episode's metadata: custom_data now, one more latched JSON message in the bag.
        Values must be JSON-serializable; custom_data holds them as strings (JSON for non-strings)."""
        with self._lock:
            if self._closed:
                return
            self.metadata.update(fields)
            for key, value in fields.items():
                self._post(self._writer.set_custom_data, key, value if isinstance(value, str) else json.dumps(value))
            data = self._typestore.serialize_cdr(
                self._typestore.types["std_msgs/msg/String"](data=json.dumps(self.metadata, sort_keys=True)),
                "std_msgs/msg/String")
            self._post(self._write, EPISODE_METADATA_TOPIC, self._metadata_connection,
                       self._node.get_clock().now().nanoseconds, bytes(data))

    def close(self) -> None:
        """Stop recording, write what is queued and close the bag (metadata.yaml, sqlite3 commit)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        for subscription in self._subscriptions:
            self._node.destroy_subscription(subscription)
        self._subscriptions.clear()
        try:
            self._call(self._writer.close)
        finally:
            self._queue.put(None)
            self._thread.join()
