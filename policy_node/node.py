"""policy_node: the fast half. Runs episodes (RunEpisode action), asks the selected policy for keyframes,
and streams the executor's safety-clipped Cartesian targets at control rate.

Faults: robot state older than stale_after_sec (or stamped in the future) holds the last target at once; the
status JSON on /hamster/executor_status and /diagnostics (WARN) say which input is stale and how old, and what
a waiting episode still lacks. A backwards jump of the ROS clock (a simulator reset or restart) drops the robot
state received before it, holds, and ends the running episode with that reason.

Data path: point cloud + camera + path + masks + end-effector pose -> Observation -> Policy.select_action
-> keyframes -> CartesianExecutor.update (every control tick) -> PoseStamped target + GripperCommand.
"""
from __future__ import annotations

import dataclasses
import json
import threading
import time

import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.clock import JumpThreshold
from rclpy.duration import Duration
from rclpy.task import Future
from sensor_msgs.msg import CameraInfo, JointState, PointCloud2
from std_msgs.msg import Header, String
from visualization_msgs.msg import MarkerArray
from std_srvs.srv import Trigger
from geometry_msgs.msg import PoseStamped

from hamster_core.executor import CartesianExecutor, ExecutorStatus, GripperSettings, SafetyLimits
from hamster_core.path2d import PathError
from hamster_core.policies.base import POLICIES, Observation, PolicyError
from hamster_core.timing import IntervalStats
from hamster_msgs.action import RunEpisode
from hamster_msgs.msg import GripperCommand, GroundingMasks, Path2D
from hamster_ros import interfaces as topics, realtime
from hamster_ros.conversions import (ConversionError, gripper_goal_to_msg, masks_from_msg, path_from_msg,
                                     pose_from_msg, pose_to_msg, stamp_to_seconds)
from hamster_ros.latest import LatestMessages
from hamster_ros.observation import observation_from_messages
from hamster_ros.node_main import RuntimeNode, declare, run_node


# Wall time without any advance of the ROS clock before the robot state counts as stale (a stopped /clock). Longer
# than stale_after_sec: a simulator starved of CPU for a moment (another process starting) must not flicker.
CLOCK_TIMEOUT_SEC = 0.5
NEXT_FRAME_WAIT_SEC = 0.3  # longest a ready plan waits for the next camera frame (10 Hz in a slowed simulator)


