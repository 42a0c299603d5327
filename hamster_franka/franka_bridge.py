"""franka_bridge: the runtime's robot interface on franka_ros2 (robot:=franka). A thin rclpy shell over
hamster_core.franka.

    FrankaRobotState (franka_robot_state_broadcaster)  ->  /robot/ee_pose (o_t_ee), /robot/status (JSON)
    /robot/cartesian_target (policy_node, 100 Hz)       ->  the controller's target pose (`controller` profile), gated
    /robot/gripper_command                              ->  franka_gripper move / grasp / homing goals, async,
                                                            with a timeout; each result on /robot/gripper_result

Safety: it starts DISABLED and forwards nothing until `/robot/enable` (std_srvs/SetBool true) is called with a
fresh, healthy robot state and a subscriber on the target topic (the controller), with this node its only
publisher; the policy node meanwhile holds the measured pose. A reflex, user stop, error flag
or a robot state older than stale_after_sec halts it at once (in the state callback, or at the next check of
the control-rate timer), as does `/robot/stop` (std_srvs/Trigger) or `/robot/enable false`: nothing more
reaches the controller, which holds its last target, until the next enable (gripper commands are
refused then too; only `gripper.homing_on_start` homes before an enable). A state with an invalid o_t_ee halts
as well (its mode and errors are read first), and so does no state for stale_after_wall_sec of wall time (a
stopped /clock with use_sim_time freezes ROS time too). Every halt increments the status's `halt_count` (never
reset; with `last_halt_reason`), so a reader that only sees the latched status after a quick re-enable still
knows a halt happened. Targets outside the robot config's workspace, farther than max_deviation /
max_angular_deviation from the measured pose, or stepping faster than the speed limits are dropped (and counted in
the status); the first target after an enable is step-limited from the measured pose (an enable while streaming
changes nothing). What reaches the controller is the pose that was checked (a unit quaternion).

The robot state arrives at 1 kHz on a real arm. The `rate_hz` (100) check takes the newest state and reads its mode,
errors and o_t_ee (-> /robot/ee_pose) straight from the serialized bytes (hamster_ros.cdr), so a reflex or error
halts within that period (10 ms, one period of the runtime's target stream) rather than the next message's 1 ms,
at a fraction of the CPU (bench/bench_franka_bridge.py; `state_per_message: true` gives each state its own
callback). Targets are read from their bytes too, and the node spins rclpy's EventsExecutor.

Where franka_msgs is not importable the node exits with what to install (hamster_franka.franka_standin).
"""
from __future__ import annotations

import json
import os
import re
import threading
import time

import rclpy
from action_msgs.msg import GoalStatus
from builtin_interfaces.msg import Duration, Time
from geometry_msgs.msg import PoseStamped
from rclpy.action import ActionClient
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.executors import MultiThreadedExecutor
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import Header, String
from std_srvs.srv import SetBool, Trigger

from hamster_core.franka import (RECOVERY_CONTROLLERS, GateState, GripperAction, GripperGoals, GripperRequest,
                                 GripperResult, RecoveryConfig, StreamGate, TargetLimits, controller_link_problem,
                                 controller_target_topic, interpret_state)
from hamster_msgs.msg import GripperCommand
from hamster_ros import interfaces as topics, realtime
from hamster_ros.cdr import FieldReader
from hamster_ros.conversions import pose_from_fields, pose_to_msg, stamp_to_seconds
from hamster_ros.node_main import RuntimeNode, declare, run_node
from hamster_ros.spinner import BackgroundSpinner


HOMING_TRIES = 3   # gripper.homing_on_start: a start-up homing whose goal was never answered is sent again

# Only the newest robot state waits for the next check: the mode and the latched errors of the states before it are
# in it too. (A deeper queue only cost a take per state: ~1.5 % of a core at 1 kHz.)
STATE_QUEUE = QoSProfile(depth=1, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.BEST_EFFORT)


