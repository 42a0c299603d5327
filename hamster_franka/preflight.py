"""hamster-preflight: check a running robot (franka_ros2 + camera driver, or the simulator's franka interface)
before the first episode, and print a pass/fail table. Exit code 0 when every check passes, 1 otherwise.

    hamster-preflight [--calibration config/calibration.yaml] [--camera-hz 30] [--state-hz 100] [--nudge 0.01]
                      [--gripper move|homing|none] [--use-sim-time] [--json report.json]
    hamster-preflight --interfaces      # what the runtime expects from the robot side, and what is there now

Checks: every input topic is alive at its expected rate; header stamps are recent on this machine's clock and in
sync (colour vs depth, camera vs robot state); camera_info, the images and the calibration agree; the robot
mode is one that streams (no reflex, user stop or error); the point cloud, transformed with the calibration,
sees the gripper where the robot state says it is (hamster_core.preflight.CALIBRATION_TOLERANCE); the
controller subscribes to the target topic (franka.yaml's `controller` profile) and, with --nudge M, follows
a target M metres above
the current pose and back; franka_gripper answers a move to its current width (no motion) or a homing.

The nudge moves the arm only when the robot's mode/errors and its state stream's alive and recent rows passed
(otherwise its row is skipped with the reason), from a robot state at most two state periods old, with a goal
inside the workspace box, ramped at max_linear_speed (franka.yaml's franka_bridge limits by default), in the
runtime's base frame; it stops at once if the robot leaves a streaming mode or its state goes stale.

Run it before starting the runtime (with --nudge it publishes target poses itself: nothing else may).
Topic names default to config/franka_remappings.yaml and config/franka.yaml's franka_bridge section.
"""
from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path

import numpy as np
import yaml

from hamster_core.calibration import CalibrationError, CloudProjector, depth_in_metres, load_calibration, stream_problems
from hamster_core.franka import controller_link_problem, controller_target_topic, interpret_state
from hamster_core.geometry import Pose
from hamster_core.preflight import (NUDGE_STATE_PERIODS, Check, ExpectedInterface, GraphView, calibration_check,
                                    format_table, interface_checks, nudge_blocker, nudge_ramp, nudge_start_problem,
                                    nudge_tolerance, rate_check, recency_check, sync_check)
from hamster_ros.package_files import CONFIG_DIR

NUDGE_SETTLE_SEC = 1.5
NUDGE_SLOWEST_CLOCK = 10.0  # a ROS clock this many times slower than the wall aborts the nudge
NUDGE_START_WAIT_SEC = 1.0  # wait this long at most for a robot state fresh enough to start the nudge from


def _defaults() -> dict:
    remaps = yaml.safe_load((CONFIG_DIR / "franka_remappings.yaml").read_text())
    franka = yaml.safe_load((CONFIG_DIR / "franka.yaml").read_text())
    bridge = franka["franka_bridge"]["ros__parameters"]
    runtime = yaml.safe_load((CONFIG_DIR / "runtime.yaml").read_text())["policy_node"]["ros__parameters"]
    base_frame = franka.get("policy_node", {}).get("ros__parameters", {}).get("base_frame", runtime["base_frame"])
    return {"workspace_min": bridge["workspace_min"], "workspace_max": bridge["workspace_max"],
            "max_linear_speed": bridge["max_linear_speed"], "rate_hz": bridge["rate_hz"], "frame_id": base_frame,
            "color": remaps["/camera/color/image_raw"], "depth": remaps["/camera/depth/image_raw"],
            "info": remaps["/camera/color/camera_info"], "joints": remaps["/robot/joint_states"],
            "state": bridge["robot_state_topic"],
            "target": controller_target_topic(bridge["controller"], bridge.get("target_topic", "")),
            "gripper": bridge["gripper_namespace"], "calibration": str(CONFIG_DIR / "calibration.yaml"),
            "error_recovery_action": bridge["recovery"]["error_recovery_action"],
            "switch_controller_service": bridge["recovery"]["switch_controller_service"]}


