"""policy_node: the fast half. Runs episodes (RunEpisode action) with the episode core (hamster_core.episode)
and streams the executor's safety-clipped Cartesian targets at control rate from a thread of its own.

Faults: robot state older than stale_after_sec (or stamped in the future), or a ROS clock that stopped, holds
the last target at once; the status JSON on /hamster/executor_status and /diagnostics (WARN) say why, and what
a waiting episode still lacks. A backwards jump of the ROS clock drops the robot state received before it,
holds, and ends the running episode. Data path: docs/architecture.md.
"""
from __future__ import annotations

import threading

from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseStamped
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.clock import JumpThreshold
from rclpy.duration import Duration
from rclpy.task import Future
from sensor_msgs.msg import CameraInfo, JointState, PointCloud2
from std_msgs.msg import Header, String
from std_srvs.srv import Trigger
from visualization_msgs.msg import MarkerArray

from hamster_core.episode import InputRules, RobotEvents, run_episode
from hamster_core.input_drops import InputDrops
from hamster_core.executor import CartesianExecutor, GripperSettings, SafetyLimits
from hamster_core.policies.base import POLICIES, refuse_random_weights
from hamster_core.timing import ClockWatchdog
from hamster_msgs.action import RunEpisode
from hamster_msgs.msg import GripperCommand, GroundingMasks, Path2D
from hamster_ros import interfaces as topics, realtime
from hamster_ros.conversions import pose_from_msg, stamp_to_seconds
from hamster_ros.latest import LatestMessages
from hamster_ros.markers import current_target_markers
from hamster_ros.observation import gripper_width_from_joints
from hamster_ros.node_main import RuntimeNode, declare, declare_dataclass, declare_fields, run_node
from policy_node.runtime import NodeEpisodeRuntime
from policy_node.target_stream import TargetStream

# Wall time without any advance of the ROS clock before the robot state counts as stale (a stopped /clock). Longer
# than stale_after_sec: a simulator starved of CPU for a moment (another process starting) must not flicker.
CLOCK_TIMEOUT_SEC = 0.5


