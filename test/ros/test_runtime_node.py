"""RuntimeNode: the project's nodes carry no middleware event handlers but the incompatible-QoS warning."""
import time

import pytest
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile, ReliabilityPolicy
from std_msgs.msg import String

from hamster_ros.node_main import RuntimeNode


@pytest.fixture
def context():
    context = rclpy.Context()
    rclpy.init(context=context)
    yield context
    rclpy.shutdown(context=context)


def test_only_the_subscription_incompatible_qos_handler_is_left(context):
    plain = rclpy.create_node("plain", context=context)
    lean = RuntimeNode("lean", context=context)
    try:
        # rclpy's default: incompatible QoS and incompatible type on both ends (each walked at every wake-up)
        assert len(plain.create_subscription(String, "/a", lambda _: None, 1).event_handlers) == 2
        assert len(plain.create_publisher(String, "/a", 1).event_handlers) == 2
        assert len(lean.create_subscription(String, "/a", lambda _: None, 1).event_handlers) == 1
        assert lean.create_publisher(String, "/a", 1).event_handlers == []
    finally:
        plain.destroy_node()
        lean.destroy_node()


@pytest.mark.graph  # two nodes discover each other over DDS
def test_a_publisher_with_incompatible_qos_is_still_reported(context):
    warnings = []

    class Logger:
        def warning(self, text):
            warnings.append(text)

    lean = RuntimeNode("lean_listener", context=context)
    lean.get_logger = Logger  # what the handler calls when the mismatch is discovered
    talker = rclpy.create_node("best_effort_talker", context=context)
    executor = SingleThreadedExecutor(context=context)
    try:
        lean.create_subscription(String, "/qos_mismatch", lambda _: None,
                                 QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE))
        talker.create_publisher(String, "/qos_mismatch", QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT))
        executor.add_node(lean)
        deadline = time.monotonic() + 20  # bounds a hang; discovery takes well under a second
        while not warnings and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.1)
        assert warnings and "/qos_mismatch" in warnings[0] and "RELIABILITY" in warnings[0], warnings
    finally:
        executor.shutdown()
        talker.destroy_node()
        lean.destroy_node()
