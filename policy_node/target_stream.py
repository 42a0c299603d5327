"""policy_node's Cartesian target stream: a thread of its own, paced by the steady clock, so planning and message
callbacks never delay it and it keeps its rate in wall time when a simulator's /clock runs slow. Motion and
staleness are still measured in ROS time (the executor core decides; this only times, publishes and reports)."""
from __future__ import annotations

import json
import threading
import time

import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from std_msgs.msg import Header, String

from hamster_core.executor import ExecutorStatus, describe_status
from hamster_core.timing import ClockWatchdog, IntervalStats
from hamster_ros import interfaces as topics, realtime
from hamster_ros.conversions import gripper_goal_to_msg, pose_to_msg, stamp_to_seconds

HOLD_LEVELS = {ExecutorStatus.HOLDING_STALE: DiagnosticStatus.WARN, ExecutorStatus.HOLDING_TRACKING:
               DiagnosticStatus.WARN, ExecutorStatus.OUTSIDE_WORKSPACE: DiagnosticStatus.ERROR,
               ExecutorStatus.HALTED: DiagnosticStatus.ERROR}


class TargetStream:
    def __init__(self, node, rate_hz: float, watchdog: ClockWatchdog):
        self.node = node
        self.period = 1.0 / rate_hz
        self.watchdog = watchdog
        self.tick_stats = IntervalStats(window=int(10 * rate_hz))  # the last 10 s of the stream
        self.realtime = threading.Event()   # set once the thread runs with real-time priority
        self.running = True
        self._thread = threading.Thread(target=self._loop, name="control", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.running = False
        self._thread.join(timeout=1.0)

    def _loop(self):
        node = self.node
        refused = realtime.make_current_thread_realtime(node.control_priority)
        if node.control_priority and refused is None:
            self.realtime.set()
        elif refused:
            node.get_logger().warning(f"control_thread_priority={node.control_priority} not granted ({refused}); "
                                      "the stream runs with normal scheduling")
        deadline = time.monotonic()
        while self.running and rclpy.ok():
            try:
                self._tick()
            except Exception as error:  # never let one bad tick end the stream silently
                node.get_logger().error(f"control tick failed: {type(error).__name__}: {error}",
                                        throttle_duration_sec=1.0)
            deadline += self.period
            delay = deadline - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            else:
                deadline = time.monotonic()  # late: resume the period from now instead of bursting to catch up

    def _tick(self):
        node = self.node
        now = node.now()
        with node.state_lock:
            measured, measured_stamp = node.ee_pose, node.ee_stamp
        clock_stopped = self.watchdog.stopped_for(now, time.monotonic())
        if clock_stopped:
            measured = measured_stamp = None
        with node.executor_lock:
            if not node.executor_core.started:
                if measured is None or now - measured_stamp > node.executor_core.stale_after_sec:
                    return  # nothing is sent until a fresh measured pose exists to hold
                try:
                    node.executor_core.start(measured, now)
                except ValueError as error:
                    node.get_logger().error(f"not streaming: {error}", throttle_duration_sec=5.0)
                    return
            command = node.executor_core.update(now, measured, measured_stamp)
            plan_timing, node.plan_timing_pending = (
                (node.plan_timing_pending, None) if command.target is not None else (None, node.plan_timing_pending))
            # Under the lock, so an episode thread that just set a new plan never sees the old plan's DONE.
            status_changed = command.status != node.last_status
            node.last_status, node.progress = command.status, command.progress
            if status_changed:
                node.report["detail"] = (
                    f"ROS time has not advanced for {clock_stopped:.2f} s (is /clock published?)" if clock_stopped
                    else describe_status(command.status, node.executor_core, now, measured, measured_stamp,
                                         topics.EE_POSE))
        self.tick_stats.tick(time.monotonic())
        header = Header(frame_id=node.base_frame, stamp=node.get_clock().now().to_msg())
        if command.target is not None:
            node.target_pub.publish(pose_to_msg(command.target, header))
            if plan_timing is not None:  # the first target of a new plan: its frame's publication -> now (wall)
                timing, sent_ns = plan_timing
                node.report["plan_timing"] = dict(timing, frame_to_command_ms=round(
                    (time.time_ns() - sent_ns) / 1e6, 2) if sent_ns else None)
        if command.gripper is not None:
            node.gripper_pub.publish(gripper_goal_to_msg(command.gripper, header))
        if status_changed:
            node.report["stamp"] = stamp_to_seconds(header.stamp)
            detail = node.report["detail"]
            text = f"executor: {command.status.value}" + (f": {detail}" if detail else "")
            # (one call site per severity: rclpy refuses a call site whose severity changes)
            if HOLD_LEVELS.get(command.status) == DiagnosticStatus.ERROR:
                node.get_logger().error(text)
            elif command.status in HOLD_LEVELS:
                node.get_logger().warning(text)
            else:
                node.get_logger().info(text)
            self.publish_status()
        elif plan_timing is not None:
            self.publish_status()   # every plan's timing reaches the status topic

    def publish_status(self):
        """Executor state and the stream's own rate and jitter, on change and once a second; the same state on
        /diagnostics (WARN while holding, ERROR outside the workspace)."""
        node = self.node
        status = node.last_status.value if node.last_status else "not_started"
        report = dict(node.report, status=status, progress=round(node.progress, 3), stream=self.tick_stats.summary(),
                      dropped=node.drops.counts)
        node.status_pub.publish(String(data=json.dumps(report)))
        values = [KeyValue(key="status", value=status)]
        if report["waiting_for"]:
            values.append(KeyValue(key="waiting_for", value=report["waiting_for"]))
        values += [KeyValue(key=key, value=count) for key, count in node.drops.diagnostic_values()]
        array = DiagnosticArray(status=[DiagnosticStatus(
            level=HOLD_LEVELS.get(node.last_status, DiagnosticStatus.OK), name=node.get_name(), hardware_id="executor",
            message=f"{status}: {report['detail']}" if report["detail"] else status, values=values)])
        array.header.stamp = node.get_clock().now().to_msg()
        node.diagnostics_pub.publish(array)