def expected_interfaces(args) -> list[ExpectedInterface]:
    """What the runtime with robot:=franka needs from franka_ros2, the controller and the camera driver."""
    gripper = args.gripper_namespace.rstrip("/")
    return [
        ExpectedInterface("publisher", args.state_topic, "franka_msgs/msg/FrankaRobotState",
                          "franka_robot_state_broadcaster", "the measured pose, mode and errors"),
        ExpectedInterface("publisher", args.joint_states_topic, "sensor_msgs/msg/JointState",
                          "joint_state_broadcaster", "the finger width"),
        ExpectedInterface("subscriber", args.target_topic, "geometry_msgs/msg/PoseStamped",
                          "the Cartesian controller", "the target stream (franka_bridge.controller)"),
        *(ExpectedInterface("action", f"{gripper}/{name}", f"franka_msgs/action/{name.title()}", "franka_gripper",
                            "the gripper commands") for name in ("move", "grasp", "homing")),
        ExpectedInterface("action", args.error_recovery_action, "franka_msgs/action/ErrorRecovery",
                          "franka_hardware's action_server", "/robot/recover"),
        ExpectedInterface("service", args.switch_controller_service, "controller_manager_msgs/srv/SwitchController",
                          "controller_manager", "/robot/recover"),
        ExpectedInterface("publisher", args.color_topic, "sensor_msgs/msg/Image", "the camera driver",
                          "the VLM, perception and the cloud"),
        ExpectedInterface("publisher", args.depth_topic, "sensor_msgs/msg/Image", "the camera driver (aligned depth)",
                          "the cloud"),
        ExpectedInterface("publisher", args.info_topic, "sensor_msgs/msg/CameraInfo", "the camera driver",
                          "the cloud and the projection"),
    ]


def list_interfaces(args) -> tuple[list[Check], int]:
    """--interfaces: what the runtime expects and what the graph shows now (nothing is subscribed or moved)."""
    import rclpy
    from rclpy.action.graph import get_action_server_names_and_types_by_node

    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node("hamster_preflight_interfaces", context=context, start_parameter_services=False)
    try:
        expected = expected_interfaces(args)
        topics = [item.name for item in expected if item.kind in ("publisher", "subscriber")]

        def view() -> GraphView:
            actions, services = set(), set()
            for name, namespace in node.get_node_names_and_namespaces():   # servers only, node by node
                try:
                    actions |= {a for a, _ in get_action_server_names_and_types_by_node(node, name, namespace)}
                    services |= {s for s, _ in node.get_service_names_and_types_by_node(name, namespace)}
                except Exception:   # noqa: BLE001  (a node that left between the two calls)
                    continue
            return GraphView({t: (node.count_publishers(t), node.count_subscribers(t)) for t in topics},
                             frozenset(actions), frozenset(services))
        # Discovery takes a moment: look until everything is seen or discovery_timeout passed.
        deadline = time.monotonic() + args.discovery_timeout
        while True:
            checks = interface_checks(expected, view())
            if all(c.passed for c in checks) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    finally:
        node.destroy_node()
        context.try_shutdown()
    return checks, (1 if any(c.passed is False for c in checks) else 0)


class Probe:
    """A node in its own context that records what arrives: (wall receive time, header stamp, ROS now, msg)."""

    def __init__(self, args):
        import rclpy
        from geometry_msgs.msg import PoseStamped
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.parameter import Parameter
        from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import CameraInfo, Image, JointState

        from hamster_ros import interfaces as topics
        from hamster_ros.node_main import RuntimeNode
        from hamster_ros.spinner import BackgroundSpinner

        self.franka_msg, self.franka_action = topics.require_franka_msgs()
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = RuntimeNode("hamster_preflight", context=self.context,
                                parameter_overrides=[Parameter("use_sim_time", value=bool(args.use_sim_time))])
        self.lock = threading.Lock()
        self.records: dict[str, list] = {"color": [], "depth": [], "info": [], "state": [], "joints": []}
        subscriptions = (("color", Image, args.color_topic), ("depth", Image, args.depth_topic),
                         ("info", CameraInfo, args.info_topic), ("state", self.franka_msg.FrankaRobotState,
                                                                  args.state_topic),
                         ("joints", JointState, args.joint_states_topic))
        # Best effort like the publishers' sensor QoS, but a deep queue: a probe starved of CPU for a moment must
        # not count the messages it had no time to take as missing.
        deep = QoSProfile(depth=500, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.BEST_EFFORT)
        for key, msg_type, topic in subscriptions:
            self.node.create_subscription(msg_type, topic, lambda m, key=key: self._record(key, m), deep)
        self.target_topic = args.target_topic
        self.target_pub = self.node.create_publisher(PoseStamped, args.target_topic, topics.COMMAND)
        self.PoseStamped = PoseStamped
        # Every callback only records: one thread, far less CPU per message than the multi-threaded executor,
        # so a loaded machine does not leave the newest robot state queued behind older messages.
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.spinner = BackgroundSpinner(self.executor)

    def now(self) -> float:
        return self.node.get_clock().now().nanoseconds * 1e-9

    def _record(self, key: str, msg):
        from hamster_ros.conversions import stamp_to_seconds
        stamp = stamp_to_seconds(msg.header.stamp)
        with self.lock:
            records = self.records[key]
            records.append((time.monotonic(), stamp, self.now(), msg))
            if len(records) > 2000:
                del records[: len(records) - 2000]

    def snapshot(self, key: str) -> list:
        with self.lock:
            return list(self.records[key])

    def close(self):
        # The spin thread must have left rclpy before the interpreter exits, or its C++ side aborts the process.
        self.spinner.stop()
        self.node.destroy_node()
        self.context.try_shutdown()


