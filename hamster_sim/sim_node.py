"""sim_node: the MuJoCo FR3 simulator behind the same topics a real Franka setup offers.

Physics and the 1 kHz differential-IK controller run on their own thread, paced to real time (or a factor
of it); the node publishes /clock, robot state, the RGB-D camera, a base-frame point cloud and ground-truth
segmentation, and takes Cartesian targets and gripper commands exactly as the robot would.

Fault injection, for tests and bring-up (std_srvs/SetBool, data=true starts the fault, false ends it):
- /sim/stall_camera: the camera stops publishing (image, depth, camera info, points, segmentation), as a
  hung driver or unplugged cable would; physics and robot state go on.
- /sim/freeze_state: /robot/joint_states and /robot/ee_pose stop publishing (frozen proprioception); the arm
  still follows its last target.

`interface: franka` swaps the robot side for franka_ros2's (hamster_sim.franka_interface: FrankaRobotState,
the Cartesian controller's target pose, franka_gripper's actions; /robot/ee_pose, /robot/cartesian_target
and /robot/gripper_command are then the franka adapter's business). With `publish_points: false` the runtime's
camera_cloud node makes /camera/points and /camera/pose from depth and a calibration file, as on a real setup;
`depth_encoding: 16UC1` publishes depth in millimetres as a RealSense does.
"""
from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future

import numpy as np
import rclpy
from geometry_msgs.msg import PoseStamped
from rcl_interfaces.msg import SetParametersResult
from rclpy.callback_groups import ReentrantCallbackGroup
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CameraInfo, Image, JointState, PointCloud2
from std_msgs.msg import Header, String
from std_srvs.srv import SetBool, Trigger

from hamster_core.franka import RECOVERY_CONTROLLERS, RecoveryConfig
from hamster_core.geometry import Pose
from hamster_msgs.msg import GripperCommand
from hamster_msgs.srv import ResetScene
from hamster_ros import interfaces as topics
from hamster_ros.allocator import release_free_memory
from hamster_ros.conversions import (camera_info_to_msg, numpy_to_image, numpy_to_pointcloud2, pose_from_msg,
                                     pose_to_msg, seconds_to_stamp)
from hamster_ros.node_main import RuntimeNode, declare, run_node
from hamster_sim.compliance import CompliantTracking
from hamster_sim.ground_truth import encode_scene_payload
from hamster_sim.scene import SceneConfig, sample_scene
from hamster_sim.world import FrankaWorld

# franka_ros2 names the hand's joints with the arm's prefix; the MJCF model does not.
JOINT_NAME_MAP = {"finger_joint1": "fr3_finger_joint1", "finger_joint2": "fr3_finger_joint2"}
COMPLIANCE_PARAMETERS = (
    ("stiffness", 0.0, "N/m of the franka interface's compliant arm (crisp_controllers' k_pos is 400); 0: the "
                       "arm tracks targets exactly."),
    ("friction", 0.0, "N of Coulomb friction: at rest the arm stops up to friction / stiffness short."),
    ("mass", 2.0, "kg, the effective Cartesian mass at the TCP."),
    ("damping_ratio", 1.0, "1: critically damped."),
)


class Every:
    """Fires once per period of simulated time."""

    def __init__(self, rate_hz: float):
        if not rate_hz > 0:
            raise ValueError(f"rate must be positive, got {rate_hz}")
        self.period = 1.0 / rate_hz
        self.next = 0.0

    def due(self, t: float) -> bool:
        if t + 1e-9 < self.next:
            return False
        self.next = max(self.next + self.period, t)
        return True