class PolicyNode(RuntimeNode):
    def __init__(self):
        super().__init__("policy_node")
        self.policy_name = declare(self, "policy", "path_follower", "Low-level policy, by registered name.")
        policy_cls = POLICIES.get(self.policy_name)
        self.policy = policy_cls(**self._policy_config(policy_cls))
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
        self.max_input_age = declare(self, "max_input_age_sec", 1.0,
                                     "Camera, cloud and masks older than this are not used for planning.")
        self.mask_wait = declare(self, "mask_wait_sec", 3.0,
                                 "How long to wait for grounding masks before planning without them.")
        self.gripper_joints = declare(self, "gripper_joint_names", ["fr3_finger_joint1", "fr3_finger_joint2"],
                                      "JointState names whose positions add up to the gripper opening.")
        limits = SafetyLimits(
            workspace_min=tuple(declare(self, "workspace_min", [0.20, -0.45, 0.02], "Workspace box min (m).")),
            workspace_max=tuple(declare(self, "workspace_max", [0.80, 0.45, 0.60], "Workspace box max (m).")),
            max_linear_speed=declare(self, "max_linear_speed", 0.25, "Target speed limit (m/s)."),
            max_angular_speed=declare(self, "max_angular_speed", 1.0, "Target angular speed limit (rad/s)."),
            max_tracking_error=declare(self, "max_tracking_error", 0.08,
                                       "Hold when the measured pose is farther than this from the target (m)."))
        gripper = GripperSettings(
            open_width=declare(self, "gripper.open_width", 0.08, "Opening width (m)."),
            speed=declare(self, "gripper.speed", 0.1, "Finger speed (m/s)."),
            grasp_force=declare(self, "gripper.grasp_force", 20.0, "Grasp force (N)."),
            dwell_sec=declare(self, "gripper.dwell_sec", 1.0, "Arm holds still this long after a gripper command."),
            grasp_width=declare(self, "gripper.grasp_width", 0.0, "Grasp goal width (m): the task's object width."),
            epsilon_inner=declare(self, "gripper.epsilon_inner", 0.08, "A grasp succeeds down to width - this (m)."),
            epsilon_outer=declare(self, "gripper.epsilon_outer", 0.08, "A grasp succeeds up to width + this (m)."))
        self.require_robot_enabled = declare(
            self, "require_robot_enabled", False,
            f"Episodes wait until the robot adapter streams ({topics.ROBOT_STATUS} gate 'streaming'; robot:=franka).")
        self.executor_core = CartesianExecutor(
            limits, gripper, rate_hz=rate_hz,
            stale_after_sec=declare(self, "stale_after_sec", 0.2,
                                    "Hold the pose when the robot state is older than this."),
            max_plan_age_sec=declare(self, "max_plan_age_sec", 2.0,
                                     "Drop a plan computed on an observation older than this."))

        self._lock = threading.Lock()
        self._ee_pose = None
        self._ee_stamp: float | None = None
        self._gripper_width = 0.0
        self._episode_active = False
        self._stop_requested = threading.Event()
        self._last_status: ExecutorStatus | None = None
        self._progress = 0.0
        self._episode_start = 0.0
        self._status_detail = ""               # why the executor holds, for people (status JSON, diagnostics)
        self._waiting_for: str | None = None   # what a running episode still lacks before it can plan
        self._clock_jump: str | None = None    # set when the clock jumped back during an episode
        self._status_stamp = 0.0               # ROS time of the tick whose status was published last
        self._clock_seen = (None, time.monotonic())  # (ROS time, wall time it was first read): a stopped clock
        self._tick_stats = IntervalStats(window=int(10 * rate_hz))  # the last 10 s of the stream
        # Camera frame -> first target of the plan made from it (ROS time; None until a plan ran).
        self._plan_frame_stamp: float | None = None
        self._frame_to_command_ms: float | None = None
        self._frame_age_at_plan_ms: float | None = None
        self._plan_compute_ms: float | None = None
        self._executor_lock = threading.Lock()  # the control tick and the episode thread both drive it

        inputs = ReentrantCallbackGroup()
        self.latest = LatestMessages(self, inputs)
        self.latest.subscribe("cloud", PointCloud2, topics.POINTS, topics.SENSOR)
        self.latest.subscribe("camera_info", CameraInfo, topics.COLOR_INFO, topics.SENSOR)
        self.latest.subscribe("camera_pose", PoseStamped, topics.CAMERA_POSE, topics.LATCHED)
        self.latest.subscribe("path", Path2D, topics.PATH, topics.LATCHED)
        self.latest.subscribe("masks", GroundingMasks, topics.MASKS, topics.SENSOR)
        self.latest.subscribe("vlm_status", String, topics.VLM_STATUS, topics.LATCHED)
        # robot:=franka: the adapter's gate and gripper results (hamster_ros.franka_bridge).
        self._robot_status: dict = {}
        self._halt_count = 0                                     # halts the adapter has reported (status halt_count)
        self._last_halt: tuple[float, str] | None = None         # (ROS time seen, reason) of the newest one
        self._episode_thread: threading.Thread | None = None
        self._gripper_failure: tuple[float, str] | None = None   # (its command's stamp, message)
        self.create_subscription(String, topics.ROBOT_STATUS, self._on_robot_status, topics.LATCHED,
                                 callback_group=inputs)
        self.create_subscription(String, topics.GRIPPER_RESULT, self._on_gripper_result, topics.EVENTS,
                                 callback_group=inputs)
        # Robot state is converted on arrival: the control loop reads it every tick.
        self.create_subscription(PoseStamped, topics.EE_POSE, self._on_ee_pose, topics.SENSOR, callback_group=inputs)
        self.create_subscription(JointState, topics.JOINT_STATES, self._on_joint_states, topics.SENSOR,
                                 callback_group=inputs)
        self.target_pub = self.create_publisher(PoseStamped, topics.CARTESIAN_TARGET, topics.COMMAND)
        self.gripper_pub = self.create_publisher(GripperCommand, topics.GRIPPER_COMMAND, topics.EVENTS)
        self.instruction_pub = self.create_publisher(String, topics.INSTRUCTION, topics.LATCHED)
        self.status_pub = self.create_publisher(String, topics.EXECUTOR_STATUS, topics.EVENTS)
        self.diagnostics_pub = self.create_publisher(DiagnosticArray, topics.DIAGNOSTICS, topics.EVENTS)
        # A simulator reset or restart sets sim time back: stamps from before would look fresh (or from the future).
        self._jump_handle = self.get_clock().create_jump_callback(
            JumpThreshold(min_forward=None, min_backward=Duration(nanoseconds=-1_000_000), on_clock_change=False),
            post_callback=self._on_clock_jump)
        self._limits = limits
        # rviz monitoring (hamster_ros.markers): the plan on every new plan, again with the current target at 2 Hz.
        # Latched, and every message is the whole picture, so a late rviz sees it all.
        self.markers_pub = self.create_publisher(MarkerArray, topics.MARKERS, topics.LATCHED)
        self._plan_markers = None
        self.create_service(Trigger, topics.STOP, self._on_stop, callback_group=inputs)
        self._episode_finished = self.create_guard_condition(lambda: None)
        self._action = ActionServer(self, RunEpisode, topics.RUN_EPISODE, self._run_episode,
                                    goal_callback=self._accept_goal, cancel_callback=lambda _: CancelResponse.ACCEPT,
                                    callback_group=ReentrantCallbackGroup())
        # The control loop has its own thread, paced by the steady clock: planning and message callbacks never
        # delay it behind the executor's queue, and the stream keeps its rate in wall time even when a
        # simulator's /clock runs slower or jitters. Motion and staleness are still measured in ROS time.
        self._control_period = 1.0 / rate_hz
        self._running = True
        self._control_scheduled = threading.Event()   # set once the control thread asked for its priority
        self._control_realtime = False
        self._control_thread = threading.Thread(target=self._control_loop, name="control", daemon=True)
        self._control_thread.start()
        # Last, so no thread started above inherits it: this constructor runs on the thread that then spins the
        # executor (hamster_ros.node_main.run_node). Only above a real-time stream thread: a real-time callback
        # thread over a normal one would starve the stream (an rtprio limit between the two priorities).
        self._control_scheduled.wait(timeout=2.0)
        if self.executor_priority and not self._control_realtime:
            self.get_logger().warning(f"executor_thread_priority={self.executor_priority} not applied: the stream "
                                      "thread runs without real-time priority")
        else:
            refused = realtime.make_current_thread_realtime(self.executor_priority)
            if refused:
                self.get_logger().warning(f"executor_thread_priority={self.executor_priority} not granted "
                                          f"({refused})")
        self.create_timer(1.0, self._publish_status, callback_group=inputs)
        self.create_timer(0.5, self._publish_target_marker, callback_group=inputs)
        self.get_logger().info(f"policy={self.policy_name} rate={rate_hz} Hz workspace={limits.workspace_min}.."
                               f"{limits.workspace_max}")

    def _policy_config(self, policy_cls) -> dict:
        """Expose every field of the policy's config dataclass as a `<policy>.<field>` parameter."""
        if policy_cls.config_class is None:
            return {}
        values = {}
        for field in dataclasses.fields(policy_cls.config_class):
            default = field.default
            values[field.name] = declare(self, f"{self.policy_name}.{field.name}", default,
                                         f"{policy_cls.config_class.__name__}.{field.name}")
        return values

    # -- inputs ---------------------------------------------------------------------------------------
    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _on_ee_pose(self, msg):
        try:
            pose = pose_from_msg(msg)
        except ValueError as error:
            self.get_logger().error(f"ignoring invalid end-effector pose: {error}", throttle_duration_sec=1.0)
            return
        with self._lock:
            self._ee_pose, self._ee_stamp = pose, stamp_to_seconds(msg.header.stamp)

    def _on_joint_states(self, msg):
        positions = dict(zip(msg.name, msg.position))
        if all(name in positions for name in self.gripper_joints):
            with self._lock:
                self._gripper_width = float(sum(positions[name] for name in self.gripper_joints))

    def _on_clock_jump(self, jump):
        reason = f"the clock jumped back by {-jump.delta.nanoseconds * 1e-9:.3f} s (simulator reset or restart?)"
        with self._lock:  # robot state stamped on the old timeline must not count as fresh
            self._ee_pose = self._ee_stamp = None
            if self._episode_active:
                self._clock_jump = reason
        self.get_logger().warning(f"{reason}: dropped the robot state received before it; holding")

    def _on_robot_status(self, msg):
        try:
            status = json.loads(msg.data)
            halted = status.get("gate") == "halted"
            halt_count = int(status.get("halt_count", 0))
        except (ValueError, TypeError, AttributeError):
            return
        self._robot_status = status
        # A halt followed at once by a re-enable shows only in the count (the latched status keeps one message).
        new_halt = halt_count > self._halt_count
        self._halt_count = max(self._halt_count, halt_count)
        if new_halt:
            reason = status.get("last_halt_reason") or status.get("reason")
            self._last_halt = (self._now(), f"robot halted: {reason}")
        if halted or new_halt:  # the adapter already sends nothing; hold here too, so nothing moves on after
            self._hold_at_measured_pose()

    def _hold_at_measured_pose(self):
        """Stop, holding where the arm is rather than the last target: after a reflex the last target can lie
        inside what the arm ran into, and the next episode would begin by pulling toward it."""
        with self._lock:
            measured, stamp = self._ee_pose, self._ee_stamp
        now = self._now()
        with self._executor_lock:
            if measured is not None and now - stamp <= self.executor_core.stale_after_sec:
                try:
                    self.executor_core.start(measured, now)
                except ValueError:
                    pass  # outside the workspace: the executor sends nothing from there anyway
            self.executor_core.stop()

    def _on_gripper_result(self, msg):
        try:
            result = json.loads(msg.data)
            failed = not result["success"]
        except (ValueError, KeyError, TypeError):
            return
        if failed:
            # Timed by the command it answers, not by arrival: a late failure of the previous episode's command
            # must not end the next episode.
            stamp = result.get("command_stamp")
            when = float(stamp) if isinstance(stamp, (int, float)) and not isinstance(stamp, bool) else self._now()
            self._gripper_failure = (when, f"gripper {result.get('action')} failed: {result.get('error')}")

    def _on_stop(self, request, response):
        self._stop_requested.set()
        with self._executor_lock:
            self.executor_core.stop()
        response.success, response.message = True, "stopped: holding the last target"
        self.get_logger().warn("stop requested: holding the last target")
        return response

    # -- control tick ---------------------------------------------------------------------------------
    def close(self):
        self._running = False
        self._stop_requested.set()  # an episode still running ends at its next check
        self._control_thread.join(timeout=1.0)
        if self._episode_thread is not None:
            self._episode_thread.join(timeout=2.0)

    def _control_loop(self):
        refused = realtime.make_current_thread_realtime(self.control_priority)
        self._control_realtime = bool(self.control_priority) and refused is None
        self._control_scheduled.set()
        if refused:
            self.get_logger().warning(f"control_thread_priority={self.control_priority} not granted ({refused}); "
                                      "the stream runs with normal scheduling")
        deadline = time.monotonic()
        while self._running and rclpy.ok():
            try:
                self._control_tick()
            except Exception as error:  # never let one bad tick end the stream silently
                self.get_logger().error(f"control tick failed: {type(error).__name__}: {error}",
                                        throttle_duration_sec=1.0)
            deadline += self._control_period
            delay = deadline - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            else:
                deadline = time.monotonic()  # late: resume the period from now instead of bursting to catch up

    def _control_tick(self):
        now = self._now()
        with self._lock:
            measured, measured_stamp = self._ee_pose, self._ee_stamp
        # Sim time stands still when /clock stops (the simulator died): staleness measured in it would never
        # show, so a clock that has not moved for CLOCK_TIMEOUT_SEC of wall time makes the robot state stale.
        wall = time.monotonic()
        if now != self._clock_seen[0]:
            self._clock_seen = (now, wall)
        clock_stopped = wall - self._clock_seen[1] > max(CLOCK_TIMEOUT_SEC, self.executor_core.stale_after_sec)
        if clock_stopped:
            measured = measured_stamp = None
        with self._executor_lock:
            if not self.executor_core.started:
                if measured is None or now - measured_stamp > self.executor_core.stale_after_sec:
                    return  # nothing is sent until a fresh measured pose exists to hold
                try:
                    self.executor_core.start(measured, now)
                except ValueError as error:
                    self.get_logger().error(f"not streaming: {error}", throttle_duration_sec=5.0)
                    return
            command = self.executor_core.update(now, measured, measured_stamp)
            plan_frame_stamp = self._plan_frame_stamp if command.target is not None else None
            if plan_frame_stamp is not None:
                self._plan_frame_stamp = None
            # Under the lock, so an episode thread that just set a new plan never sees the old plan's DONE.
            status_changed = command.status != self._last_status
            self._last_status, self._progress = command.status, command.progress
            if status_changed:
                self._status_detail = self._detail(command.status, now, measured, measured_stamp)
                if clock_stopped:
                    self._status_detail = (f"ROS time has not advanced for {wall - self._clock_seen[1]:.2f} s "
                                           f"(is /clock published?)")
        self._tick_stats.tick(time.monotonic())
        header = Header(frame_id=self.base_frame, stamp=self.get_clock().now().to_msg())
        if status_changed:
            self._status_stamp = stamp_to_seconds(header.stamp)
        if command.target is not None:
            self.target_pub.publish(pose_to_msg(command.target, header))
            if plan_frame_stamp is not None:  # the first target of a new plan: how old its camera frame is
                self._frame_to_command_ms = round(1e3 * (stamp_to_seconds(header.stamp) - plan_frame_stamp), 1)
        if command.gripper is not None:
            self.gripper_pub.publish(gripper_goal_to_msg(command.gripper, header))
        if status_changed:
            text = f"executor: {command.status.value}" + (f": {self._status_detail}" if self._status_detail else "")
            # (one call site per severity: rclpy refuses a call site whose severity changes)
            if command.status == ExecutorStatus.OUTSIDE_WORKSPACE:
                self.get_logger().error(text)
            elif command.status in (ExecutorStatus.HOLDING_STALE, ExecutorStatus.HOLDING_TRACKING):
                self.get_logger().warning(text)
            else:
                self.get_logger().info(text)
            self._publish_status()

    def _detail(self, status: ExecutorStatus, now: float, measured, measured_stamp) -> str:
        if status == ExecutorStatus.HOLDING_STALE:
            if measured is None:
                return "no end-effector pose on " + topics.EE_POSE
            age = now - measured_stamp
            if age < 0:
                return f"the end-effector pose is stamped {-age:.3f} s in the future (clock jumped back?)"
            return f"the end-effector pose is {age:.3f} s old (stale_after_sec {self.executor_core.stale_after_sec:g})"
        if status == ExecutorStatus.OUTSIDE_WORKSPACE:
            return f"the robot is at {[round(float(v), 3) for v in measured.position]}, outside the workspace"
        if status == ExecutorStatus.HOLDING_TRACKING:
            return "the arm is not where it was sent: holding where it is"
        return ""

    def _publish_status(self):
        """Executor state and the target stream's own rate and jitter, on change and once a second; the same
        state on /diagnostics (WARN while holding, ERROR outside the workspace)."""
        status = self._last_status.value if self._last_status else "not_started"
        detail, waiting_for = self._status_detail, self._waiting_for
        self.status_pub.publish(String(data=json.dumps({"status": status, "progress": round(self._progress, 3),
                                                        "detail": detail, "waiting_for": waiting_for,
                                                        "stamp": self._status_stamp,
                                                        "stream": self._tick_stats.summary(),
                                                        "frame_to_command_ms": self._frame_to_command_ms,
                                                        # its parts: how old the frame was when planning began
                                                        # (ROS time), and the policy's compute (wall time)
                                                        "frame_age_at_plan_ms": self._frame_age_at_plan_ms,
                                                        "plan_compute_ms": self._plan_compute_ms})))
        level = {ExecutorStatus.HOLDING_STALE: DiagnosticStatus.WARN, ExecutorStatus.HOLDING_TRACKING:
                 DiagnosticStatus.WARN, ExecutorStatus.OUTSIDE_WORKSPACE: DiagnosticStatus.ERROR}.get(
                     self._last_status, DiagnosticStatus.OK)
        values = [KeyValue(key="status", value=status)]
        if waiting_for:
            values.append(KeyValue(key="waiting_for", value=waiting_for))
        array = DiagnosticArray(status=[DiagnosticStatus(level=level, name=self.get_name(), hardware_id="executor",
                                                         message=f"{status}: {detail}" if detail else status,
                                                         values=values)])
        array.header.stamp = self.get_clock().now().to_msg()
        self.diagnostics_pub.publish(array)

    # -- monitoring -----------------------------------------------------------------------------------
    def _publish_plan_markers(self, observation: Observation, keyframes) -> None:
        from hamster_ros.markers import lift_path, plan_markers
        header = Header(frame_id=self.base_frame, stamp=self.get_clock().now().to_msg())
        lifted = gripper = None
        if observation.path is not None and observation.camera is not None:
            lifted, found = lift_path(observation.path, observation.camera, observation.points)
            lifted[~found] = float("nan")
            gripper = observation.path.gripper
        self._plan_markers = plan_markers(header, keyframes, self._limits.workspace_min,
                                          self._limits.workspace_max, lifted, gripper)
        self.markers_pub.publish(self._plan_markers)

    def _publish_target_marker(self) -> None:
        from hamster_ros.markers import current_target_markers
        with self._executor_lock:
            target = self.executor_core.last_target
        if target is not None and self._plan_markers is not None:
            header = Header(frame_id=self.base_frame, stamp=self.get_clock().now().to_msg())
            markers = list(self._plan_markers.markers) + current_target_markers(header, target).markers
            self.markers_pub.publish(MarkerArray(markers=markers))

    # -- episodes -------------------------------------------------------------------------------------
    def _accept_goal(self, goal):
        if not goal.instruction.strip():
            self.get_logger().error("rejecting episode: empty instruction")
            return GoalResponse.REJECT
        with self._lock:  # test and set together: two goals at once must not both get in
            if self._episode_active:
                self.get_logger().error("rejecting episode: another one is running")
                return GoalResponse.REJECT
            self._episode_active = True
            self._clock_jump = None
        # Cleared here, on the executor thread that also runs _on_stop: a stop that arrives right after the
        # goal was accepted, before the episode's thread starts, stays in force.
        self._stop_requested.clear()
        with self._executor_lock:
            self.executor_core.clear_stop()
        return GoalResponse.ACCEPT

    async def _run_episode(self, goal_handle):
        """The episode runs on a thread of its own and this task awaits it: the node spins a single-threaded
        executor, which must never block (rclpy's multi-threaded one cost ~10x more CPU per message, all of it
        holding the GIL the target stream needs)."""
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
        try:
            success, message = self._episode(goal_handle)
        except Exception as error:  # the node must stay up and the arm hold whatever went wrong
            self._halt()
            success, message = False, f"episode failed: {type(error).__name__}: {error}"
        finally:
            with self._lock:
                self._episode_active = False
            self._waiting_for = None
        result = RunEpisode.Result(success=success, message=message,
                                   duration_sec=self._now() - self._episode_start)
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

    def _halt(self):
        with self._executor_lock:
            self.executor_core.stop()

    def _feedback(self, goal_handle, phase: str, progress: float = 0.0):
        goal_handle.publish_feedback(RunEpisode.Feedback(phase=phase, progress=float(progress)))

    def _episode(self, goal_handle) -> tuple[bool, str]:
        instruction = goal_handle.request.instruction.strip()
        timeout = goal_handle.request.timeout_sec or self.episode_timeout
        self._episode_start = start = self._now()
        self.policy.reset()
        self.get_logger().info(f"episode: {instruction!r} (timeout {timeout:.0f} s)")
        self.instruction_pub.publish(String(data=instruction))

        def interrupted() -> str | None:
            if goal_handle.is_cancel_requested:
                return "canceled"
            if self._stop_requested.is_set():
                return "stopped by request"
            if self._clock_jump:
                return self._clock_jump
            if self._robot_status.get("gate") == "halted":
                return f"robot halted: {self._robot_status.get('reason')}"
            if self._last_halt is not None and self._last_halt[0] >= start:  # halted and re-enabled since
                return self._last_halt[1]
            if self._gripper_failure is not None and self._gripper_failure[0] >= start:
                return self._gripper_failure[1]
            vlm_failure = self._vlm_failure(instruction, start)
            if vlm_failure:
                return f"VLM failed: {vlm_failure}"
            if self._now() - start > timeout:
                return f"timed out after {timeout:.0f} s"
            return None

        plans = executed = 0  # policy calls and keyframes over the whole episode
        while True:
            self._feedback(goal_handle, "waiting_for_inputs")
            observation, waiting_for = None, None
            while observation is None:
                reason = interrupted()
                if reason:
                    self._halt()
                    return False, f"{reason} while waiting for {waiting_for or 'inputs'}"
                observation, waiting_for = self._observation(instruction, start)
                if waiting_for != self._waiting_for:
                    self._waiting_for = waiting_for
                    self._publish_status()
                if observation is None:
                    time.sleep(0.05)
            observation = self._newest_observation(observation, instruction, start)

            self._feedback(goal_handle, "planning")
            try:
                self._frame_age_at_plan_ms = round(1e3 * (self._now() - observation.stamp), 1)
                planning_started = time.monotonic()
                output = self.policy.select_action(observation)
                self._plan_compute_ms = round(1e3 * (time.monotonic() - planning_started), 1)
                with self._executor_lock:  # refuses the plan if a stop arrived while it was computed
                    self.executor_core.set_keyframes(output.keyframes, observation.stamp, self._now())
                    self._plan_frame_stamp = observation.stamp
                    self._last_status = None
            except (PolicyError, ValueError) as error:
                self._halt()
                return False, f"cannot plan: {error}"
            plans += 1
            self.get_logger().info(f"plan {plans}: {len(output.keyframes)} keyframes {output.info}")
            self._publish_plan_markers(observation, output.keyframes)

            while True:
                reason = interrupted()
                if reason:
                    self._halt()
                    return False, f"{reason} while executing"
                status = self._last_status
                if status == ExecutorStatus.DONE:
                    break
                self._feedback(goal_handle, "executing", self._progress)
                time.sleep(0.05)
            executed += len(output.keyframes)
            if output.done:
                # Over the episode: a keyframe policy plans one keyframe at a time.
                return True, f"executed {executed} keyframes" + (f" from {plans} plans" if plans > 1 else "")

    def _newest_observation(self, ready: Observation, instruction: str, episode_start: float) -> Observation:
        """Plan on the next camera frame rather than one that may be a camera period old: waiting for it costs
        the episode at most that period, and the plan then starts from the scene as it is (frame -> command
        latency p50 96 -> ~20 ms in the simulated graph). Falls back to `ready` when no newer frame comes."""
        deadline = time.monotonic() + NEXT_FRAME_WAIT_SEC
        while time.monotonic() < deadline:
            cloud_msg = self.latest.get("cloud")
            if cloud_msg is not None and stamp_to_seconds(cloud_msg.header.stamp) > ready.stamp:
                newer, _ = self._observation(instruction, episode_start)
                if newer is not None and newer.stamp > ready.stamp:
                    return newer
                time.sleep(0.005)  # the new frame's other inputs (masks) are still on their way
            time.sleep(0.002)
        return ready

    def _vlm_failure(self, instruction: str, episode_start: float) -> str | None:
        """The VLM node's message when it gave up on this episode's instruction (its latched status)."""
        msg = self.latest.get("vlm_status")
        try:
            status = json.loads(msg.data) if msg is not None else {}
            failed = status.get("state") == "failed" and status.get("instruction") == instruction \
                and float(status.get("stamp", -1.0)) >= episode_start  # not a previous episode's failure
        except (ValueError, TypeError, AttributeError):
            return None
        return str(status.get("message", "no path")) if failed else None

    def _masks_match(self, msg: GroundingMasks, instruction: str, episode_start: float, now: float) -> bool:
        """Fresh masks grounded from this instruction (perception may still publish the previous one's)."""
        stamp = stamp_to_seconds(msg.header.stamp)
        grounded_here = all(phrase.lower() in instruction.lower() for phrase in msg.phrases)
        return episode_start <= stamp and now - stamp <= self.max_input_age and grounded_here

    def _observation(self, instruction: str, episode_start: float) -> tuple[Observation | None, str | None]:
        """The newest inputs as an Observation, or (None, what is still missing)."""
        now = self._now()
        cloud_msg, info, camera_pose_msg, path_msg, masks_msg = self.latest.get(
            "cloud", "camera_info", "camera_pose", "path", "masks")
        with self._lock:
            ee_pose, ee_stamp, width = self._ee_pose, self._ee_stamp, self._gripper_width
        if ee_pose is None or now - ee_stamp > self.executor_core.stale_after_sec:
            return None, "a fresh end-effector pose"
        if self.require_robot_enabled and self._robot_status.get("gate") != "streaming":
            return None, f"the robot to be enabled ({topics.ROBOT_ENABLE})"
        if cloud_msg is None or now - stamp_to_seconds(cloud_msg.header.stamp) > self.max_input_age:
            return None, "a fresh point cloud"
        needs = self.policy.required_inputs
        if "camera" in needs and (info is None or camera_pose_msg is None):
            return None, "camera info and camera pose"
        path = None
        if path_msg is not None and path_msg.instruction == instruction \
                and stamp_to_seconds(path_msg.header.stamp) >= episode_start:
            try:
                path = path_from_msg(path_msg)
            except PathError as error:
                self.get_logger().error(f"ignoring invalid path: {error}", throttle_duration_sec=5.0)
        if "path" in needs and path is None:
            return None, f"a path for {instruction!r}"
        masks = {}
        if masks_msg is not None and self._masks_match(masks_msg, instruction, episode_start, now):
            try:
                masks = masks_from_msg(masks_msg)
            except (ConversionError, ValueError) as error:
                self.get_logger().error(f"ignoring invalid masks: {error}", throttle_duration_sec=5.0)
            if info is not None and any(mask.shape != (info.height, info.width) for mask in masks.values()):
                self.get_logger().error(f"ignoring masks of size {[m.shape[::-1] for m in masks.values()]}: the "
                                        f"camera's images are {info.width}x{info.height}", throttle_duration_sec=5.0)
                masks = {}
        if not masks and now - episode_start < self.mask_wait:
            return None, "grounding masks"
        try:  # the one messages -> Observation conversion, shared with the demonstration loader
            observation = observation_from_messages(instruction=instruction, cloud=cloud_msg, tcp_pose=ee_pose,
                                                    gripper_width=width, camera_info=info,
                                                    camera_pose=camera_pose_msg)
        except (ConversionError, ValueError) as error:
            self.get_logger().error(f"ignoring invalid input: {error}", throttle_duration_sec=5.0)
            return None, "valid camera and point cloud"
        if len(observation.points) == 0:
            return None, "a point cloud with finite points"
        observation.path, observation.masks = path, masks   # parsed and checked above, with the same conversions
        return observation, None


def main():
    run_node(PolicyNode, threads=1)  # the episode has its own thread (_run_episode)


if __name__ == "__main__":
    main()