def _tcp_from_state(msg) -> Pose:
    from hamster_ros.conversions import pose_from_msg
    return pose_from_msg(msg.o_t_ee)


def _finger_width(joint_records) -> float | None:
    if not joint_records:
        return None
    msg = joint_records[-1][3]
    fingers = [p for name, p in zip(msg.name, msg.position) if "finger" in name]
    return float(sum(fingers)) if fingers else None


def collect_checks(probe: Probe, args, window_start: float) -> list[Check]:
    from hamster_ros.conversions import image_to_numpy
    now_wall = time.monotonic()
    checks = []
    rec = {key: [r for r in probe.snapshot(key) if r[0] >= window_start] for key in probe.records}
    window = now_wall - window_start
    # Rates on this node's ROS clock: wall time on a robot, the simulator's /clock with --use-sim-time (which
    # may run slower than real time on a loaded machine).
    now_ros = probe.now()
    for key, topic, hz in (("color", args.color_topic, args.camera_hz), ("depth", args.depth_topic, args.camera_hz),
                           ("info", args.info_topic, args.camera_hz), ("state", args.state_topic, args.state_hz)):
        checks.append(rate_check(f"alive: {topic}", [r[2] for r in rec[key]], hz, window, now_ros))
    for key, topic in (("color", args.color_topic), ("depth", args.depth_topic), ("state", args.state_topic)):
        newest = rec[key][-1] if rec[key] else None
        # age at reception: latency + clock offset between the publisher's clock and this machine's
        checks.append(recency_check(f"recent: {topic}", None if newest is None else newest[1],
                                    None if newest is None else newest[2], args.max_age))
    color_stamps, depth_stamps = [r[1] for r in rec["color"]], [r[1] for r in rec["depth"]]
    state_stamps = [r[1] for r in rec["state"]]
    checks.append(sync_check("in sync: colour vs depth stamps", color_stamps, depth_stamps, args.rgb_depth_tolerance))
    checks.append(sync_check("in sync: camera vs robot state stamps", color_stamps, state_stamps,
                             2.0 / args.state_hz + 0.01))

    calibration = None
    try:
        calibration = load_calibration(args.calibration)
        checks.append(Check("calibration file", True, Path(args.calibration).name, "loads",
                            f"camera at {np.round(calibration.pose.position, 3).tolist()}"))
    except CalibrationError as error:
        checks.append(Check("calibration file", False, "unusable", "loads", str(error)))

    info = rec["info"][-1][3] if rec["info"] else None
    depth = rec["depth"][-1][3] if rec["depth"] else None
    color = rec["color"][-1][3] if rec["color"] else None
    if info is None or depth is None:
        checks.append(Check("camera: intrinsics and image sizes agree", False, "no data", "same size",
                            "no camera_info or depth image"))
    else:
        problems = stream_problems((info.width, info.height), info.k, (depth.width, depth.height),
                                   None if color is None else (color.width, color.height), calibration)
        checks.append(Check("camera: intrinsics and image sizes agree", not problems,
                            f"{info.width}x{info.height}", "same size", "; ".join(problems)))

    if rec["state"]:
        state = rec["state"][-1][3]
        errors = {name: bool(getattr(state.current_errors, name))
                  for name in state.current_errors.get_fields_and_field_types()}
        health = interpret_state(state.robot_mode, errors)
        checks.append(Check("robot: mode and errors", health.ok, health.mode, "idle or move", health.reason))
    else:
        checks.append(Check("robot: mode and errors", False, "no state", "idle or move", "no robot state"))

    name = "calibration: cloud sees the gripper at the measured pose"
    if calibration is None or depth is None or info is None or not rec["state"]:
        checks.append(Check(name, None, "-", "-", "needs the calibration, depth, camera_info and robot state"))
    else:
        try:
            k = np.asarray(info.k, dtype=float).reshape(3, 3)
            projector = CloudProjector(info.width, info.height, k[0, 0], k[1, 1], k[0, 2], k[1, 2],
                                       calibration.base_from_camera, stride=1)
            depth_stamp = rec["depth"][-1][1]
            state = min(rec["state"], key=lambda r: abs(r[1] - depth_stamp))[3]
            points, _ = projector.points(depth_in_metres(image_to_numpy(depth), depth.encoding, args.depth_scale))
            width = _finger_width(rec["joints"])
            checks.append(calibration_check(points, _tcp_from_state(state), 0.08 if width is None else width,
                                            args.calibration_tolerance))
        except (CalibrationError, ValueError) as error:
            checks.append(Check(name, False, "error", "-", str(error)))
    return checks