class SimNode(RuntimeNode):
    def __init__(self):
        super().__init__("sim_node")
        seed = declare(self, "seed", 0, "Seed of the first scene (reset picks new ones).")
        width = declare(self, "image_width", 320, "Camera image width (px).")
        height = declare(self, "image_height", 240, "Camera image height (px).")
        self.real_time_factor = declare(self, "real_time_factor", 1.0,
                                        "Simulated seconds per wall second at most; 0 runs as fast as it can.")
        self.cloud_stride = declare(self, "cloud_stride", 2, "Publish every n-th pixel's point in each direction.")
        self.base_frame = declare(self, "base_frame", "base", "Robot base frame id.")
        self.camera_frame = declare(self, "camera_frame", "camera_color_optical_frame", "Camera optical frame id.")
        self.camera_rate = Every(declare(self, "camera_rate_hz", 10.0, "Camera, cloud and segmentation rate."))
        self.state_rate = Every(declare(self, "state_rate_hz", 100.0, "Joint state and end-effector pose rate."))
        self.clock_rate = Every(declare(self, "clock_rate_hz", 250.0, "/clock rate."))
        if self.real_time_factor < 0:
            raise ValueError(f"real_time_factor must be >= 0, got {self.real_time_factor}")
        if not 1 <= self.cloud_stride <= 16:
            raise ValueError(f"cloud_stride must be in [1, 16], got {self.cloud_stride}")
        self.interface = declare(self, "interface", "hamster",
                                 "hamster: the runtime's /robot/* topics; franka: franka_ros2's names and types.")
        self.publish_points = declare(self, "publish_points", True,
                                      "Publish /camera/points and /camera/pose (false: the runtime computes them).")
        self.depth_encoding = declare(self, "depth_encoding", "32FC1", "32FC1 (m) or 16UC1 (mm, as a RealSense).")
        self.franka_state_topic = declare(self, "franka.robot_state_topic",
                                          topics.FRANKA_ROBOT_STATE, "FrankaRobotState topic.")
        self.franka_target_topic = declare(self, "franka.target_topic", "/target_pose",
                                           "The Cartesian controller's target pose topic (crisp_controllers').")
        self.franka_gripper_namespace = declare(self, "franka.gripper_namespace", "/franka_gripper",
                                                "franka_gripper's action namespace (move, grasp, homing).")
        franka_state_hz = declare(self, "franka.state_rate_hz", 0.0,
                                  "FrankaRobotState rate (franka_robot_state_broadcaster's is 1000); 0: state_rate_hz.")
        self.franka_state_rate = Every(franka_state_hz) if franka_state_hz else None
        self.franka_reflex_deactivates = declare(
            self, "franka.reflex_deactivates_controllers", True,
            "On a reflex, the state broadcaster and the controller go inactive (as ros2_control does when "
            "franka_hardware reports the error) until switched on again.")
        self.franka_reflex_states = declare(
            self, "franka.reflex_states_before_inactive", 20,
            "States showing the reflex before they go inactive (how many a real FR3 sends is not known: perhaps "
            "none, and the adapter then halts on the stale state).")
        if self.franka_reflex_states < 0:
            raise ValueError(f"franka.reflex_states_before_inactive must be >= 0, got {self.franka_reflex_states}")
        self.franka_recovery = RecoveryConfig(
            error_recovery_action=declare(self, "franka.error_recovery_action", "/action_server/error_recovery",
                                          "franka_hardware's ErrorRecovery action (clears a reflex)."),
            switch_controller_service=declare(self, "franka.switch_controller_service",
                                              "/controller_manager/switch_controller",
                                              "controller_manager's SwitchController service."),
            controllers=tuple(declare(self, "franka.controllers", list(RECOVERY_CONTROLLERS),
                                      "The state broadcaster's and the Cartesian controller's names.")))
        # A compliant arm (hamster_sim.compliance): settable at run time (ros2 param set /sim_node ...).
        for name, default, text in COMPLIANCE_PARAMETERS:
            declare(self, f"franka.compliance.{name}", default, text)
        self.add_on_set_parameters_callback(self._on_compliance_parameters)
        if self.interface not in ("hamster", "franka"):
            raise ValueError(f"interface must be 'hamster' or 'franka', got {self.interface!r}")
        if self.depth_encoding not in ("32FC1", "16UC1"):
            raise ValueError(f"depth_encoding must be '32FC1' or '16UC1', got {self.depth_encoding!r}")

        self._sim_time = 0.0  # monotonic across resets, unlike MuJoCo's own time
        # The world, and its OpenGL context, belong to the simulation thread: callbacks hand it work through
        # this queue instead of touching it (EGL contexts cannot move between threads).
        self._requests: queue.SimpleQueue = queue.SimpleQueue()

        self.clock_pub = self.create_publisher(Clock, "/clock", topics.SENSOR)
        self.joint_pub = self.create_publisher(JointState, topics.JOINT_STATES, topics.SENSOR)
        self.ee_pub = self.create_publisher(PoseStamped, topics.EE_POSE, topics.SENSOR)
        self.image_pub = self.create_publisher(Image, topics.COLOR_IMAGE, topics.SENSOR)
        self.depth_pub = self.create_publisher(Image, topics.DEPTH_IMAGE, topics.SENSOR)
        self.info_pub = self.create_publisher(CameraInfo, topics.COLOR_INFO, topics.SENSOR)
        self.points_pub = self.create_publisher(PointCloud2, topics.POINTS, topics.SENSOR)
        self.segmentation_pub = self.create_publisher(Image, topics.SEGMENTATION, topics.SENSOR)
        self.camera_pose_pub = self.create_publisher(PoseStamped, topics.CAMERA_POSE, topics.LATCHED)
        self.scene_pub = self.create_publisher(String, topics.SIM_SCENE, topics.LATCHED)
        group = ReentrantCallbackGroup()
        self.franka = None
        if self.interface == "hamster":
            self.create_subscription(PoseStamped, topics.CARTESIAN_TARGET, self._on_target, topics.COMMAND,
                                     callback_group=group)
            self.create_subscription(GripperCommand, topics.GRIPPER_COMMAND, self._on_gripper, topics.EVENTS,
                                     callback_group=group)
        self.create_service(ResetScene, topics.SIM_RESET, self._on_reset, callback_group=group)
        self.create_service(Trigger, topics.SIM_CHECK_SUCCESS, self._on_check_success, callback_group=group)
        self._camera_stalled = self._state_frozen = False  # fault injection (see the module docstring)
        self.create_service(SetBool, topics.SIM_STALL_CAMERA, self._fault_switch("camera stall", "_camera_stalled"),
                            callback_group=group)
        self.create_service(SetBool, topics.SIM_FREEZE_STATE, self._fault_switch("robot state freeze",
                                                                                 "_state_frozen"),
                            callback_group=group)

        self._running = True
        self._thread = threading.Thread(target=self._run, args=(seed, width, height), daemon=True)
        self._thread.start()
        scene = self._in_sim_thread(lambda world: world.scene, timeout=120.0)  # waits until the world is built
        if self.interface == "franka":
            from hamster_sim.franka_interface import SimFrankaInterface
            try:
                self.franka = SimFrankaInterface(self)
            except ImportError as error:
                self.close()
                raise ValueError(str(error)) from None
            self.franka.set_compliance(self._compliance({}))
        self.get_logger().info(f"scene seed={seed}: {scene.instruction!r}, camera {width}x{height}, "
                               f"interface {self.interface}")

    def _compliance(self, changed: dict) -> CompliantTracking | None:
        """The compliance the franka.compliance.* parameters describe (with `changed` name -> value applied), None
        for exact tracking (stiffness 0); ValueError naming a bad value."""
        values = {name: float(changed.get(f"franka.compliance.{name}",
                                          self.get_parameter(f"franka.compliance.{name}").value))
                  for name, _, _ in COMPLIANCE_PARAMETERS}
        stiffness = values.pop("stiffness")
        # The other values are checked while it is off too: a bad one is refused when set, not when first used.
        tracking = CompliantTracking(stiffness=stiffness or 1.0, **values)
        return tracking if stiffness else None

    def _on_compliance_parameters(self, parameters):
        changed = {p.name: p.value for p in parameters if p.name.startswith("franka.compliance.")}
        if not changed:
            return SetParametersResult(successful=True)
        try:
            tracking = self._compliance(changed)
        except (ValueError, TypeError) as error:
            return SetParametersResult(successful=False, reason=str(error))
        if self.franka is not None:
            self.franka.set_compliance(tracking)
            self.get_logger().info("franka interface: " + ("exact tracking" if tracking is None else
                                   f"compliant tracking, {tracking.stiffness:g} N/m, {tracking.friction:g} N friction"))
        return SetParametersResult(successful=True)

    def close(self):
        self._running = False
        self._thread.join(timeout=2.0)
        if self.franka is not None:
            self.franka.close()

    def _in_sim_thread(self, function, timeout: float = 30.0):
        """Run `function(world)` on the simulation thread between two physics steps; return its result."""
        future = Future()
        self._requests.put((function, future))
        if not self._thread.is_alive():
            self._fail_requests(RuntimeError("the simulation has stopped"))
        return future.result(timeout=timeout)

    # -- commands -------------------------------------------------------------------------------------
    def _on_target(self, msg: PoseStamped):
        try:
            pose = pose_from_msg(msg)
        except ValueError as error:
            self.get_logger().error(f"ignoring invalid Cartesian target: {error}", throttle_duration_sec=1.0)
            return
        self._requests.put((lambda world: world.set_cartesian_target(pose), None))

    def _on_gripper(self, msg: GripperCommand):
        if msg.command == GripperCommand.HOMING:
            width, grasp = 0.08, False
        elif msg.command in (GripperCommand.MOVE, GripperCommand.GRASP):
            width, grasp = msg.width, msg.command == GripperCommand.GRASP
        else:
            self.get_logger().error(f"ignoring unknown gripper command {msg.command}")
            return
        if not (np.isfinite(width) and 0.0 <= width <= 0.08 and np.isfinite(msg.speed) and msg.speed > 0):
            self.get_logger().error(f"ignoring gripper command with width={width} speed={msg.speed}")
            return
        force = msg.force or 20.0
        self._requests.put((lambda world: world.command_gripper(width, speed=msg.speed, force=force, grasp=grasp),
                            None))

    def _on_reset(self, request, response):
        try:
            scene = sample_scene(request.seed, SceneConfig())
            self._in_sim_thread(lambda world: (world.reset(scene), self._publish_scene(world), release_free_memory()))
        except ValueError as error:
            response.success, response.message = False, str(error)
            return response
        response.success, response.message, response.instruction = True, f"seed {request.seed}", scene.instruction
        self.get_logger().info(f"reset: seed={request.seed} {scene.instruction!r}")
        return response

    def _fault_switch(self, what: str, flag: str):
        def switch(request, response):
            setattr(self, flag, bool(request.data))
            response.success, response.message = True, f"{what} {'on' if request.data else 'off'}"
            self.get_logger().warn(f"fault injection: {response.message}")
            return response
        return switch

    def _on_check_success(self, request, response):
        def check(world):
            return world.check_success(), world.scene.target, world.object_position(world.scene.target)
        success, target, position = self._in_sim_thread(check)
        response.success = bool(success)
        response.message = f"{target} at {np.round(position, 3).tolist()}"
        return response

    # -- simulation loop ------------------------------------------------------------------------------
    def _header(self, frame: str) -> Header:
        return Header(frame_id=frame, stamp=seconds_to_stamp(self._sim_time))

    def _publish_scene(self, world: FrankaWorld):
        payload = encode_scene_payload(world.scene, world.segmentation_ids())
        camera = world.camera()
        self.scene_pub.publish(String(data=payload))
        if self.publish_points:
            self.camera_pose_pub.publish(pose_to_msg(Pose.from_matrix(camera.base_from_camera),
                                                 self._header(self.base_frame)))

    def _run(self, seed: int, width: int, height: int):
        world = None
        try:
            world = FrankaWorld(sample_scene(seed, SceneConfig()), image_width=width,
                                             image_height=height)
            self._publish_scene(world)
            self._simulate(world)
        except Exception as error:  # a dead simulation must not look alive: end the node
            if rclpy.ok():  # (when shutting down, publishers are already gone: nothing to report)
                self.get_logger().fatal(f"simulation stopped: {type(error).__name__}: {error}")
                rclpy.try_shutdown()
        finally:
            # Whoever waits on the simulation (the constructor, a service) must not wait for a dead thread.
            self._fail_requests(RuntimeError("the simulation has stopped"))
            if world is not None:
                world.close()  # its OpenGL context belongs to this thread

    def _fail_requests(self, error: Exception):
        while True:
            try:
                _, future = self._requests.get_nowait()
            except queue.Empty:
                return
            if future is not None:
                future.set_exception(error)

    def _serve_requests(self, world: FrankaWorld):
        while True:
            try:
                function, future = self._requests.get_nowait()
            except queue.Empty:
                return
            try:
                result = function(world)
            except Exception as error:  # a rejected command or failed request; the simulation goes on
                if future is None:
                    self.get_logger().error(f"command rejected: {error}", throttle_duration_sec=1.0)
                else:
                    future.set_exception(error)
            else:
                if future is not None:
                    future.set_result(result)

    def _simulate(self, world: FrankaWorld):
        wall_start, sim_start = time.monotonic(), self._sim_time
        timestep = world.model.opt.timestep
        while self._running and rclpy.ok():
            self._serve_requests(world)
            if self.franka is not None:
                self.franka.step(world, timestep)
            world.step(1)
            self._sim_time += timestep
            joints_due = self.state_rate.due(self._sim_time)
            franka_due = self.franka is not None and (
                joints_due if self.franka_state_rate is None else self.franka_state_rate.due(self._sim_time))
            state = self._read_state(world) if joints_due or franka_due else None
            frame = (world.render(), world.camera()) if self.camera_rate.due(self._sim_time) else None
            if self._state_frozen:
                state = None
            if self._camera_stalled:
                frame = None
            if self.clock_rate.due(self._sim_time):
                self.clock_pub.publish(Clock(clock=seconds_to_stamp(self._sim_time)))
            if state is not None:
                self._publish_state(*state, joints=joints_due, franka=franka_due)
            if frame is not None:
                self._publish_camera(*frame)
            if self.real_time_factor > 0:
                ahead = (self._sim_time - sim_start) / self.real_time_factor - (time.monotonic() - wall_start)
                if ahead > 0.002:
                    time.sleep(ahead)

    @staticmethod
    def _read_state(world: FrankaWorld):
        return world.joint_names(), world.joint_positions(), world.joint_velocities(), world.tcp_pose()

    def _publish_state(self, names, positions, velocities, tcp_pose, joints: bool = True, franka: bool = False):
        header = self._header(self.base_frame)
        names = [JOINT_NAME_MAP.get(n, n) for n in names]
        if joints:
            self.joint_pub.publish(JointState(header=header, name=names, position=[float(p) for p in positions],
                                              velocity=[float(v) for v in velocities]))
        if franka:  # the franka adapter makes /robot/ee_pose from the robot state
            self.franka.publish_state(header, names, positions, velocities, tcp_pose)
        elif self.franka is None and joints:
            self.ee_pub.publish(pose_to_msg(tcp_pose, header))

    def _publish_camera(self, images, camera):
        rgb, depth, segmentation = images
        header = self._header(self.camera_frame)
        self.image_pub.publish(numpy_to_image(rgb, "rgb8", header))
        if self.depth_encoding == "16UC1":
            millimetres = np.where(np.isfinite(depth) & (depth > 0), np.round(depth * 1000.0), 0)
            self.depth_pub.publish(numpy_to_image(np.clip(millimetres, 0, 65535).astype(np.uint16), "16UC1", header))
        else:
            self.depth_pub.publish(numpy_to_image(depth.astype(np.float32), "32FC1", header))
        self.segmentation_pub.publish(numpy_to_image(segmentation.astype(np.int32), "32SC1", header))
        self.info_pub.publish(camera_info_to_msg(camera, header))
        if not self.publish_points:
            return
        stride = self.cloud_stride
        points = camera.depth_to_points(depth)[::stride, ::stride].reshape(-1, 3)
        colors = rgb[::stride, ::stride].reshape(-1, 3)
        valid = np.all(np.isfinite(points), axis=1)
        self.points_pub.publish(numpy_to_pointcloud2(points[valid].astype(np.float32), colors[valid],
                                                     self._header(self.base_frame)))


def main():
    # Physics runs on the node's own thread; one executor thread for the few callbacks keeps the GIL free for it.
    run_node(SimNode, threads=1)


if __name__ == "__main__":
    main()
