"""policy_node's side of the episode core (hamster_core.episode): messages in, executor and feedback out.
Runs on the episode's own thread; the node's callbacks and control thread share its state under locks."""
from __future__ import annotations

import dataclasses
import time

from std_msgs.msg import Header

from hamster_core.episode import (EpisodeRuntime, InputSnapshot, masks_drop_reason, path_drop_reason, vlm_failure,
                                  waiting_for)
from hamster_core.executor import ExecutorStatus
from hamster_core.path2d import PathError
from hamster_core.policies.base import Observation
from hamster_msgs.action import RunEpisode
from hamster_ros.conversions import ConversionError, masks_from_msg, path_from_msg, stamp_to_seconds
from hamster_ros.markers import lift_path, plan_markers
from hamster_ros.observation import observation_from_messages

POLL_SEC = 0.05
NEXT_FRAME_WAIT_SEC = 0.3  # longest a ready plan waits for the next camera frame (10 Hz in a slowed simulator)


class NodeEpisodeRuntime(EpisodeRuntime):
    def __init__(self, node):
        self.node = node
        self.goal_handle = None   # set when the accepted goal starts running
        self._planning_started = time.monotonic()
        self._converted: tuple = (None, None, None)   # (messages, Observation, problem) of the last conversion
        self._observed_cloud = None                    # the cloud message of the last observation returned
        self._frame_timing: tuple[dict, int] = ({}, 0)  # the planned frame's latency parts, its send time (ns)
        self._seen: dict[str, tuple] = {}              # source -> (message, its checked value)

    def now(self) -> float:
        return self.node.now()

    def wait(self) -> None:
        time.sleep(POLL_SEC)

    def halt(self) -> None:
        self.node.halt()

    def feedback(self, phase: str, progress: float = 0.0) -> None:
        if self.node.context.ok():  # shutting down: the action server's publisher is gone, the stop ends the loop
            self.goal_handle.publish_feedback(RunEpisode.Feedback(phase=phase, progress=float(progress)))

    def on_start(self, episode_start: float) -> None:
        self.node.drops.new_episode()
        self.node.report["episode_start"] = episode_start   # tests and tools stamp what they inject from this
        self.node.stream.publish_status()

    def on_waiting(self, missing: str | None) -> None:
        self.node.report["waiting_for"] = missing
        self.node.stream.publish_status()

    def interruptions(self, episode_start: float):
        node = self.node
        instruction = self.goal_handle.request.instruction.strip()
        vlm_status = node.latest.get("vlm_status")
        return node.robot_events.interruptions(
            episode_start, canceled=self.goal_handle.is_cancel_requested, stop_requested=node.stop_requested.is_set(),
            clock_jump=node.clock_jump, executor_halted=node.executor_core.halt_reason,
            vlm_failure=vlm_failure(vlm_status.data if vlm_status is not None else None, instruction, episode_start))

    def submit(self, keyframes, observation_stamp: float) -> None:
        node = self.node
        timing, sent_ns = self._frame_timing
        timing = dict(timing, plan_compute_ms=round(1e3 * (time.monotonic() - self._planning_started), 1))
        with node.executor_lock:  # refuses the plan if a stop arrived while it was computed
            node.executor_core.set_keyframes(keyframes, observation_stamp, self.now())
            node.plan_timing_pending = (timing, sent_ns)   # completed when the plan's first target goes out
            node.last_status = None

    def executor_progress(self) -> tuple[ExecutorStatus | None, float]:
        return self.node.last_status, self.node.progress

    def on_plan(self, number: int, observation: Observation, output) -> None:
        node = self.node
        node.get_logger().info(f"plan {number}: {len(output.keyframes)} keyframes {output.info}")
        header = Header(frame_id=node.base_frame, stamp=node.get_clock().now().to_msg())
        lifted = gripper = None
        if observation.path is not None and observation.camera is not None:
            lifted, found = lift_path(observation.path, observation.camera, observation.points)
            lifted[~found] = float("nan")
            gripper = observation.path.gripper
        node.plan_markers = plan_markers(header, output.keyframes, node.limits.workspace_min,
                                         node.limits.workspace_max, lifted, gripper)
        node.markers_pub.publish(node.plan_markers)

    # -- observations ---------------------------------------------------------------------------------
    def observe(self, instruction: str, episode_start: float) -> tuple[Observation | None, str | None]:
        observation, missing = self._observation(instruction, episode_start)
        if observation is not None:
            observation, cloud_msg = self._newest(observation, self._observed_cloud, instruction, episode_start)
            self._frame_timing = self._timing_of(observation, cloud_msg)
            self._planning_started = time.monotonic()
        return observation, missing

    def _timing_of(self, observation: Observation, cloud_msg) -> tuple[dict, int]:
        """The planned frame's latency so far, on the wall clock: the cloud's publisher -> this node, and its
        wait here until planning starts; with ROS time on the system clock (a real camera), also the camera's
        stamp -> its cloud's publication. Unknown parts are None (the middleware gave no timestamps)."""
        arrival = self.node.latest.arrival("cloud", cloud_msg)
        if arrival is None:
            return {"frame_transport_ms": None, "frame_age_at_plan_ms": None, "camera_stamp_to_send_ms": None}, 0
        simulated = self.node.get_clock().ros_time_is_active
        return {"frame_transport_ms": round(arrival.transport_ms, 2),
                "frame_age_at_plan_ms": round((time.time_ns() - arrival.received_ns) / 1e6, 2),
                "camera_stamp_to_send_ms": None if simulated else round(
                    arrival.sent_ns / 1e6 - 1e3 * observation.stamp, 2)}, arrival.sent_ns

    def _newest(self, ready: Observation, ready_cloud, instruction: str, episode_start: float):
        """Plan on the next camera frame rather than one that may be a camera period old: waiting for it costs
        the episode at most that period, and the plan then starts from the scene as it is. Falls back to
        `ready` when no newer frame comes. Returns the observation and its cloud message."""
        deadline = time.monotonic() + NEXT_FRAME_WAIT_SEC
        while time.monotonic() < deadline:
            cloud_msg = self.node.latest.get("cloud")
            if cloud_msg is not None and stamp_to_seconds(cloud_msg.header.stamp) > ready.stamp:
                newer, _ = self._observation(instruction, episode_start)
                if newer is not None and newer.stamp > ready.stamp:
                    return newer, self._observed_cloud
                time.sleep(0.005)  # the new frame's other inputs (masks) are still on their way
            time.sleep(0.002)
        return ready, ready_cloud

    def _observation(self, instruction: str, episode_start: float) -> tuple[Observation | None, str | None]:
        """The newest messages, converted, checked by the core's readiness rules."""
        node = self.node
        now = self.now()
        cloud_msg, info, camera_pose_msg, path_msg, masks_msg = node.latest.get(
            "cloud", "camera_info", "camera_pose", "path", "masks")
        with node.state_lock:
            ee_pose, ee_stamp, width = node.ee_pose, node.ee_stamp, node.gripper_width
        observation, cloud_problem = self._convert(instruction, cloud_msg, info, camera_pose_msg, ee_pose, width)
        path = self._checked("path", path_msg, lambda msg: self._check_path(msg, instruction, episode_start))
        masks = self._checked("masks", masks_msg,
                              lambda msg: self._check_masks(msg, info, instruction, episode_start)) or {}
        if masks and masks_drop_reason(masks_msg.phrases, stamp_to_seconds(masks_msg.header.stamp), instruction,
                                       episode_start, now, node.input_rules.max_input_age_sec):
            masks = {}   # aged out since it was checked: superseded, not dropped
        inputs = InputSnapshot(now=now, ee_stamp=ee_stamp,
                               cloud_stamp=stamp_to_seconds(cloud_msg.header.stamp) if cloud_msg else None,
                               camera_ready=info is not None and camera_pose_msg is not None,
                               cloud_problem=cloud_problem, robot_enabled=node.robot_events.gate == "streaming",
                               path=path, masks=masks)
        missing = waiting_for(node.input_rules, inputs, instruction, episode_start, node.policy.required_inputs)
        if missing:
            return None, missing
        observation.path, observation.masks = path, masks   # parsed and checked above, with the same conversions
        self._observed_cloud = cloud_msg
        return observation, None

    def _checked(self, source: str, msg, check):
        """`check(msg)` -> (value, None) or (None, (reason, detail)), once per message however often the loop looks;
        every message not used is counted by reason (status and /diagnostics) and each reason logged once per
        episode, with the count."""
        if msg is None:
            return None
        if self._seen.get(source, (None,))[0] is not msg:
            value, dropped = check(msg)
            self._seen[source] = (msg, value)
            if dropped is not None:
                self._drop(source, *dropped)
        return self._seen[source][1]

    def _drop(self, source: str, reason: str, detail: str = "") -> None:
        line = self.node.drops.record(source, reason, detail)
        if line:
            self.node.get_logger().warning(line)

    def _check_path(self, msg, instruction: str, episode_start: float):
        reason = path_drop_reason(msg.instruction, stamp_to_seconds(msg.header.stamp), instruction, episode_start)
        if reason:
            return None, (reason, f"{msg.instruction!r} stamped {stamp_to_seconds(msg.header.stamp):.3f}")
        try:
            return path_from_msg(msg), None
        except PathError as error:
            return None, ("invalid", str(error))

    def _check_masks(self, msg, info, instruction: str, episode_start: float):
        stamp = stamp_to_seconds(msg.header.stamp)
        reason = masks_drop_reason(msg.phrases, stamp, instruction, episode_start, self.now(),
                                   self.node.input_rules.max_input_age_sec)
        if reason:
            return None, (reason, f"{list(msg.phrases)} stamped {stamp:.3f}")
        try:
            masks = masks_from_msg(msg)
        except (ConversionError, ValueError) as error:
            return None, ("invalid", str(error))
        if info is not None and any(mask.shape != (info.height, info.width) for mask in masks.values()):
            return None, ("of the wrong size", f"{[m.shape[::-1] for m in masks.values()]}: the camera's images are "
                                               f"{info.width}x{info.height}")
        return masks, None

    def _convert(self, instruction, cloud_msg, info, camera_pose_msg, tcp_pose, width):
        """(Observation, None) from the newest cloud and camera, or (None, what is wrong with them); converted
        once per cloud, however often the loop looks while it waits for other inputs."""
        if cloud_msg is None or tcp_pose is None:
            return None, None   # the readiness rules say which is missing
        key = (cloud_msg, info, camera_pose_msg)
        if self._converted[0] is None or any(a is not b for a, b in zip(key, self._converted[0])):
            try:  # the one messages -> Observation conversion, shared with the demonstration loader
                observation = observation_from_messages(instruction=instruction, cloud=cloud_msg, tcp_pose=tcp_pose,
                                                        gripper_width=width, camera_info=info,
                                                        camera_pose=camera_pose_msg)
                problem = None if len(observation.points) else "a point cloud with finite points"
            except (ConversionError, ValueError) as error:
                observation, problem = None, "valid camera and point cloud"
                self._drop("camera and cloud", "invalid", str(error))
            if problem == "a point cloud with finite points":
                self._drop("cloud", "without a finite point")
            self._converted = (key, observation, problem)
        _, observation, problem = self._converted
        if observation is not None:   # the robot's state moves on while the camera's frame stays
            observation = dataclasses.replace(observation, tcp_pose=tcp_pose, gripper_width=width)
        return observation, problem
