"""The simulator's franka_ros2-shaped interface (sim_node with `interface: franka`).

Speaks what a real FR3 with franka_ros2 offers, with the same names and types, so the runtime's franka adapter
(hamster_franka.franka_bridge) runs against the simulator end to end:

- franka_msgs/FrankaRobotState on `franka.robot_state_topic` (franka_robot_state_broadcaster's topic): header,
  o_t_ee (PoseStamped), measured_joint_state, robot_mode, current_errors / last_motion_errors;
- the Cartesian controller's target pose (geometry_msgs/PoseStamped, crisp_controllers' /target_pose) on
  `franka.target_topic`;
- franka_gripper's move / grasp / homing actions (franka_msgs/action/{Move,Grasp,Homing}) under
  `franka.gripper_namespace`, each taking as long as the simulated fingers do, success and error as the real
  hand reports them (a grasp succeeds when the fingers stop within width - epsilon.inner .. width +
  epsilon.outer).

- franka_hardware's error recovery (franka_msgs/action/ErrorRecovery, `franka.error_recovery_action`) and
  controller_manager's switch_controller (controller_manager_msgs/srv/SwitchController) for the state
  broadcaster and the Cartesian controller (`franka.controllers`).

Fault injection (std_srvs/SetBool, true starts it): /sim/reflex, /sim/user_stop (robot_mode REFLEX /
USER_STOPPED; the arm stops following targets, as the real controller does), /sim/robot_error (a
cartesian_reflex flag in current_errors), /sim/stall_gripper (gripper goals are accepted and never finish),
/sim/bad_pose (o_t_ee carries an all-zero quaternion, which no consumer can use).

A reflex is the real sequence: /sim/reflex true is its cause (a collision); the robot stays in REFLEX mode until
error recovery succeeds, which it does only once the cause is gone (/sim/reflex false). With
`franka.reflex_deactivates_controllers`, after `franka.reflex_states_before_inactive` states that show the reflex
the broadcaster and the controller go inactive (no robot state, targets ignored) until switch_controller
activates them again, which it refuses while the reflex lasts.

The interface is its own node with its own executor threads: a gripper goal takes ~1 s and must not hold up
the simulator's single-threaded callbacks (the target pose stream among them). The gripper's action servers
run on a second node with an executor of their own: each goal blocks one of its threads for up to
GRIPPER_GOAL_LIMIT_SEC (or until canceled, with /sim/stall_gripper), and however many are in flight, the
target pose stream and the fault services (each in its own mutually exclusive callback group on the first
node's executor) always have a thread.
"""
from __future__ import annotations

import os
import threading
import time

import numpy as np
from geometry_msgs.msg import PoseStamped
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.executors import MultiThreadedExecutor
from rclpy.node import Node
from std_srvs.srv import SetBool

from hamster_core.franka import RobotMode, grasp_succeeded
from hamster_core.geometry import Pose
from hamster_ros import interfaces as topics
from hamster_ros.conversions import pose_from_msg, pose_to_msg
from hamster_ros.spinner import BackgroundSpinner

MAX_WIDTH = 0.08
GRIPPER_GOAL_LIMIT_SEC = 10.0   # a simulated finger move never takes longer; the real driver has its own limits
GRIPPER_FEEDBACK_RATE_HZ = 30   # franka_gripper_node.yaml: how often its goal loop looks for a cancel


