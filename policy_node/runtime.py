"""policy_node's side of the episode core (hamster_core.episode): messages in, executor and feedback out.
Runs on the episode's own thread; the node's callbacks and control thread share its state under locks."""
from __future__ import annotations

import time

from std_msgs.msg import Header

from hamster_core.episode import EpisodeRuntime, InputSnapshot, masks_are_for, path_is_for, vlm_failure, waiting_for
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

    def now(self) -> float:
        return self.node.now()

    def wait(self) -> None:
        time.sleep(POLL_SEC)

    def halt(self) -> None:
        self.node.halt()

    def feedback(self, phase: str, progress: float = 0.0) -> None:
        if self.node.context.ok():  # shutting down: the action server's publisher is gone, the stop ends the loop
            self.goal_handle.publish_feedback(RunEpisode.Feedback(phase=phase, progress=float(progress)))

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
        node.report["plan_compute_ms"] = round(1e3 * (time.monotonic() - self._planning_started), 1)
        with node.executor_lock:  # refuses the plan if a stop arrived while it was computed
            node.executor_core.set_keyframes(keyframes, observation_stamp, self.now())
            node.plan_frame_stamp = observation_stamp
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
            observation = self._newest(observation, instruction, episode_start)
            self.node.report["frame_age_at_plan_ms"] = round(1e3 * (self.now() - observation.stamp), 1)
            self._planning_started = time.monotonic()
        return observation, missing

    def _newest(self, ready: Observation, instruction: str, episode_start: float) -> Observation:
        """Plan on the next camera frame rather than one that may be a camera period old: waiting for it costs
        the episode at most that period, and the plan then starts from the scene as it is. Falls back to
        `ready` when no newer frame comes."""
        deadline = time.monotonic() + NEXT_FRAME_WAIT_SEC
        while time.monotonic() < deadline:
            cloud_msg = self.node.latest.get("cloud")
            if cloud_msg is not None and stamp_to_seconds(cloud_msg.header.stamp) > ready.stamp:
                newer, _ = self._observation(instruction, episode_start)
                if newer is not None and newer.stamp > ready.stamp:
                    return newer
                time.sleep(0.005)  # the new frame's other inputs (masks) are still on their way
            time.sleep(0.002)
        return ready

    def _observation(self, instruction: str, episode_start: float) -> tuple[Observation | None, str | None]:
        """The newest messages, checked by the core's readiness rules, then converted."""
        node, log = self.node, self.node.get_logger()
        now = self.now()
        cloud_msg, info, camera_pose_msg, path_msg, masks_msg = node.latest.get(
            "cloud", "camera_info", "camera_pose", "path", "masks")
        with node.state_lock:
            ee_pose, ee_stamp, width = node.ee_pose, node.ee_stamp, node.gripper_width
        path = None
        if path_msg is not None and path_is_for(path_msg.instruction, stamp_to_seconds(path_msg.header.stamp),
                                                instruction, episode_start):
            try:
                path = path_from_msg(path_msg)
            except PathError as error:
                log.error(f"ignoring invalid path: {error}", throttle_duration_sec=5.0)
        masks = {}
        if masks_msg is not None and masks_are_for(masks_msg.phrases, stamp_to_seconds(masks_msg.header.stamp),
                                                   instruction, episode_start, now,
                                                   node.input_rules.max_input_age_sec):
            try:
                masks = masks_from_msg(masks_msg)
            except (ConversionError, ValueError) as error:
                log.error(f"ignoring invalid masks: {error}", throttle_duration_sec=5.0)
            if info is not None and any(mask.shape != (info.height, info.width) for mask in masks.values()):
                log.error(f"ignoring masks of size {[m.shape[::-1] for m in masks.values()]}: the camera's images "
                          f"are {info.width}x{info.height}", throttle_duration_sec=5.0)
                masks = {}
        inputs = InputSnapshot(now=now, ee_stamp=ee_stamp,
                               cloud_stamp=stamp_to_seconds(cloud_msg.header.stamp) if cloud_msg else None,
                               camera_ready=info is not None and camera_pose_msg is not None,
                               robot_enabled=node.robot_events.gate == "streaming", path=path, masks=masks)
        missing = waiting_for(node.input_rules, inputs, instruction, episode_start, node.policy.required_inputs)
        if missing:
            return None, missing
        try:  # the one messages -> Observation conversion, shared with the demonstration loader
            observation = observation_from_messages(instruction=instruction, cloud=cloud_msg, tcp_pose=ee_pose,
                                                    gripper_width=width, camera_info=info,
                                                    camera_pose=camera_pose_msg)
        except (ConversionError, ValueError) as error:
            log.error(f"ignoring invalid input: {error}", throttle_duration_sec=5.0)
            return None, "valid camera and point cloud"
        if len(observation.points) == 0:
            return None, "a point cloud with finite points"
        observation.path, observation.masks = path, masks   # parsed and checked above, with the same conversions
        return observation, None