class PolicyNode(RuntimeNode):
    def __init__(self):
        super().__init__("policy_node")
        self.policy_name = declare(self, "policy", "path_follower", "Low-level policy, by registered name.")
        policy_cls = POLICIES.get(self.policy_name)
        self.policy = policy_cls(**(declare_fields(self, policy_cls.config_class, f"{self.policy_name}.")
                                    if policy_cls.config_class is not None else {}))
        warning = refuse_random_weights(self.policy, declare(
            self, "allow_random_weights", False, "Run a learned policy without a checkpoint (random weights, "
            "meaningless actions). Only the simulator sets it (--random-weights); refused otherwise."),
            "(allow_random_weights is false)")
        if warning:
            self.get_logger().warning(warning)
        self.base_frame = declare(self, "base_frame", "base", "Frame of the commanded poses (robot base).")
        rate_hz = declare(self, "rate_hz", 100.0, "Cartesian target stream rate.")
        self.control_priority = realtime.check_priority(declare(
            self, "control_thread_priority", 0, "SCHED_FIFO priority (1-99) of the target stream's thread; 0 = "
            "normal scheduling. Needs rtprio rights (e.g. the realtime group of a Franka control PC)."),
            "control_thread_priority")
        self.executor_priority = realtime.check_priority(declare(
            self, "executor_thread_priority", 0, "SCHED_FIFO priority (1-99) of the thread that spins this node's "
            "executor (message callbacks), below control_thread_priority; 0 = normal. A callback thread preempted "
            "while it holds the GIL stalls the stream. The episode's own thread always runs normally."),
            "executor_thread_priority")
        if self.executor_priority and self.executor_priority >= self.control_priority:
            raise ValueError(f"executor_thread_priority ({self.executor_priority}) must be below "
                             f"control_thread_priority ({self.control_priority})")
        realtime.set_gil_switch_interval(declare(
            self, "gil_switch_interval_sec", 0.0001, "Longest a thread running Python keeps the GIL while the "
            "stream thread waits for it (CPython's default: 0.005)."))
        self.episode_timeout = declare(self, "episode_timeout_sec", 120.0, "Default episode time limit.")
        self.gripper_joints = declare(self, "gripper_joint_names", ["fr3_finger_joint1", "fr3_finger_joint2"],
                                      "JointState names whose positions add up to the gripper opening (a "
                                      "message with only one of them counts it twice: the fingers mimic).")
        self.limits = declare_dataclass(self, SafetyLimits)
        stale_after = declare(self, "stale_after_sec", 0.2, "Hold the pose when the robot state is older than this.")
        self.input_rules = InputRules(
            stale_after_sec=stale_after,
            max_input_age_sec=declare(self, "max_input_age_sec", 1.0,
                                      "Camera, cloud and masks older than this are not used for planning."),
            mask_wait_sec=declare(self, "mask_wait_sec", 3.0,
                                  "How long to wait for grounding masks before planning without them (a policy "
                                  "conditioned on masks always waits for them)."),
            require_robot_enabled=declare(self, "require_robot_enabled", False, "Episodes wait until the robot "
                                          f"adapter streams ({topics.ROBOT_STATUS} gate 'streaming'; robot:=franka)."),
            enable_hint=topics.ROBOT_ENABLE)
        self.executor_core = CartesianExecutor(
            self.limits, declare_dataclass(self, GripperSettings, "gripper."), rate_hz=rate_hz,
            stale_after_sec=stale_after, max_plan_age_sec=declare(
                self, "max_plan_age_sec", 2.0, "Drop a plan computed on an observation older than this."))

        self.state_lock = threading.Lock()       # robot state, written by callbacks, read by both threads
        self.executor_lock = threading.Lock()    # the control tick and the episode thread both drive the executor
        self.ee_pose = self.ee_stamp = None
        self.gripper_width = 0.0
        self.robot_events = RobotEvents()
        self.drops = InputDrops()                # inputs episodes looked at and did not use, by reason
        self.stop_requested = threading.Event()
        self.clock_jump: str | None = None       # set when the clock jumped back during an episode
        self.episode: NodeEpisodeRuntime | None = None
        self._episode_thread: threading.Thread | None = None
        self.last_status = None                 # the executor's ExecutorStatus at the last tick
        self.progress = 0.0
        self.plan_timing_pending: tuple[dict, int] | None = None  # a new plan's latency, until its first target
        self.report = {"detail": "", "waiting_for": None, "stamp": 0.0, "episode_start": None, "plan_timing": None}

        inputs = ReentrantCallbackGroup()
        self.latest = LatestMessages(self, inputs)
        self.latest.subscribe("cloud", PointCloud2, topics.POINTS, topics.SENSOR)
        self.latest.subscribe("camera_info", CameraInfo, topics.COLOR_INFO, topics.SENSOR)
        self.latest.subscribe("camera_pose", PoseStamped, topics.CAMERA_POSE, topics.LATCHED)
        self.latest.subscribe("path", Path2D, topics.PATH, topics.LATCHED)
        self.latest.subscribe("masks", GroundingMasks, topics.MASKS, topics.SENSOR)
        self.latest.subscribe("vlm_status", String, topics.VLM_STATUS, topics.LATCHED)
        for msg_type, topic, qos, callback in (
                (String, topics.ROBOT_STATUS, topics.LATCHED, self._on_robot_status),   # robot:=franka's adapter
                (String, topics.GRIPPER_RESULT, topics.EVENTS,
                 lambda msg: self.robot_events.gripper_result(msg.data, self.now())),
                (PoseStamped, topics.EE_POSE, topics.SENSOR, self._on_ee_pose),          # read every tick:
                (JointState, topics.JOINT_STATES, topics.SENSOR, self._on_joint_states)):  # converted on arrival
            self.create_subscription(msg_type, topic, callback, qos, callback_group=inputs)
        self.target_pub = self.create_publisher(PoseStamped, topics.CARTESIAN_TARGET, topics.COMMAND)
        self.gripper_pub = self.create_publisher(GripperCommand, topics.GRIPPER_COMMAND, topics.EVENTS)
        self.instruction_pub = self.create_publisher(String, topics.INSTRUCTION, topics.LATCHED)
        self.status_pub = self.create_publisher(String, topics.EXECUTOR_STATUS, topics.EVENTS)
        self.diagnostics_pub = self.create_publisher(DiagnosticArray, topics.DIAGNOSTICS, topics.EVENTS)
        # rviz: the plan on every new plan, again with the current target at 2 Hz; latched, and each message is
        # the whole picture, so a late rviz sees it all.
        self.markers_pub = self.create_publisher(MarkerArray, topics.MARKERS, topics.LATCHED)
        self.plan_markers: MarkerArray | None = None
        # A simulator reset or restart sets sim time back: stamps from before would look fresh (or from the future).
        self._jump_handle = self.get_clock().create_jump_callback(
            JumpThreshold(min_forward=None, min_backward=Duration(nanoseconds=-1_000_000), on_clock_change=False),
            post_callback=self._on_clock_jump)
        self.create_service(Trigger, topics.STOP, self._on_stop, callback_group=inputs)
        self._episode_finished = self.create_guard_condition(lambda: None)
        self._action = ActionServer(self, RunEpisode, topics.RUN_EPISODE, self._run_episode,
                                    goal_callback=self._accept_goal, cancel_callback=lambda _: CancelResponse.ACCEPT,
                                    callback_group=ReentrantCallbackGroup())
        self.stream = TargetStream(self, rate_hz, ClockWatchdog(max(CLOCK_TIMEOUT_SEC, stale_after)))
        # Last, so no thread started above inherits it (this thread then spins the executor): and only above a
        # real-time stream thread, since a real-time callback thread over a normal one would starve the stream.
        if self.executor_priority and not self.stream.realtime.wait(timeout=2.0):
            self.get_logger().warning(f"executor_thread_priority={self.executor_priority} not applied: the stream "
                                      "thread runs without real-time priority")
        elif refused := realtime.make_current_thread_realtime(self.executor_priority):
            self.get_logger().warning(f"executor_thread_priority={self.executor_priority} not granted ({refused})")
        self.create_timer(1.0, self.stream.publish_status, callback_group=inputs)
        self.create_timer(0.5, self._publish_target_marker, callback_group=inputs)
        self.get_logger().info(f"policy={self.policy_name} rate={rate_hz} Hz workspace={self.limits.workspace_min}.."
                               f"{self.limits.workspace_max}")

    # -- inputs ---------------------------------------------------------------------------------------
    def now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _on_ee_pose(self, msg):
        try:
            pose = pose_from_msg(msg)
        except ValueError as error:
            self.get_logger().error(f"ignoring invalid end-effector pose: {error}", throttle_duration_sec=1.0)
            return
        with self.state_lock:
            self.ee_pose, self.ee_stamp = pose, stamp_to_seconds(msg.header.stamp)

    def _on_joint_states(self, msg):
        width = gripper_width_from_joints(msg, self.gripper_joints)
        if width is not None:   # (the arm's joints may come in messages of their own)
            with self.state_lock:
                self.gripper_width = width

    def _on_clock_jump(self, jump):
        reason = f"the clock jumped back by {-jump.delta.nanoseconds * 1e-9:.3f} s (simulator reset or restart?)"
        with self.state_lock:  # robot state stamped on the old timeline must not count as fresh
            self.ee_pose = self.ee_stamp = None
            if self.episode is not None:
                self.clock_jump = reason
        self.get_logger().warning(f"{reason}: dropped the robot state received before it; holding")

    def _on_robot_status(self, msg):
        if self.robot_events.robot_status(msg.data, self.now()):
            # The adapter already sends nothing. Hold here too, where the arm is rather than at the last target:
            # after a reflex that target can lie inside what the arm ran into.
            with self.state_lock:
                measured, stamp = self.ee_pose, self.ee_stamp
            now = self.now()
            with self.executor_lock:
                if measured is not None and now - stamp <= self.executor_core.stale_after_sec:
                    try:
                        self.executor_core.start(measured, now)
                    except ValueError:
                        pass  # outside the workspace: the executor sends nothing from there anyway
                self.executor_core.stop()

    def _on_stop(self, request, response):
        self.stop_requested.set()
        self.halt()
        response.success, response.message = True, "stopped: holding the last target"
        self.get_logger().warning("stop requested: holding the last target")
        return response

    def halt(self):
        with self.executor_lock:
            self.executor_core.stop()

    def close(self):
        self.stop_requested.set()  # an episode still running ends at its next check
        self.stream.close()
        if self._episode_thread is not None:
            self._episode_thread.join(timeout=2.0)

    def _publish_target_marker(self) -> None:
        with self.executor_lock:
            target = self.executor_core.last_target
        if target is not None and self.plan_markers is not None:
            header = Header(frame_id=self.base_frame, stamp=self.get_clock().now().to_msg())
            markers = list(self.plan_markers.markers) + current_target_markers(header, target).markers
            self.markers_pub.publish(MarkerArray(markers=markers))

    # -- episodes -------------------------------------------------------------------------------------
    def _accept_goal(self, goal):
        if not goal.instruction.strip():
            self.get_logger().error("rejecting episode: empty instruction")
            return GoalResponse.REJECT
        with self.state_lock:  # test and set together: two goals at once must not both get in
            if self.episode is not None:
                self.get_logger().error("rejecting episode: another one is running")
                return GoalResponse.REJECT
            self.episode = NodeEpisodeRuntime(self)
            self.clock_jump = None
        # Cleared here, on the executor thread that also runs _on_stop: a stop that arrives right after the
        # goal was accepted, before the episode's thread starts, stays in force.
        self.stop_requested.clear()
        with self.executor_lock:
            self.executor_core.clear_stop()
        return GoalResponse.ACCEPT

    async def _run_episode(self, goal_handle):
        """The episode runs on a thread of its own and this task awaits it: the node spins a single-threaded
        executor, which must never block (rclpy's multi-threaded one costs several times more CPU per message,
        all of it holding the GIL the target stream needs: bench/bench_executor.py)."""
        finished = Future()

        def run():
            realtime.make_current_thread_normal()  # the policy never computes at the executor's priority
            try:
                finished.set_result(self._run_episode_blocking(goal_handle))
            except BaseException as error:  # noqa: B036 - handed to the awaiting task, which re-raises it
                finished.set_exception(error)
            try:
                self._episode_finished.trigger()  # wake the executor so it resumes this task now
            except Exception:  # noqa: BLE001 - the node is shutting down: nothing is waiting any more
                pass

        self._episode_thread = threading.Thread(target=run, name="episode", daemon=True)
        self._episode_thread.start()
        return await finished

    def _run_episode_blocking(self, goal_handle):
        instruction = goal_handle.request.instruction.strip()
        timeout = goal_handle.request.timeout_sec or self.episode_timeout
        runtime, start = self.episode, self.now()
        runtime.goal_handle = goal_handle
        self.get_logger().info(f"episode: {instruction!r} (timeout {timeout:.0f} s)")
        self.instruction_pub.publish(String(data=instruction))
        try:
            outcome = run_episode(runtime, self.policy, instruction, timeout)
            success, message = outcome.success, outcome.message
        except Exception as error:  # the node must stay up and the arm hold whatever went wrong
            self.halt()
            success, message = False, f"episode failed: {type(error).__name__}: {error}"
        finally:
            with self.state_lock:
                self.episode = None
            self.report["waiting_for"] = None
        result = RunEpisode.Result(success=success, message=message, duration_sec=self.now() - start)
        if not self.context.ok():
            return result   # shut down mid-episode: no action server (nor rosout) left to hear the ending
        # One call site per severity: rclpy raises when a call site's severity changes, which lost the result of
        # the first failed episode after a successful one (the action ended "aborted" with an empty message).
        if success:
            self.get_logger().info(f"episode ended: {message}")
        else:
            self.get_logger().error(f"episode ended: {message}")
        if goal_handle.is_cancel_requested:
            goal_handle.canceled()
        elif success:
            goal_handle.succeed()
        else:
            goal_handle.abort()
        return result


def main():
    run_node(PolicyNode, threads=1)  # the episode has its own thread (_run_episode)


if __name__ == "__main__":
    main()
