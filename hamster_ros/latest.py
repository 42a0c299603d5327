"""The newest message on each of several topics, shared safely between callback threads.

Nodes here work on the newest data, never on queues: a subscription replaces its slot, and readers take a
consistent snapshot of the slots they need.
"""
from __future__ import annotations

import threading

from rclpy.node import Node
from rclpy.qos import QoSProfile


class LatestMessages:
    def __init__(self, node: Node, callback_group=None):
        self._node = node
        self._group = callback_group
        self._lock = threading.Lock()
        self._slots: dict[str, object] = {}

    def subscribe(self, key: str, msg_type, topic: str, qos: QoSProfile) -> None:
        self._slots[key] = None

        def store(msg):
            with self._lock:
                self._slots[key] = msg
        self._node.create_subscription(msg_type, topic, store, qos, callback_group=self._group)

    def get(self, *keys: str):
        """One message, or a tuple of messages taken together (None where nothing has arrived)."""
        with self._lock:
            values = tuple(self._slots[key] for key in keys)
        return values[0] if len(values) == 1 else values