class FrankaBridge(RuntimeNode):
    def __init__(self):
        super().__init__("franka_bridge")
        try:
            msg, action = topics.require_franka_msgs()
        except ImportError as error:
            raise ValueError(str(error)) from None
        self.msg, self.action = msg, action
        if os.environ.get("HAMSTER_FRANKA_MSGS_STANDIN"):
            self.get_logger().warning("using the franka_msgs TEST STAND-IN from "
                                      f"{os.environ['HAMSTER_FRANKA_MSGS_STANDIN']}: this is not franka_ros2")
        self._error_fields = [name for name in msg.Errors.get_fields_and_field_types()]
        # Read straight from the serialized messages (hamster_ros.cdr): a robot state in ~30 us where
        # deserialize_message took ~400, a target without building the message in Python.
        self._state_fields = FieldReader(msg.FrankaRobotState, ["header", "robot_mode", "current_errors",
                                                                "o_t_ee.pose"])
        self._target_fields = FieldReader(PoseStamped, ["header.frame_id", "pose"])
        state_topic = declare(self, "robot_state_topic", topics.FRANKA_ROBOT_STATE,
                              "franka_msgs/FrankaRobotState from franka_robot_state_broadcaster.")
        self.controller = declare(self, "controller", "crisp_cartesian",
                                  "The controller that takes the targets: crisp_cartesian (crisp_controllers' "
                                  "CartesianController, /target_pose) or custom (target_topic).")
        self.target_topic = controller_target_topic(self.controller, declare(
            self, "target_topic", "", "controller custom: the topic its geometry_msgs/PoseStamped targets go to."))
        gripper_ns = declare(self, "gripper_namespace", "/franka_gripper",
                             "franka_gripper's action namespace (<ns>/move, <ns>/grasp, <ns>/homing).").rstrip("/")
        rate_hz = declare(self, "rate_hz", 100.0, "Nominal target rate; the stale check runs at this rate.")
        stale_after = declare(self, "stale_after_sec", 0.1, "Halt when the robot state is older than this (s).")
        wall_stale_after = declare(self, "stale_after_wall_sec", 0.0,
                                   "Halt when no robot state arrived for this long on the wall clock (s), which "
                                   "catches a stopped /clock with use_sim_time; 0 = stale_after_sec.")
        self.gate = StreamGate(stale_after_sec=stale_after, wall_stale_after_sec=wall_stale_after or None)
        state_per_message = declare(self, "state_per_message", False,
                                    "Read every robot state in its own callback instead of the newest one at "
                                    "rate_hz (about twice the CPU at 1 kHz).")
        self.state_counts = {"read": 0, "unreadable": 0}
        self.limits = TargetLimits(
            workspace_min=tuple(declare(self, "workspace_min", [0.30, -0.35, 0.05], "Workspace box min (m).")),
            workspace_max=tuple(declare(self, "workspace_max", [0.70, 0.35, 0.50], "Workspace box max (m).")),
            max_linear_speed=declare(self, "max_linear_speed", 0.10, "Max speed between forwarded targets (m/s)."),
            max_angular_speed=declare(self, "max_angular_speed", 0.5, "Max turn rate between targets (rad/s)."),
            max_deviation=declare(self, "max_deviation", 0.05, "Max distance of a target from the measured pose (m)."),
            max_angular_deviation=declare(self, "max_angular_deviation", 0.3,
                                          "Max angle between a target's orientation and the measured one (rad)."),
            rate_hz=rate_hz)
        self.gripper_goals = GripperGoals(timeout_sec=declare(self, "gripper.timeout_sec", 5.0,
                                                              "Fail a gripper goal without a result after this (s)."))
        self.homing_on_start = declare(self, "gripper.homing_on_start", False,
                                       "Home the gripper once its action server is up.")

        self._lock = threading.RLock()
        self._measured = None
        self._last_forwarded = None     # (pose, ROS time) of the previous target; None: none since the enable
        self._dropped = {}              # reason prefix -> count
        self._forwarded = 0
        self._goal_handles = {}         # goal id -> ClientGoalHandle
        self._last_gripper = None       # the last gripper result, also in the (latched) status
        group = ReentrantCallbackGroup()
        # State and targets one at a time, in arrival order: a target is judged against the newest state only.
        stream = MutuallyExclusiveCallbackGroup()
        # franka_robot_state_broadcaster publishes ~2.8 KB at 1 kHz: a callback per state took most of a core
        # (the executor's wake-up, and ~0.35 ms to deserialize). So the newest state waits in a subscription no
        # executor serves (its node is never spun), and the rate_hz check takes it.
        self._state_reader = self._state_subscription = None
        if state_per_message:
            self.create_subscription(msg.FrankaRobotState, state_topic, self._on_raw_state, topics.SENSOR,
                                     callback_group=stream, raw=True)
        else:
            self._state_reader = rclpy.create_node(f"{self.get_name()}_robot_state", context=self.context,
                                                   use_global_arguments=False, start_parameter_services=False)
            self._state_subscription = self._state_reader.create_subscription(
                msg.FrankaRobotState, state_topic, lambda data: None, STATE_QUEUE, raw=True)
        self.create_subscription(PoseStamped, topics.CARTESIAN_TARGET, self._on_target, topics.COMMAND,
                                 callback_group=stream, raw=True)
        self.create_subscription(GripperCommand, topics.GRIPPER_COMMAND, self._on_gripper, topics.EVENTS,
                                 callback_group=group)
        self.ee_pub = self.create_publisher(PoseStamped, topics.EE_POSE, topics.SENSOR)
        self.target_pub = self.create_publisher(PoseStamped, self.target_topic, topics.COMMAND)
        self.status_pub = self.create_publisher(String, topics.ROBOT_STATUS, topics.LATCHED)
        self.result_pub = self.create_publisher(String, topics.GRIPPER_RESULT, topics.EVENTS)
        self.create_service(SetBool, topics.ROBOT_ENABLE, self._on_enable, callback_group=group)
        self.create_service(Trigger, topics.ROBOT_STOP, self._on_stop, callback_group=group)
        self._homed = not self.homing_on_start
        self._homing_tries = 0
        self.recovery = RecoveryConfig(
            error_recovery_action=declare(self, "recovery.error_recovery_action", "/action_server/error_recovery",
                                          "franka_hardware's franka_msgs/action/ErrorRecovery (with a robot "
                                          "namespace: /<ns>/action_server/error_recovery)."),
            switch_controller_service=declare(self, "recovery.switch_controller_service",
                                              "/controller_manager/switch_controller",
                                              "controller_manager's SwitchController service."),
            controllers=tuple(declare(self, "recovery.controllers", list(RECOVERY_CONTROLLERS),
                                      "Controllers /robot/recover re-activates: the state broadcaster and the "
                                      "controller that takes the targets.")),
            timeout_sec=declare(self, "recovery.timeout_sec", 10.0, "Each recovery step's time limit (s)."))
        self._recovering = threading.Lock()
        self._last_recovery = None
        self._start_side_node(gripper_ns)
        self.create_timer(1.0 / rate_hz, self._check, callback_group=stream)
        self.create_timer(0.5, self._publish_status, callback_group=group)
        self._publish_status()
        # Targets are forwarded in a callback: its thread should not be preempted by other processes (it runs on
        # the thread that then spins the executor, hamster_ros.node_main.run_node).
        priority = realtime.check_priority(declare(
            self, "executor_thread_priority", 0, "SCHED_FIFO priority (1-99) of the thread that forwards targets and "
            "robot state; 0 = normal. Needs rtprio rights."), "executor_thread_priority")
        refused = realtime.make_current_thread_realtime(priority)
        if refused:
            self.get_logger().warning(f"executor_thread_priority={priority} not granted ({refused})")
        self.get_logger().info(f"franka bridge: state {state_topic}, targets -> {self.target_topic} "
                               f"({self.controller}), gripper "
                               f"{gripper_ns}/{{move,grasp,homing}}; DISABLED until {topics.ROBOT_ENABLE} is called")

    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def destroy_node(self):
        if self._state_reader is not None:
            self._state_reader.destroy_node()
        self._side_spinner.stop(timeout=1.0)
        self._side_node.destroy_node()
        super().destroy_node()

    # -- the side node: gripper goals and recovery ----------------------------------------------------
    def _start_side_node(self, gripper_ns: str):
        """The gripper's action clients and /robot/recover live on a node of their own, spun by two threads of its
        own: the recovery waits for franka_ros2's action and controller_manager's service (the second thread
        completes those calls), and the state checks and target stream (this node's single thread) neither wait
        for them nor walk their 20-odd entities at every 100 Hz wake-up."""
        node = rclpy.create_node(f"{self.get_name()}_side", context=self.context, use_global_arguments=False,
                                 start_parameter_services=False)
        self._side_node = node
        clients = ReentrantCallbackGroup()   # their replies come in while the recovery's callback waits
        action = self.action
        self._gripper_clients = {
            GripperAction.MOVE: ActionClient(node, action.Move, f"{gripper_ns}/move", callback_group=clients),
            GripperAction.GRASP: ActionClient(node, action.Grasp, f"{gripper_ns}/grasp", callback_group=clients),
            GripperAction.HOMING: ActionClient(node, action.Homing, f"{gripper_ns}/homing", callback_group=clients),
        }
        self._error_recovery_client = ActionClient(node, action.ErrorRecovery, self.recovery.error_recovery_action,
                                                   callback_group=clients)
        switch = topics.controller_switch_service()
        self._switch_type = switch
        self._switch_client = None if switch is None else node.create_client(
            switch, self.recovery.switch_controller_service, callback_group=clients)
        node.create_service(Trigger, topics.ROBOT_RECOVER, self._on_recover,
                            callback_group=MutuallyExclusiveCallbackGroup())
        executor = MultiThreadedExecutor(num_threads=2, context=self.context)
        executor.add_node(node)
        self._side_spinner = BackgroundSpinner(executor, "side")

    def _on_recover(self, request, response):
        if not self._recovering.acquire(blocking=False):
            response.success, response.message = False, "a recovery is already running"
            return response
        try:
            response.success, response.message = self._recover()
        finally:
            self._recovering.release()
        with self._lock:
            self._last_recovery = {"success": response.success, "message": response.message, "stamp": self._now()}
        if response.success:
            self.get_logger().info(response.message)
        else:
            self.get_logger().error(response.message)
        self._publish_status()
        return response

    def _recover(self) -> tuple[bool, str]:
        """franka_ros2's sequence after a reflex or error: error recovery, the state broadcaster and the controller
        activated again, a fresh healthy state; then DISABLED until /robot/enable. (ok, what happened)."""
        config = self.recovery
        started = time.monotonic()
        deadline = lambda: time.monotonic() + config.timeout_sec  # noqa: E731  (each step its own limit, wall time)
        with self._lock:
            self.gate.disable("recovering (/robot/recover)")
        self._publish_status()
        name = config.error_recovery_action
        if not self._error_recovery_client.wait_for_server(timeout_sec=config.timeout_sec):
            return False, (f"recovery failed: no error recovery action server on {name} within "
                           f"{config.timeout_sec:g} s (franka_ros2 running? its namespace in "
                           "recovery.error_recovery_action?)")
        handle = _wait(self._error_recovery_client.send_goal_async(self.action.ErrorRecovery.Goal()), deadline())
        if handle is None or not handle.accepted:
            return False, f"recovery failed: {name} " + ("did not answer" if handle is None else "rejected the goal")
        result = _wait(handle.get_result_async(), deadline())
        if result is None:
            return False, f"recovery failed: error recovery gave no result within {config.timeout_sec:g} s"
        if result.status != GoalStatus.STATUS_SUCCEEDED:
            return False, (f"recovery failed: error recovery ended {_goal_status(result.status)}: the robot's error "
                           "persists (is the arm still in contact, or the user stop pressed?)")
        done = ["error recovery succeeded"]
        controllers = list(config.controllers)
        if self._switch_client is None:
            done.append(f"controller_manager_msgs is not importable: activate {', '.join(controllers)} yourself "
                        f"(ros2 control switch_controllers --activate {' '.join(controllers)})")
        else:
            service = config.switch_controller_service
            if not self._switch_client.wait_for_service(timeout_sec=config.timeout_sec):
                return False, f"recovery failed: no controller manager service {service}"
            # BEST_EFFORT: a controller that stayed active is skipped, not a failure.
            request = self._switch_type.Request(activate_controllers=controllers, deactivate_controllers=[],
                                                strictness=self._switch_type.Request.BEST_EFFORT, activate_asap=True,
                                                timeout=Duration(sec=int(config.timeout_sec)))
            reply = _wait(self._switch_client.call_async(request), deadline())
            if reply is None or not reply.ok:
                why = "no reply" if reply is None else (getattr(reply, "message", "") or "not ok")
                return False, f"recovery failed: {service} did not activate {', '.join(controllers)}: {why}"
            done.append(f"activated {', '.join(controllers)}")
        # The broadcaster is back when a healthy state newer than this recovery arrives (taken by _check).
        limit = deadline()
        while time.monotonic() < limit:
            with self._lock:
                health, wall = self.gate.health, self.gate.state_wall
                if health is not None and health.ok and wall is not None and wall > started \
                        and self.gate.fresh(self._now()):
                    self.gate.disable(f"recovered: call {topics.ROBOT_ENABLE} to stream again")
                    return True, f"recovered: {'; '.join(done)}; DISABLED until {topics.ROBOT_ENABLE}"
            time.sleep(0.01)
        with self._lock:
            health = self.gate.health
        why = "no new robot state" if health is None or health.ok else health.reason
        return False, f"recovery failed after {'; '.join(done)}: {why} within {config.timeout_sec:g} s"

    # -- robot state ----------------------------------------------------------------------------------
    def _take_states(self):
        """The newest robot state, if one came since the last check: a reflex or error halts within one check
        period."""
        if self._state_subscription is None:
            return
        taken = self._state_subscription.handle.take_message(self.msg.FrankaRobotState, True)
        if taken is not None:
            self._read_state(taken[0])

    def _on_raw_state(self, data: bytes):   # state_per_message
        self._read_state(data)

    def _read_state(self, data: bytes):
        """Stamp, mode, current errors and o_t_ee, read from the serialized state."""
        self.state_counts["read"] += 1
        wall = time.monotonic()
        try:
            fields = self._state_fields.read(data)
        except ValueError as error:
            self.state_counts["unreadable"] += 1
            self.get_logger().error(f"an unreadable robot state: {error}", throttle_duration_sec=1.0)
            return
        errors = {name: bool(fields[f"current_errors.{name}"]) for name in self._error_fields}
        stamp = Time(sec=fields["header.stamp.sec"], nanosec=fields["header.stamp.nanosec"])
        try:
            pose, pose_error = pose_from_fields(fields, "o_t_ee.pose."), ""
        except ValueError as error:
            pose, pose_error = None, str(error)
        # Mode and errors first: a reflex in a state whose pose is also invalid still halts, and names the reflex.
        # An invalid pose halts too (while streaming) and keeps enable refused: no target can be judged on it.
        health = interpret_state(fields["robot_mode"], errors, pose_error)
        with self._lock:
            changed = self.gate.health is None or self.gate.health.ok != health.ok or self.gate.health.mode != health.mode
            if pose is not None:
                self._measured = pose
            halted = self.gate.on_state(health, stamp_to_seconds(stamp), self._now(), wall)
        if pose is not None:
            self.ee_pub.publish(pose_to_msg(pose, Header(frame_id=fields["header.frame_id"], stamp=stamp)))
        else:
            self.get_logger().error(f"a robot state with an invalid o_t_ee: {pose_error}", throttle_duration_sec=1.0)
        if halted:
            self.get_logger().error(f"halted: {self.gate.reason}")
        if halted or changed:
            self._publish_status()

    def _check(self):
        self._take_states()
        with self._lock:
            halted = self.gate.check_stale(self._now(), time.monotonic())
        if halted:
            self.get_logger().error(f"halted: {self.gate.reason}")
            self._publish_status()
        self._check_gripper()
        if not self._homed and self._gripper_clients[GripperAction.HOMING].server_is_ready():
            self._homed = True
            self._homing_tries += 1
            self.get_logger().info("homing the gripper (gripper.homing_on_start)")
            self._send_gripper(GripperRequest(GripperAction.HOMING))

    # -- targets --------------------------------------------------------------------------------------
    def _on_target(self, data: bytes):
        now = self._now()
        try:
            fields = self._target_fields.read(data)
            target = pose_from_fields(fields, "pose.")
        except ValueError as error:
            self._drop(f"invalid target: {error}")
            return
        with self._lock:
            if not self.gate.open:
                return  # disabled or halted: nothing reaches the controller
            if self.gate.check_stale(now, time.monotonic()):
                halted = True
            else:
                halted = False
                if self._last_forwarded is None:
                    # The first target since the enable: one step (STEP_PERIODS) from where the arm is now, however
                    # long ago the enable was, and never a jump toward a target from before a halt.
                    last, dt = self._measured, 0.0
                else:
                    last, last_time = self._last_forwarded
                    dt = now - last_time
                reason = self.limits.check(target, self._measured, last, dt)
                if reason is None:
                    # The pose that was checked (unit quaternion), not the message as it came.
                    out = pose_to_msg(target, Header(frame_id=fields["header.frame_id"],
                                                     stamp=self.get_clock().now().to_msg()))
                    self.target_pub.publish(out)
                    self._last_forwarded = (target, now)
                    self._forwarded += 1
                    return
        if halted:
            self.get_logger().error(f"halted: {self.gate.reason}")
            self._publish_status()
            return
        self._drop(reason)

    def _drop(self, reason: str):
        # Counted by kind: the numbers left out, so the status's table stays bounded however many distinct values.
        key = re.sub(r"-?\d+(\.\d+)?(e-?\d+)?", "N", reason.split(" (")[0])[:60]
        with self._lock:
            self._dropped[key] = self._dropped.get(key, 0) + 1
        self.get_logger().warning(f"target not forwarded: {reason}", throttle_duration_sec=1.0)

    def _on_enable(self, request, response):
        with self._lock:
            if request.data and self._recovering.locked():
                response.success, response.message = False, "cannot enable: a recovery is running"
            elif request.data:
                was_streaming, now = self.gate.open, self._now()
                problem = None if was_streaming else controller_link_problem(
                    self.target_topic, self.count_subscribers(self.target_topic),
                    self.count_publishers(self.target_topic))
                if problem:
                    response.success, response.message = False, f"cannot enable: {problem}"
                else:
                    response.success, response.message = self.gate.enable(now, time.monotonic())
                if response.success and not was_streaming:
                    # The first target after this enable is step-limited from the measured pose (see _on_target),
                    # not from a target before the halt; an enable while streaming changes nothing.
                    self._last_forwarded = None
                elif response.success:
                    response.message += " (already streaming: the step limit goes on from the last target)"
            else:
                self.gate.halt("disabled by request (/robot/enable false)", self._now())
                response.success, response.message = True, "halted: nothing is sent to the controller"
        # (one call site per severity: rclpy refuses a call site whose severity changes)
        if response.success:
            self.get_logger().info(f"enable({request.data}): {response.message}")
        else:
            self.get_logger().error(f"enable({request.data}): {response.message}")
        self._publish_status()
        return response

    def _on_stop(self, request, response):
        with self._lock:
            self.gate.halt("stopped by request (/robot/stop)", self._now())
        response.success, response.message = True, "halted: nothing is sent to the controller until /robot/enable"
        self.get_logger().warning(response.message)
        self._publish_status()
        return response

    def _publish_status(self):
        with self._lock:
            health = self.gate.health
            now = self._now()
            status = {"gate": self.gate.state.value, "reason": self.gate.reason, "controller": self.controller,
                      "target_topic": self.target_topic,
                      "mode": health.mode if health else None, "ok": bool(health and health.ok),
                      "errors": list(health.errors) if health else [],
                      "state_age": None if self.gate.state_stamp is None else round(now - self.gate.state_stamp, 4),
                      "halted_at": self.gate.halted_at, "halt_state_stamp": self.gate.halt_stamp,
                      "halt_count": self.gate.halt_count, "last_halt_reason": self.gate.last_halt_reason,
                      "stamp": now, "forwarded": self._forwarded,
                      "dropped": dict(self._dropped), "gripper_busy": self.gripper_goals.busy,
                      "states": dict(self.state_counts),
                      "last_gripper": self._last_gripper, "last_recovery": self._last_recovery}
        self.status_pub.publish(String(data=json.dumps(status)))

    # -- gripper --------------------------------------------------------------------------------------
    def _on_gripper(self, msg: GripperCommand):
        kinds = {GripperCommand.MOVE: GripperAction.MOVE, GripperCommand.GRASP: GripperAction.GRASP,
                 GripperCommand.HOMING: GripperAction.HOMING}
        stamp = stamp_to_seconds(msg.header.stamp)
        try:
            kind = kinds[msg.command]
            request = GripperRequest(kind, width=msg.width, speed=msg.speed, force=msg.force,
                                     epsilon_inner=msg.epsilon_inner, epsilon_outer=msg.epsilon_outer,
                                     command_stamp=stamp)
        except (KeyError, ValueError) as error:
            text = f"unknown gripper command {msg.command}" if isinstance(error, KeyError) else str(error)
            self._report(GripperResult(str(msg.command), False, f"rejected: {text}", 0.0, float(msg.width), stamp))
            return
        with self._lock:
            gate, reason = self.gate.state, self.gate.reason
        if gate != GateState.STREAMING:  # nothing moves before an explicit enable, the fingers included
            self._report(GripperResult(request.action.value, False, f"not sent: {gate.value}: {reason}", 0.0,
                                       request.width, request.command_stamp))
            return
        self._send_gripper(request)

    def _send_gripper(self, request: GripperRequest):
        client = self._gripper_clients[request.action]
        if not client.server_is_ready():
            self._report(GripperResult(request.action.value, False,
                                       f"the action server {client._action_name} is not available", 0.0, request.width,
                                       request.command_stamp))
            return
        if request.action == GripperAction.MOVE:
            goal = self.action.Move.Goal(width=request.width, speed=request.speed)
        elif request.action == GripperAction.GRASP:
            goal = self.action.Grasp.Goal(width=request.width, speed=request.speed, force=request.force)
            goal.epsilon.inner, goal.epsilon.outer = request.epsilon_inner, request.epsilon_outer
        else:
            goal = self.action.Homing.Goal()
        with self._lock:
            goal_id, preempted = self.gripper_goals.start(request, self._now())
            old = [handle for gid, handle in self._goal_handles.items() if gid != goal_id]
            self._goal_handles = {}
        if preempted is not None:
            self._report(preempted)
        if not old:
            self._send_goal(goal_id, client, goal)
            return
        # franka_gripper answers a cancel at once but stops the fingers (gripper_->stop()) only when its goal loop
        # sees it, up to a feedback period later: a goal sent before that stop would be stopped by it. So the new
        # goal goes out once every preempted goal has ended (if one never does, the new goal times out as usual).
        ended = [handle.get_result_async() for handle in old]
        for handle in old:
            handle.cancel_goal_async()
        sent = threading.Event()

        def send_when_all_ended(_):
            if not all(future.done() for future in ended):
                return
            with self._lock:
                # once (each ended goal calls this), and only if not preempted or timed out meanwhile
                send = not sent.is_set() and self.gripper_goals.is_current(goal_id)
                sent.set()
            if send:
                self._send_goal(goal_id, client, goal)
        for future in ended:
            future.add_done_callback(send_when_all_ended)

    def _send_goal(self, goal_id: int, client, goal):
        future = client.send_goal_async(goal)
        future.add_done_callback(lambda f, goal_id=goal_id: self._on_goal_response(goal_id, f))

    def _on_goal_response(self, goal_id: int, future):
        handle = future.result()
        if not handle.accepted:
            with self._lock:
                result = self.gripper_goals.finish(goal_id, False, "goal rejected by the gripper", self._now())
            if result is not None:
                self._report(result)
            return
        with self._lock:
            current = self.gripper_goals.is_current(goal_id)
            if current:
                self._goal_handles[goal_id] = handle
        if not current:  # preempted or timed out before the gripper accepted it: it must not run on
            handle.cancel_goal_async()
            return
        handle.get_result_async().add_done_callback(lambda f, goal_id=goal_id: self._on_result(goal_id, f))

    def _on_result(self, goal_id: int, future):
        wrapped = future.result()
        result = wrapped.result
        with self._lock:
            self._goal_handles.pop(goal_id, None)
            report = self.gripper_goals.finish(goal_id, bool(result.success), str(result.error), self._now())
        if report is not None:
            self._report(report)

    def _check_gripper(self):
        with self._lock:
            expired = self.gripper_goals.expired(self._now())
            handle = None if expired is None else self._goal_handles.pop(expired[0], None)
        if expired is None:
            return
        if handle is not None:
            handle.cancel_goal_async()
        elif (expired[1].action == GripperAction.HOMING.value and expired[1].command_stamp is None  # the start-up one
              and self._homing_tries < HOMING_TRIES):
            # Never accepted: the goal request or its answer was lost, as rmw_fastrtps can lose an answer sent before
            # it has matched the client (a just-started franka_gripper). The start-up homing is sent again.
            self.get_logger().warning(f"the homing goal was never answered: {expired[1].error}; sending it again")
            self._homed = False
            return
        self._report(expired[1])

    def _report(self, result: GripperResult):
        text = (f"gripper {result.action}: {'ok' if result.success else 'FAILED'} in {result.seconds:.2f} s"
                + (f": {result.error}" if result.error else ""))
        if result.success:
            self.get_logger().info(text)
        else:
            self.get_logger().error(text)
        payload = result.as_dict()
        payload["stamp"] = self._now()
        with self._lock:
            self._last_gripper = payload
        self.result_pub.publish(String(data=json.dumps(payload)))
        self._publish_status()


def _wait(future, deadline: float):
    """The future's result once done (completed by another executor thread), or None at the deadline."""
    while not future.done():
        if time.monotonic() > deadline:
            return None
        time.sleep(0.005)
    return future.result()


def _goal_status(status: int) -> str:
    names = {GoalStatus.STATUS_ABORTED: "aborted", GoalStatus.STATUS_CANCELED: "canceled"}
    return names.get(status, f"with status {status}")


def main():
    # Every callback returns at once (gripper goals are asynchronous); ~200 wake-ups a second (the rate_hz check and
    # the targets) cost a third less with the EventsExecutor (bench/bench_franka_bridge.py).
    run_node(FrankaBridge, events_executor=True)


if __name__ == "__main__":
    main()
