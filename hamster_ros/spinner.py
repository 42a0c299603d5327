"""An rclpy executor spinning on a thread of its own, stopped by that thread itself.

`threading.Thread(target=executor.spin)` plus `executor.shutdown()` from another thread races: shutdown()
destroys the executor's guard condition and node list while the spinning thread is inside
wait_for_ready_callbacks (ros2/rclpy#968). A fresh clone's CI run hung on such a thread, busy and holding the
GIL after shutdown, which left the main thread unable to reap a node process. Here the spinning thread checks a
flag between short spin_once() calls and leaves by itself; the executor is shut down only after it has left.
"""
from __future__ import annotations

import threading

from rclpy.executors import Executor, ExternalShutdownException
from rclpy.exceptions import InvalidHandle


class BackgroundSpinner:
    """Spins `executor` on a daemon thread from construction until stop()."""

    def __init__(self, executor: Executor, name: str = "spin", poll_sec: float = 0.1):
        if not poll_sec > 0:
            raise ValueError(f"poll_sec must be positive, got {poll_sec}")
        self.executor = executor
        self._poll_sec = poll_sec
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._spin, name=name, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        context = self.executor.context
        try:
            while not self._stopping.is_set() and context.ok():
                try:
                    self.executor.spin_once(timeout_sec=self._poll_sec)
                except InvalidHandle:
                    # An entity destroyed by another thread (a recorder's subscriptions at its close) while the
                    # executor put it in its wait set: rclpy skips such entities everywhere but in the event handlers'
                    # add_to_wait_set. The next wait is built without it. (A demo's spin thread died of it.)
                    continue
        except ExternalShutdownException:  # the context was shut down under us (SIGINT): nothing left to do
            pass
        except Exception:
            # A shutdown between the loop's check and the next wait surfaces as RCLError ("failed to initialize
            # wait set: the given context is not valid") or InvalidHandle instead: the same shutdown, no fault.
            if context.ok():
                raise

    def stop(self, timeout: float = 5.0) -> bool:
        """Leave the spin loop, then shut the executor down. Returns False, leaving the executor as it is, if
        the thread is still inside a callback after `timeout` seconds."""
        self._stopping.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            return False
        self.executor.shutdown()
        return True