def _state_health(msg):
    errors = {name: bool(getattr(msg.current_errors, name)) for name in msg.current_errors.get_fields_and_field_types()}
    return interpret_state(msg.robot_mode, errors)


def controller_check(probe: Probe, args, checks: list[Check] | None = None) -> Check:
    name = "controller: takes the target stream"
    subscribers = probe.node.count_subscribers(probe.target_topic)
    if subscribers == 0:
        return Check(name, False, "no subscriber", "the controller subscribes",
                     controller_link_problem(probe.target_topic, subscribers, 1))
    if args.nudge <= 0:
        return Check(name, True, f"{subscribers} subscriber(s)", "subscribed", "not moved (--nudge 0)")
    others = probe.node.count_publishers(probe.target_topic) - 1
    if others > 0:
        return Check(name, None, f"{subscribers} subscriber(s)", "subscribed",
                     f"not nudged: {others} other publisher(s) on {probe.target_topic} (stop the runtime first)")
    blocker = nudge_blocker(checks or [], args.state_topic)
    if blocker is not None:
        return Check(name, None, f"{subscribers} subscriber(s)", "subscribed", blocker)

    def newest_problem(periods: float):
        """(why the newest robot state is older than `periods` state periods, why it is unhealthy, the state)."""
        states = probe.snapshot("state")
        if not states:
            return "not nudged: no robot state", None, None
        received, stamp, _, msg = states[-1]
        stale = nudge_start_problem(probe.now() - stamp, time.monotonic() - received, args.state_hz, periods)
        health = _state_health(msg)
        return stale, (None if health.ok else f"not nudged: {health.reason}"), msg

    # Start from a state at most NUDGE_STATE_PERIODS old (the newest one of a live stream; waited for briefly).
    deadline = time.monotonic() + NUDGE_START_WAIT_SEC
    while True:
        stale, unhealthy, state = newest_problem(NUDGE_STATE_PERIODS)
        problem = unhealthy or stale
        if problem is None or unhealthy or time.monotonic() > deadline:
            break
        time.sleep(0.002)
    if problem is not None:
        return Check(name, None, f"{subscribers} subscriber(s)", "subscribed", problem)
    # While moving: stop at once on a bad mode or error; send nothing while the state is older than --max-age (the
    # recency row's limit), and give up when it stays so for NUDGE_START_WAIT_SEC.
    moving_periods = max(NUDGE_STATE_PERIODS, args.max_age * args.state_hz)
    given_up_periods = NUDGE_START_WAIT_SEC * args.state_hz
    start = _tcp_from_state(state)
    up = start.position + np.array([0.0, 0.0, args.nudge])
    try:
        legs = [nudge_ramp(start, up, args.max_linear_speed, args.rate_hz, args.workspace_min, args.workspace_max)]
        legs.append(nudge_ramp(Pose(up, start.orientation), start.position, args.max_linear_speed, args.rate_hz,
                               args.workspace_min, args.workspace_max))
    except ValueError as error:
        return Check(name, None, f"{subscribers} subscriber(s)", "subscribed", str(error))
    from std_msgs.msg import Header

    from hamster_ros.conversions import pose_to_msg
    errors = []
    for leg in legs:
        goal = leg[-1]
        # Paced and settled on the robot's clock (ROS time: a simulator's under --use-sim-time, which runs slower
        # than the wall on a loaded machine and would otherwise see a faster ramp and a shorter settle).
        deadline = probe.now() + NUDGE_SETTLE_SEC
        wall_deadline = time.monotonic() + NUDGE_SETTLE_SEC * NUDGE_SLOWEST_CLOCK
        index = 0
        while probe.now() < deadline:  # a steady stream, as the controller expects: the ramp, then the goal
            if time.monotonic() > wall_deadline:
                return Check(name, False, "aborted", "follows",
                             f"nudge aborted: ROS time advanced less than {NUDGE_SETTLE_SEC:g} s in "
                             f"{NUDGE_SETTLE_SEC * NUDGE_SLOWEST_CLOCK:g} s (is /clock published?)")
            stale, unhealthy, _ = newest_problem(moving_periods)
            if unhealthy is None and stale is not None:
                unhealthy = newest_problem(given_up_periods)[0]
            if unhealthy is not None:  # a reflex, a user stop, an error, or the state stopped: nothing more is sent
                return Check(name, False, "aborted", "follows", unhealthy.replace("not nudged", "nudge aborted"))
            if stale is not None:  # paused: the controller holds the last target until the state is back
                time.sleep(0.005)
                continue
            target = leg[min(index, len(leg) - 1)]
            index += 1
            probe.target_pub.publish(pose_to_msg(target, Header(frame_id=args.frame_id,
                                                                     stamp=probe.node.get_clock().now().to_msg())))
            _sleep_ros(probe, 1.0 / args.rate_hz, wall_deadline)
        reached = _tcp_from_state(probe.snapshot("state")[-1][3])
        errors.append(float(np.linalg.norm(reached.position - goal.position)))
    worst, tolerance = max(errors), nudge_tolerance(args.stiffness, args.unmodelled_force)
    return Check(name, worst <= tolerance, f"{worst * 1000:.1f} mm off", f"<= {tolerance * 1000:.1f} mm",
                 f"nudged {args.nudge * 100:.1f} cm up and back")


