"""BagRecorder writes every message of a live stream, in order and byte for byte, to both storages.

Regression: with sqlite3 storage, every message written from an executor thread was lost. rosbags' sqlite3
writer holds a Python sqlite3 connection, which refuses use from any thread but the one that opened it; the
subscription callbacks run on the executor's threads, so only the metadata written from the opening thread
reached the bag. The recorder now owns the writer on one thread of its own.
"""
import time

import pytest
import yaml
from rosbags.rosbag2 import Reader

N_POSES, N_STATUS = 120, 12


@pytest.mark.graph  # a publisher and the recorder in one process, over DDS
@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_recorder_writes_every_message_of_a_live_stream(tmp_path, storage):
    import rclpy
    from geometry_msgs.msg import PoseStamped
    from rclpy.context import Context
    from rclpy.executors import MultiThreadedExecutor
    from rclpy.node import Node
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
    from rclpy.serialization import serialize_message
    from std_msgs.msg import String

    from hamster_ros import interfaces as t
    from hamster_bag.recorder import EPISODE_METADATA_TOPIC, BagRecorder, RecordedTopic
    from hamster_ros.spinner import BackgroundSpinner

    context = Context()
    rclpy.init(context=context)
    reliable = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=N_POSES, reliability=ReliabilityPolicy.RELIABLE)
    recorder_node = Node("recorder_under_test", context=context)
    publisher_node = Node("stream_publisher", context=context)
    executor = MultiThreadedExecutor(num_threads=2, context=context)
    executor.add_node(recorder_node)
    executor.add_node(publisher_node)
    spinner = BackgroundSpinner(executor)
    bag = tmp_path / "bag"
    try:
        recorder = BagRecorder(recorder_node, bag, [RecordedTopic(t.EE_POSE, PoseStamped, reliable),
                                                    RecordedTopic(t.INSTRUCTION, String, t.LATCHED),
                                                    RecordedTopic(t.EXECUTOR_STATUS, String, reliable)],
                               storage=storage, metadata={"command": "test", "seed": 3})
        poses = publisher_node.create_publisher(PoseStamped, t.EE_POSE, reliable)
        status = publisher_node.create_publisher(String, t.EXECUTOR_STATUS, reliable)
        instruction = publisher_node.create_publisher(String, t.INSTRUCTION, t.LATCHED)
        deadline = time.monotonic() + 10
        while (poses.get_subscription_count() < 1 or status.get_subscription_count() < 1
               or instruction.get_subscription_count() < 1):
            assert time.monotonic() < deadline, "the recorder never matched the publishers"
            time.sleep(0.05)
        sent = {t.EE_POSE: [], t.EXECUTOR_STATUS: [], t.INSTRUCTION: []}
        msg = String(data="pick up the red cube")
        instruction.publish(msg)
        sent[t.INSTRUCTION].append(serialize_message(msg))
        for i in range(N_POSES):  # ~200 Hz, like the command stream
            pose = PoseStamped()
            pose.header.frame_id = "base"
            pose.header.stamp.nanosec = i
            pose.pose.position.x, pose.pose.orientation.w = 0.001 * i, 1.0
            poses.publish(pose)
            sent[t.EE_POSE].append(serialize_message(pose))
            if i % 10 == 0:
                msg = String(data=f'{{"i": {i}}}')
                status.publish(msg)
                sent[t.EXECUTOR_STATUS].append(serialize_message(msg))
            time.sleep(0.005)
        deadline = time.monotonic() + 10
        while recorder.counts[t.EE_POSE] < N_POSES or recorder.counts[t.EXECUTOR_STATUS] < N_STATUS:
            assert time.monotonic() < deadline, f"recorder wrote only {recorder.counts}"
            time.sleep(0.05)
        recorder.add_metadata(success=True)
        recorder.close()
        recorder.close()  # idempotent
    finally:
        assert spinner.stop(), "the spin thread did not stop"
        recorder_node.destroy_node()
        publisher_node.destroy_node()
        rclpy.try_shutdown(context=context)

    assert recorder.error is None
    assert recorder.counts == {EPISODE_METADATA_TOPIC: 2, t.EE_POSE: N_POSES, t.INSTRUCTION: 1,
                               t.EXECUTOR_STATUS: N_STATUS}
    assert list(bag.glob("*.db3" if storage == "sqlite3" else "*.mcap")), list(bag.iterdir())
    received = {topic: [] for topic in sent}
    metadata_messages = []
    with Reader(bag) as reader:
        assert {c.topic: c.msgcount for c in reader.connections} == recorder.counts
        stamps = []
        for connection, stamp, raw in reader.messages():
            stamps.append(stamp)
            if connection.topic == EPISODE_METADATA_TOPIC:
                metadata_messages.append(bytes(raw))
            else:
                received[connection.topic].append(bytes(raw))
        assert stamps == sorted(stamps)
        assert reader.message_count == sum(recorder.counts.values())
    assert received == sent  # every message, in publishing order, byte for byte
    assert len(metadata_messages) == 2
    info = yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert info["storage_identifier"] == storage
    assert info["custom_data"]["command"] == "test" and info["custom_data"]["success"] == "true"
    assert info["message_count"] == sum(recorder.counts.values())


def test_recorder_refuses_an_existing_bag_and_an_unknown_storage(tmp_path):
    from hamster_bag.recorder import BagRecorder
    with pytest.raises(ValueError, match="storage must be one of"):
        BagRecorder(None, tmp_path / "bag", [], storage="rosbag1")
    with pytest.raises(ValueError, match="already exists"):
        BagRecorder(None, tmp_path, [])


@pytest.mark.graph
def test_recorder_stamps_when_a_message_arrived_not_when_its_callback_ran(tmp_path):
    """Regression: stamped at callback time, a /clock message published before a path could be written after it
    when the executor fell behind, and replay evaluation measured a negative path latency (test_replay)."""
    import rclpy
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from std_msgs.msg import String

    from hamster_bag.recorder import BagRecorder, RecordedTopic

    context = Context()
    rclpy.init(context=context)
    reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    node = Node("recorder_under_test", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    bag = tmp_path / "bag"
    try:
        recorder = BagRecorder(node, bag, [RecordedTopic("/first", String, reliable),
                                           RecordedTopic("/second", String, reliable)])
        first = node.create_publisher(String, "/first", reliable)
        second = node.create_publisher(String, "/second", reliable)
        deadline = time.monotonic() + 10
        while first.get_subscription_count() < 1 or second.get_subscription_count() < 1:
            assert time.monotonic() < deadline, "the recorder never matched the publishers"
            time.sleep(0.05)
        first.publish(String(data="a"))
        time.sleep(0.1)
        second.publish(String(data="b"))
        time.sleep(0.1)
        callbacks_start = time.time_ns()  # nothing has been taken yet: the executor was not spinning
        deadline = time.monotonic() + 10
        while sum(recorder.counts.get(topic, 0) for topic in ("/first", "/second")) < 2:
            assert time.monotonic() < deadline, f"recorder wrote only {recorder.counts}"
            executor.spin_once(timeout_sec=0.05)
        recorder.close()
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown(context=context)

    with Reader(bag) as reader:
        stamps = {connection.topic: stamp for connection, stamp, _ in reader.messages()
                  if connection.topic in ("/first", "/second")}
    assert stamps["/second"] < callbacks_start - 50_000_000, (stamps, callbacks_start)
    assert 50e6 < stamps["/second"] - stamps["/first"] < 1e9, stamps
