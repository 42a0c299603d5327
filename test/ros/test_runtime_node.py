"""RuntimeNode: the project's nodes carry no middleware event handlers but the incompatible-QoS warning."""
import os
import signal
import subprocess
import sys
import textwrap
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


RUN_NODE_SCRIPT = textwrap.dedent("""
    import os, signal, sys, time
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from hamster_ros import node_main
    class Executor(SingleThreadedExecutor):
        def spin_once(self, timeout_sec=None):
            if sys.argv[1] == "sigint":
                try:
                    os.kill(os.getpid(), signal.SIGINT); time.sleep(2)
                except KeyboardInterrupt:  # as pybind11 reports one raised inside rclpy's message conversion
                    raise RuntimeError("Unable to convert call argument '0' to Python object") from None
            raise RuntimeError("a real fault")
    node_main.SingleThreadedExecutor = Executor
    node_main.run_node(lambda: Node("run_node_test"), threads=1)
""")


@pytest.mark.graph
@pytest.mark.parametrize("case, code", [("sigint", 0), ("fault", 1)])
def test_run_node_takes_the_interrupt_pybind11_turned_into_a_runtime_error_as_the_interrupt(tmp_path, case, code):
    script = tmp_path / "script.py"
    script.write_text(RUN_NODE_SCRIPT)
    env = dict(os.environ, ROS_DOMAIN_ID=str(200 + os.getpid() % 30), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
    run = subprocess.run([sys.executable, str(script), case], capture_output=True, text=True, timeout=60, env=env)
    assert run.returncode == code, run.stderr
    assert ("Traceback" in run.stderr) == (case == "fault"), run.stderr


EVENTS_SCRIPT = textwrap.dedent("""
    from rclpy.node import Node
    from hamster_ros import node_main
    class Ticker(Node):
        def __init__(self):
            super().__init__("events_executor_test")
            self.ticks = 0
            self.create_timer(0.01, self.tick)
        def tick(self):
            self.ticks += 1
            if self.ticks == 20:
                print("ticked", flush=True)
    node_main.run_node(Ticker, events_executor=True)
""")


@pytest.mark.graph
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_run_node_with_the_events_executor_runs_timers_and_ends_on_a_signal(tmp_path, sig):
    """franka_bridge spins the EventsExecutor (rclpy marks it experimental): its timers run, and SIGINT or SIGTERM
    end the node cleanly like the other executors."""
    script = tmp_path / "script.py"
    script.write_text(EVENTS_SCRIPT)
    env = dict(os.environ, ROS_DOMAIN_ID=str(200 + os.getpid() % 30), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
    process = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env=env)
    try:
        assert process.stdout.readline().strip() == "ticked"
        process.send_signal(sig)
        assert process.wait(timeout=10) == 0, process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