def _sleep_ros(probe: Probe, seconds: float, wall_deadline: float) -> None:
    """Sleep until the probe's ROS time advanced by `seconds` (at most until `wall_deadline`)."""
    until = probe.now() + seconds
    time.sleep(seconds)
    while probe.now() < until and time.monotonic() < wall_deadline:
        time.sleep(0.001)


def gripper_check(probe: Probe, args) -> Check:
    from rclpy.action import ActionClient
    name = f"gripper: answers a {args.gripper} goal"
    if args.gripper == "none":
        return Check(name, None, "-", "-", "--gripper none")
    action_type = probe.franka_action.Move if args.gripper == "move" else probe.franka_action.Homing
    action_name = f"{args.gripper_namespace.rstrip('/')}/{args.gripper}"
    client = ActionClient(probe.node, action_type, action_name)
    try:
        deadline = time.monotonic() + args.gripper_timeout
        while not client.server_is_ready():
            if time.monotonic() > deadline:
                return Check(name, False, "no server", "result success", f"no action server {action_name}")
            time.sleep(0.05)
        if args.gripper == "move":
            width = _finger_width(probe.snapshot("joints"))
            goal = action_type.Goal(width=0.08 if width is None else min(max(width, 0.0), 0.08), speed=0.05)
        else:
            goal = action_type.Goal()
        started = time.monotonic()
        future = client.send_goal_async(goal)
        while not future.done():
            if time.monotonic() > deadline:
                return Check(name, False, "no answer", "result success", "the goal was not accepted in time")
            time.sleep(0.02)
        handle = future.result()
        if not handle.accepted:
            return Check(name, False, "rejected", "result success", "the gripper rejected the goal")
        result_future = handle.get_result_async()
        while not result_future.done():
            if time.monotonic() > deadline:
                handle.cancel_goal_async()
                return Check(name, False, "timeout", "result success",
                             f"no result within {args.gripper_timeout:g} s")
            time.sleep(0.02)
        result = result_future.result().result
        return Check(name, bool(result.success), f"{time.monotonic() - started:.2f} s", "result success",
                     result.error)
    finally:
        client.destroy()


def run(args) -> tuple[list[Check], int]:
    probe = Probe(args)
    try:
        # Discovery first (a fresh process can take a second or more to match every publisher): the window
        # starts once every stream has delivered, or after discovery_timeout (a dead stream then fails its rows).
        deadline = time.monotonic() + args.discovery_timeout
        while time.monotonic() < deadline and not all(probe.snapshot(key) for key in ("color", "depth", "info",
                                                                                          "state")):
            time.sleep(0.05)
        time.sleep(0.2)  # past the first burst of queued messages
        started = time.monotonic()
        time.sleep(args.duration)
        checks = collect_checks(probe, args, started)
        checks.append(controller_check(probe, args, checks))
        checks.append(gripper_check(probe, args))
    finally:
        probe.close()
    return checks, (1 if any(c.passed is False for c in checks) else 0)


