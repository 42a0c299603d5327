"""The newest message on each of several topics, shared safely between callback threads.

Nodes here work on the newest data, never on queues: a subscription replaces its slot, and readers take a
consistent snapshot of the slots they need. Each slot also remembers when its last few messages were sent and
received (rmw's message info), for latency on the wall clock.
"""
from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass

from rclpy.node import Node
from rclpy.qos import QoSProfile


ARRIVALS_KEPT = 4   # per slot: a reader that took a message a few messages ago can still ask when it came


@dataclass(frozen=True)
class Arrival:
    """When a message was published (rmw's source timestamp, the sender's system clock) and received here (rmw's
    received timestamp): wall-clock nanoseconds, comparable across processes on one machine whatever ROS time
    says (a simulator's /clock)."""
    sent_ns: int
    received_ns: int

    @property
    def transport_ms(self) -> float:
        return (self.received_ns - self.sent_ns) / 1e6


class LatestMessages:
    def __init__(self, node: Node, callback_group=None):
        self._node = node
        self._group = callback_group
        self._lock = threading.Lock()
        self._slots: dict[str, object] = {}
        self._arrivals: dict[str, deque] = {}

    def subscribe(self, key: str, msg_type, topic: str, qos: QoSProfile) -> None:
        self._slots[key] = None
        self._arrivals[key] = arrivals = deque(maxlen=ARRIVALS_KEPT)

        def store(msg, info):
            sent, received = info.get("source_timestamp", 0), info.get("received_timestamp", 0)
            with self._lock:
                self._slots[key] = msg
                arrivals.append((msg, Arrival(sent, received) if sent > 0 and received > 0 else None))
        self._node.create_subscription(msg_type, topic, store, qos, callback_group=self._group)

    def arrival(self, key: str, msg) -> Arrival | None:
        """When `msg` (one of the slot's last messages) was sent and received; None if the middleware did not say
        or it is too old."""
        with self._lock:
            return next((arrival for kept, arrival in self._arrivals[key] if kept is msg), None)

    def get(self, *keys: str):
        """One message, or a tuple of messages taken together (None where nothing has arrived)."""
        with self._lock:
            values = tuple(self._slots[key] for key in keys)
        return values[0] if len(values) == 1 else values