class SimFrankaInterface:
    def __init__(self, sim, context=None):
        msg, action = topics.require_franka_msgs()
        self.msg, self.action = msg, action
        self.sim = sim
        # Not the command line's arguments: `-r __node:=sim_node` would give this node the simulator's name.
        self.node = Node("franka_sim_interface", context=context, use_global_arguments=False)
        self.gripper_node = Node("franka_sim_gripper", context=context, use_global_arguments=False)
        node = self.node
        if os.environ.get("HAMSTER_FRANKA_MSGS_STANDIN"):
            sim.get_logger().warning("franka interface uses the franka_msgs TEST STAND-IN from "
                                     f"{os.environ['HAMSTER_FRANKA_MSGS_STANDIN']} (not franka_ros2's package)")
        self.state_topic = sim.franka_state_topic
        self.mode = RobotMode.MOVE
        self.faults = {"reflex": False, "user_stop": False, "robot_error": False, "stall_gripper": False,
                       "bad_pose": False}
        self.in_reflex = False          # latched by a reflex, cleared by error recovery
        self.broadcaster, self.controller = sim.franka_recovery.controllers[:2]
        self.active = {self.broadcaster, self.controller}
        self.reflex_deactivates = sim.franka_reflex_deactivates
        self.reflex_states = sim.franka_reflex_states
        self._reflex_states_sent = 0    # since the reflex began
        self.compliance = None          # a CompliantTracking: targets reach the arm through it (None: exactly)
        self._goal = None               # with compliance: the controller's newest target
        self._commanded = None          # with compliance: the position last given to the world
        self._lock = threading.Lock()
        self.state_pub = node.create_publisher(msg.FrankaRobotState, self.state_topic, topics.SENSOR)
        node.create_subscription(PoseStamped, sim.franka_target_topic, self._on_target, topics.COMMAND,
                                 callback_group=MutuallyExclusiveCallbackGroup())
        faults = MutuallyExclusiveCallbackGroup()
        for name in self.faults:
            node.create_service(SetBool, f"/sim/{name}", self._fault(name), callback_group=faults)
        recovery = MutuallyExclusiveCallbackGroup()
        self._recovery_server = ActionServer(
            node, action.ErrorRecovery, sim.franka_recovery.error_recovery_action, self._execute_error_recovery,
            callback_group=recovery)
        switch = topics.controller_switch_service()
        if switch is None:
            sim.get_logger().warning("controller_manager_msgs is not importable: no switch_controller service")
        else:
            node.create_service(switch, sim.franka_recovery.switch_controller_service, self._switch_controllers,
                                callback_group=recovery)
        ns = sim.franka_gripper_namespace.rstrip("/")
        group = ReentrantCallbackGroup()
        gripper = self.gripper_node
        self._servers = [
            ActionServer(gripper, action.Move, f"{ns}/move", self._execute_move, callback_group=group,
                         goal_callback=lambda goal: GoalResponse.ACCEPT,
                         cancel_callback=lambda handle: CancelResponse.ACCEPT),
            ActionServer(gripper, action.Grasp, f"{ns}/grasp", self._execute_grasp, callback_group=group,
                         goal_callback=lambda goal: GoalResponse.ACCEPT,
                         cancel_callback=lambda handle: CancelResponse.ACCEPT),
            ActionServer(gripper, action.Homing, f"{ns}/homing", self._execute_homing, callback_group=group,
                         goal_callback=lambda goal: GoalResponse.ACCEPT,
                         cancel_callback=lambda handle: CancelResponse.ACCEPT),
        ]
        # One thread per callback group: the target stream and the fault services never wait for each other.
        self.executor = MultiThreadedExecutor(num_threads=2, context=context)
        self.executor.add_node(node)
        # Goals block their thread; three let a preempted goal wind down while the next one runs.
        self.gripper_executor = MultiThreadedExecutor(num_threads=3, context=context)
        self.gripper_executor.add_node(gripper)
        self._spinner = BackgroundSpinner(self.executor, "franka_interface")
        self._gripper_spinner = BackgroundSpinner(self.gripper_executor, "franka_gripper")

    def close(self):
        self._spinner.stop(timeout=1.0)
        self._gripper_spinner.stop(timeout=1.0)
        self._recovery_server.destroy()
        self.node.destroy_node()
        self.gripper_node.destroy_node()

    # -- faults ---------------------------------------------------------------------------------------
    def _fault(self, name: str):
        def switch(request, response):
            with self._lock:
                self.faults[name] = bool(request.data)
                if name == "reflex" and request.data and not self.in_reflex:
                    self.in_reflex, self._reflex_states_sent = True, 0
                switched = self.sim._sim_time  # the next robot state (within one state period) shows it
            response.success = True
            response.message = f"{name} {'on' if request.data else 'off'} at sim time {switched:.4f} s"
            self.sim.get_logger().warning(f"fault injection: {response.message}")
            return response
        return switch

    def _mode(self) -> RobotMode:   # under the lock
        if self.faults["user_stop"]:
            return RobotMode.USER_STOPPED
        if self.in_reflex:
            return RobotMode.REFLEX
        return RobotMode.MOVE

    def halted(self) -> bool:
        """The arm does not follow targets: a reflex or user stop, or its controller inactive."""
        with self._lock:
            return self.controller not in self.active or self._mode() != RobotMode.MOVE

    # -- recovery -------------------------------------------------------------------------------------
    def _execute_error_recovery(self, goal_handle):
        """libfranka's automaticErrorRecovery: clears a reflex once its cause is gone; aborts otherwise."""
        with self._lock:
            cleared = not (self.faults["reflex"] or self.faults["user_stop"])
            if cleared:
                self.in_reflex = False
        self.sim.get_logger().warning(f"error recovery {'succeeded' if cleared else 'failed: the cause persists'}")
        if cleared:
            goal_handle.succeed()
        else:
            goal_handle.abort()
        return self.action.ErrorRecovery.Result()

    def _switch_controllers(self, request, response):
        """controller_manager's switch_controller for the two controllers this interface has. STRICT fails on an
        unknown name; BEST_EFFORT skips it (and fails when every name is unknown). Nothing activates during a
        reflex: the hardware interface reports the error until recovery."""
        known = {self.broadcaster, self.controller}
        names = list(request.activate_controllers) + list(request.deactivate_controllers)
        unknown = [n for n in names if n not in known]
        strict = request.strictness == request.STRICT
        with self._lock:
            if request.activate_controllers and self.in_reflex:
                response.ok, response.message = False, "the hardware is in reflex mode: run error recovery first"
            elif unknown and (strict or len(unknown) == len(names)):
                response.ok, response.message = False, f"unknown controllers {unknown} (known: {sorted(known)})"
            else:
                self.active -= set(request.deactivate_controllers)
                self.active |= known & set(request.activate_controllers)
                response.ok = True
                response.message = f"active: {sorted(self.active)}" + (f"; skipped {unknown}" if unknown else "")
        self.sim.get_logger().info(f"switch_controller: {response.message}")
        return response

    # -- state ----------------------------------------------------------------------------------------
    def publish_state(self, header, names, positions, velocities, tcp_pose):
        msg = self.msg.FrankaRobotState(header=header)
        msg.o_t_ee = pose_to_msg(tcp_pose, header)
        arm = [(n, p, v) for n, p, v in zip(names, positions, velocities) if "finger" not in n]
        msg.measured_joint_state.header = header
        msg.measured_joint_state.name = [n for n, _, _ in arm]
        msg.measured_joint_state.position = [float(p) for _, p, _ in arm]
        msg.measured_joint_state.velocity = [float(v) for _, _, v in arm]
        with self._lock:
            if self.broadcaster not in self.active:
                return
            # One snapshot: a reflex switched on meanwhile shows in this state and deactivates after it, not before.
            mode = self._mode()
            error, bad_pose = self.faults["robot_error"], self.faults["bad_pose"]
            if mode == RobotMode.REFLEX and self.reflex_deactivates:
                if self._reflex_states_sent >= self.reflex_states:
                    self.active.clear()
                    return
                self._reflex_states_sent += 1
        msg.robot_mode = int(mode)
        if bad_pose:
            orientation = msg.o_t_ee.pose.orientation
            orientation.x = orientation.y = orientation.z = orientation.w = 0.0
        msg.current_errors.cartesian_reflex = error
        msg.last_motion_errors.cartesian_reflex = error
        self.state_pub.publish(msg)

    # -- arm ------------------------------------------------------------------------------------------
    def _on_target(self, msg: PoseStamped):
        if self.halted():
            return  # the real controller stops with a reflex or user stop; the arm stays where it is
        try:
            pose = pose_from_msg(msg)
        except ValueError as error:
            self.sim.get_logger().error(f"ignoring invalid target pose: {error}", throttle_duration_sec=1.0)
            return
        with self._lock:
            if self.compliance is not None:
                self._goal = pose       # followed through the spring-damper at every physics step (step())
                return
        self.sim._requests.put((lambda world: world.set_cartesian_target(pose), None))

    def set_compliance(self, tracking) -> None:
        """Track targets through `tracking` (hamster_sim.compliance.CompliantTracking) from now on, or exactly
        (None). Started from wherever the arm is commanded now."""
        with self._lock:
            self.compliance, self._goal, self._commanded = tracking, None, None

    def step(self, world, dt: float) -> None:
        """Before each physics step (the simulator's thread): move the commanded position along the spring-damper."""
        with self._lock:
            tracking, goal = self.compliance, self._goal
        if tracking is None or self.halted():
            return
        current = world.cartesian_target()
        if self._commanded is None or not np.array_equal(current.position, self._commanded):
            tracking.reset(current.position)   # the start, or something else moved the arm (a scene reset)
            with self._lock:
                if self._goal is goal and self._commanded is not None:
                    self._goal = goal = None   # a target from before the reset must not pull the arm back
        if goal is None:
            self._commanded = current.position
            return
        world.set_cartesian_target(Pose(tracking.step(goal.position, dt), goal.orientation))
        self._commanded = world.cartesian_target().position

    # -- gripper --------------------------------------------------------------------------------------
    def _run_gripper(self, goal_handle, feedback, width: float, speed: float, force: float, grasp: bool):
        """Command the fingers and wait (this executor thread only) until they stop; returns (final width,
        error text or ''). A cancel is answered at once and acted on when this loop sees it, by stopping the
        fingers, as franka_gripper's gripper_action_server does (`gripper_->stop()`): that stops whatever command
        runs then, a newer goal's included. Feedback carries the fingers' width at franka_gripper's feedback rate."""
        if self.faults["stall_gripper"]:
            while not goal_handle.is_cancel_requested and self.node.context.ok():
                time.sleep(0.02)
            return None, "canceled"
        try:
            self.sim._in_sim_thread(lambda world: world.command_gripper(width, speed=speed, force=force, grasp=grasp))
        except (ValueError, RuntimeError) as error:
            return None, str(error)
        started = time.monotonic()
        time.sleep(0.05)
        while True:
            moving, measured = self.sim._in_sim_thread(lambda world: (world.gripper_moving(), world.gripper_width()))
            if not moving:
                return measured, ""
            goal_handle.publish_feedback(feedback(current_width=float(measured)))
            if goal_handle.is_cancel_requested:
                self.sim._in_sim_thread(lambda world: world.stop_gripper())
                return measured, "canceled"
            if time.monotonic() - started > GRIPPER_GOAL_LIMIT_SEC:
                return measured, f"the fingers did not stop within {GRIPPER_GOAL_LIMIT_SEC:g} s"
            time.sleep(1.0 / GRIPPER_FEEDBACK_RATE_HZ)

    def _finish(self, goal_handle, result, success: bool, error: str):
        result.success, result.error = bool(success), error
        if goal_handle.is_cancel_requested:
            goal_handle.canceled()
        elif success:
            goal_handle.succeed()
        else:
            goal_handle.abort()
        return result

    def _execute_move(self, goal_handle):
        goal = goal_handle.request
        result = self.action.Move.Result()
        if not (np.isfinite(goal.width) and 0.0 <= goal.width <= MAX_WIDTH and goal.speed > 0):
            return self._finish(goal_handle, result, False, f"invalid move goal width={goal.width} speed={goal.speed}")
        final, error = self._run_gripper(goal_handle, self.action.Move.Feedback, goal.width, min(goal.speed, 0.2),
                                         0.0, False)
        if not error and abs(final - goal.width) > 0.005:
            error = f"the fingers stopped at {final:.4f} m, not {goal.width:.4f} m (blocked?)"
        return self._finish(goal_handle, result, not error, error)

    def _execute_grasp(self, goal_handle):
        goal = goal_handle.request
        result = self.action.Grasp.Result()
        if not (np.isfinite(goal.width) and 0.0 <= goal.width <= MAX_WIDTH and goal.speed > 0 and goal.force > 0):
            return self._finish(goal_handle, result, False,
                                f"invalid grasp goal width={goal.width} speed={goal.speed} force={goal.force}")
        # Close until blocked, as the hand does, and judge the stop against the goal's epsilon window.
        final, error = self._run_gripper(goal_handle, self.action.Grasp.Feedback, 0.0, min(goal.speed, 0.2),
                                         min(goal.force, 70.0), True)
        if not error and not grasp_succeeded(final, goal.width, goal.epsilon.inner, goal.epsilon.outer):
            error = (f"grasp failed: the fingers stopped at {final:.4f} m, outside {goal.width:.4f} m "
                     f"-{goal.epsilon.inner:.4f}/+{goal.epsilon.outer:.4f}")
        return self._finish(goal_handle, result, not error, error)

    def _execute_homing(self, goal_handle):
        result = self.action.Homing.Result()
        final, error = self._run_gripper(goal_handle, self.action.Homing.Feedback, MAX_WIDTH, 0.1, 0.0, False)
        return self._finish(goal_handle, result, not error, error)