def main(argv=None) -> int:
    defaults = _defaults()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calibration", default=defaults["calibration"])
    parser.add_argument("--camera-hz", type=float, default=30.0, help="expected camera rate")
    parser.add_argument("--state-hz", type=float, default=100.0, help="expected robot state rate")
    parser.add_argument("--duration", type=float, default=2.0, help="listening time (s)")
    parser.add_argument("--discovery-timeout", type=float, default=10.0,
                        help="wait at most this long for every stream's first message (s)")
    parser.add_argument("--max-age", type=float, default=0.1, help="newest stamp at most this old on arrival (s)")
    parser.add_argument("--rgb-depth-tolerance", type=float, default=0.017, help="s between colour and depth stamps")
    parser.add_argument("--calibration-tolerance", type=float, default=0.02, help="m, see hamster_core.preflight")
    parser.add_argument("--depth-scale", type=float, default=0.001, help="m per unit of 16UC1 depth")
    parser.add_argument("--nudge", type=float, default=0.0, help="m to move the arm up and back (0: do not move)")
    parser.add_argument("--stiffness", type=float, default=0.0,
                        help="N/m of the Cartesian impedance controller: the nudge may then stop short by "
                             "--unmodelled-force / stiffness (+2 mm); 0: a stiff arm, 5 mm")
    parser.add_argument("--unmodelled-force", type=float, default=2.0,
                        help="N the controller does not model (friction, payload error), with --stiffness")
    parser.add_argument("--gripper", choices=("move", "homing", "none"), default="move")
    parser.add_argument("--gripper-timeout", type=float, default=10.0)
    parser.add_argument("--use-sim-time", action="store_true", help="the simulator: stamps are on /clock")
    parser.add_argument("--color-topic", default=defaults["color"])
    parser.add_argument("--depth-topic", default=defaults["depth"])
    parser.add_argument("--info-topic", default=defaults["info"])
    parser.add_argument("--state-topic", default=defaults["state"])
    parser.add_argument("--joint-states-topic", default=defaults["joints"])
    parser.add_argument("--target-topic", default=defaults["target"],
                        help="the controller's target pose topic (default: franka.yaml's franka_bridge controller)")
    parser.add_argument("--gripper-namespace", default=defaults["gripper"])
    parser.add_argument("--max-linear-speed", type=float, default=defaults["max_linear_speed"],
                        help="m/s of the nudge's ramp (default: franka.yaml's franka_bridge limit)")
    parser.add_argument("--rate-hz", type=float, default=defaults["rate_hz"], help="rate of the nudge's targets")
    parser.add_argument("--workspace-min", type=float, nargs=3, default=defaults["workspace_min"],
                        help="the nudge's start and goal must be in this box (default: franka.yaml's)")
    parser.add_argument("--workspace-max", type=float, nargs=3, default=defaults["workspace_max"])
    parser.add_argument("--frame-id", default=defaults["frame_id"], help="frame of the nudge's targets (the "
                        "runtime's policy_node.base_frame by default)")
    parser.add_argument("--error-recovery-action", default=defaults["error_recovery_action"])
    parser.add_argument("--switch-controller-service", default=defaults["switch_controller_service"])
    parser.add_argument("--interfaces", action="store_true",
                        help="only list the topics, actions and services the runtime expects from the robot side "
                             "and whether the graph has them now (exit 1 when one is missing); moves nothing")
    parser.add_argument("--json", type=Path, default=None, help="also write the checks as JSON")
    args = parser.parse_args(argv)
    if not 0 <= args.nudge <= 0.05:
        parser.error(f"--nudge must be in [0, 0.05] m, got {args.nudge}")
    try:
        nudge_tolerance(args.stiffness, args.unmodelled_force)
    except ValueError as error:
        parser.error(str(error))
    if not (args.max_linear_speed > 0 and args.rate_hz > 0):
        parser.error("--max-linear-speed and --rate-hz must be positive")
    try:
        checks, code = list_interfaces(args) if args.interfaces else run(args)
    except ImportError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(format_table(checks, "INTERFACES" if args.interfaces else "PRE-FLIGHT"), flush=True)
    if args.json:
        args.json.write_text(json.dumps([c.as_dict() for c in checks], indent=1))
    return code


if __name__ == "__main__":
    sys.exit(main())
