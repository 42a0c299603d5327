"""What one executor wake-up costs a node with the policy node's number of subscriptions and publishers: rclpy's
MultiThreadedExecutor and SingleThreadedExecutor, each with rclpy's Node and the project's RuntimeNode (no
middleware event handlers but the incompatible-QoS warning), and the experimental EventsExecutor for scale.
CPU time per received message (this process, publisher included), so a busy machine changes it little.

    .venv/bin/python bench/bench_executor.py

The policy node spins a SingleThreadedExecutor over a RuntimeNode: every microsecond here holds the GIL that
the target stream's thread needs.
"""
import json
import os
import time

from hamster_ros.dds import confine_dds_to_this_machine

confine_dds_to_this_machine(os.environ)
os.environ.setdefault("ROS_DOMAIN_ID", str(150 + os.getpid() % 50))

import rclpy  # noqa: E402
from rclpy.executors import MultiThreadedExecutor, SingleThreadedExecutor  # noqa: E402
from rclpy.experimental import EventsExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from std_msgs.msg import String  # noqa: E402

from hamster_ros.node_main import RuntimeNode  # noqa: E402

SUBSCRIPTIONS, PUBLISHERS, MESSAGES = 12, 8, 1000  # about the policy node's own numbers


def cpu_per_message_us(node_class, executor_class) -> float:
    node = node_class(f"bench_{node_class.__name__.lower()}")
    received = []
    for index in range(SUBSCRIPTIONS):
        node.create_subscription(String, f"/bench/topic_{index}", received.append, 10)
    for index in range(PUBLISHERS):
        node.create_publisher(String, f"/bench/out_{index}", 10)
    source = rclpy.create_node("bench_source")
    publisher = source.create_publisher(String, "/bench/topic_0", 10)
    executor = executor_class()
    executor.add_node(node)
    while publisher.get_subscription_count() == 0:
        executor.spin_once(timeout_sec=0.01)
    start = time.process_time()
    for _ in range(MESSAGES):
        count = len(received)
        publisher.publish(String(data="x"))
        while len(received) == count:
            executor.spin_once(timeout_sec=0.1)
    cpu = time.process_time() - start
    executor.shutdown()
    node.destroy_node()
    source.destroy_node()
    return 1e6 * cpu / MESSAGES


def main():
    rclpy.init()
    results = {}
    try:
        for executor_class in (MultiThreadedExecutor, SingleThreadedExecutor):
            for node_class in (Node, RuntimeNode):
                key = f"{executor_class.__name__}+{node_class.__name__}"
                results[key] = round(cpu_per_message_us(node_class, executor_class))
        results["EventsExecutor+RuntimeNode"] = round(cpu_per_message_us(RuntimeNode, EventsExecutor))
    finally:
        rclpy.shutdown()
    print(f"CPU per received message, {SUBSCRIPTIONS} subscriptions + {PUBLISHERS} publishers (us):")
    for key, value in results.items():
        print(f"  {key:40s} {value:6d}")
    print(json.dumps({"cpu_us_per_message": results}))


if __name__ == "__main__":
    main()
