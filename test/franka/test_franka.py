"""robot:=franka end to end against the simulator's franka-shaped interface (issue 7).

franka_msgs cannot be installed here: the module builds the test stand-in (tools/franka_msgs_standin, same field
layout) into a temporary prefix once, and starts the nodes with that environment. The test process itself never
imports franka_msgs: it watches the runtime's side (/robot/status, /robot/gripper_result) and the target pose
stream the adapter sends to the "controller".

First the simulator alone: hamster-preflight passes on it, and names the failure with a wrong extrinsic and with a
stalled camera. Then the runtime (franka_bridge, camera_cloud, VLM, perception, policy) joins: nothing is sent before
/robot/enable, an episode succeeds, a reflex / user stop / error flag / frozen state halts the stream within one
control period and ends the running episode with the reason, and gripper goals report timeouts and failures.
"""
from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import yaml

from hamster_apps.graph import CONFIG_DIR, describe_graph
from waiting import call_service, wait_until, within

pytestmark = [pytest.mark.graph, pytest.mark.slow]  # builds the franka_msgs stand-in

FRANKA_SIM = yaml.safe_load((CONFIG_DIR / "franka_sim.yaml").read_text())
PERIOD = 1.0 / yaml.safe_load((CONFIG_DIR / "franka.yaml").read_text())["franka_bridge"]["ros__parameters"]["rate_hz"]
CONTROLLER_TOPIC = "/target_pose"   # franka.yaml's controller crisp_cartesian: crisp_controllers' target_pose
CLOCK_STEP = 1.0 / yaml.safe_load((CONFIG_DIR / "sim.yaml").read_text())["sim_node"]["ros__parameters"]["clock_rate_hz"]
SEED = 1
GRIPPER_TIMEOUT = 3.0  # short, for the tests that wait for a timeout (1 s: a healthy homing missed it under load)
OVERRIDES = {"franka_bridge": {"gripper": {"timeout_sec": GRIPPER_TIMEOUT, "homing_on_start": True}},
             "policy_node": {"mask_wait_sec": 1.5}}


@pytest.fixture(scope="module")
def franka_env(franka_msgs_env):
    """The stand-in environment (test/conftest.py) with this session's ROS domain and rendering settings."""
    from hamster_apps.runner import ros_environment
    env = dict(franka_msgs_env)
    env.update({k: v for k, v in ros_environment().items() if k.startswith(("ROS_", "MUJOCO", "OMP"))})
    return env


class Monitor:
    """Records the adapter's outputs and the controller's target stream; calls services; runs episodes."""

    def __init__(self):
        import rclpy
        from geometry_msgs.msg import PoseStamped
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.parameter import Parameter
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from std_msgs.msg import String
        from std_srvs.srv import SetBool, Trigger

        from hamster_msgs.msg import GripperCommand
        from hamster_ros import interfaces as t
        from hamster_apps.episode_client import EpisodeClient
        from hamster_ros.node_main import RuntimeNode
        from hamster_ros.spinner import BackgroundSpinner

        self.t, self.SetBool, self.Trigger, self.GripperCommand = t, SetBool, Trigger, GripperCommand
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = RuntimeNode("franka_test_monitor", context=self.context,
                                parameter_overrides=[Parameter("use_sim_time", value=True)])
        self.lock = threading.Lock()
        # (received wall, stamp, position, quaternion) of every target the controller got
        self.controller_targets: list[tuple[float, float, tuple, tuple]] = []
        self.ee_pose = None                                           # the adapter's newest /robot/ee_pose (position)
        self.statuses: list[tuple[float, dict]] = []
        self.gripper_results: list[dict] = []
        self.executor_statuses: list[tuple[float, dict]] = []
        every = QoSProfile(depth=5000, reliability=ReliabilityPolicy.RELIABLE)
        self.node.create_subscription(PoseStamped, CONTROLLER_TOPIC, self._on_controller_target, every)
        self.node.create_subscription(String, t.ROBOT_STATUS, lambda m: self._append(self.statuses, json.loads(m.data)),
                                      t.LATCHED)
        self.node.create_subscription(String, t.GRIPPER_RESULT,
                                      lambda m: self.gripper_results.append(json.loads(m.data)),
                                      QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE))
        self.node.create_subscription(String, t.EXECUTOR_STATUS,
                                      lambda m: self._append(self.executor_statuses, json.loads(m.data)),
                                      QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE))
        self.gripper_pub = self.node.create_publisher(GripperCommand, t.GRIPPER_COMMAND, t.EVENTS)
        self.node.create_subscription(PoseStamped, t.EE_POSE, self._on_ee_pose, t.SENSOR)
        self.target_pub = self.node.create_publisher(PoseStamped, t.CARTESIAN_TARGET, t.COMMAND)
        self.PoseStamped = PoseStamped
        self.clients = {}
        self.episodes = EpisodeClient(self.node)
        # One thread over RuntimeNode: every callback only records (service calls and goals wait on futures in the
        # test's thread), and a multi-threaded executor fell behind its queues on a loaded machine, so the
        # monitor's clock lagged and the messages it injected arrived stale.
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.spinner = BackgroundSpinner(self.executor)

    def _on_controller_target(self, msg):
        with self.lock:
            p, q = msg.pose.position, msg.pose.orientation
            self.controller_targets.append((time.monotonic(), msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9,
                                     (p.x, p.y, p.z), (q.x, q.y, q.z, q.w)))

    def _on_ee_pose(self, msg):
        p, q = msg.pose.position, msg.pose.orientation
        with self.lock:
            self.ee_pose = (np.array([p.x, p.y, p.z]), np.array([q.x, q.y, q.z, q.w]))

    def publish_target(self, position, orientation, frame_id: str = "base"):
        msg = self.PoseStamped()
        msg.header.frame_id = frame_id
        msg.header.stamp = self.node.get_clock().now().to_msg()
        msg.pose.position.x, msg.pose.position.y, msg.pose.position.z = (float(v) for v in position)
        (msg.pose.orientation.x, msg.pose.orientation.y, msg.pose.orientation.z,
         msg.pose.orientation.w) = (float(v) for v in orientation)
        self.target_pub.publish(msg)

    def _append(self, records, item):
        with self.lock:
            records.append((time.monotonic(), item))

    def sim_now(self) -> float:
        return self.node.get_clock().now().nanoseconds * 1e-9

    def status(self) -> dict:
        with self.lock:
            return self.statuses[-1][1] if self.statuses else {}

    def call(self, srv_type, name: str, request, timeout: float = 30.0, resend_after: float | None = 10.0):
        if name not in self.clients:
            self.clients[name] = self.node.create_client(srv_type, name)
        return call_service(self.clients[name], request, timeout, resend_after=resend_after)

    def set_fault(self, name: str, on: bool):
        response = self.call(self.SetBool, f"/sim/{name}", self.SetBool.Request(data=on))
        assert response.success, response.message

    def recover(self) -> str:
        """/robot/recover after a reflex whose cause is gone: succeeds and leaves the adapter disabled."""
        response = self.call(self.Trigger, self.t.ROBOT_RECOVER, self.Trigger.Request(), timeout=60,
                             resend_after=None)   # a second recovery would answer for itself, not this one
        assert response.success, response.message
        wait_until(lambda: (self.status().get("last_recovery") or {}).get("success")
                   and self.status().get("gate") == "disabled", "status recovered", 10)
        return response.message

    def enable(self) -> str:
        def accepted():
            # A fresh adapter's first reply can be lost: rmw_fastrtps gives up sending a response before the
            # client's reply reader is matched ("failed to send response (timeout)"). Enabling again is harmless.
            try:
                response = self.call(self.SetBool, self.t.ROBOT_ENABLE, self.SetBool.Request(data=True), timeout=5)
            except AssertionError:
                return None
            return response.message if response.success else None
        message = wait_until(accepted, "the adapter to accept /robot/enable", 30)
        wait_until(lambda: self.status().get("gate") == "streaming", "status streaming", 10)
        return message

    def start_episode(self, seed: int, timeout: float):
        """Reset scene `seed` and start its episode: (the result future, when it was started). The policy node reads
        the adapter's latched status on its own executor, and on a loaded machine read a re-enable later than this
        monitor (a fresh clone: an episode started 0.34 s after /robot/enable ended at once, "robot halted: the robot
        reports errors: cartesian_reflex while waiting for inputs", the halt the enable had cleared). Such an
        episode is started once more."""
        for attempt in (1, 2):
            instruction = self.episodes.reset(seed)
            started = time.monotonic()
            future = self.episodes.start(instruction, timeout).get_result_async()
            if attempt == 2 or not within(future.done, 2.0):
                return future, started
            message = future.result().result.message
            if not (message.startswith("robot halted") and message.endswith("while waiting for inputs")):
                return future, started
            print(f"the episode ended at once with {message!r} after the adapter streamed again: starting it again")

    def controller_targets_since(self, since: float) -> list:
        with self.lock:
            return [e for e in self.controller_targets if e[0] >= since]

    def close(self):
        assert self.spinner.stop(), "the spin thread did not stop"
        self.node.destroy_node()
        self.context.try_shutdown()


class Franka:
    """The simulator (first) and the runtime (second), each with its own runner, and the monitor."""

    def __init__(self, folder, env):
        from hamster_apps.runner import GraphRunner
        overrides = folder / "overrides.yaml"
        overrides.write_text(yaml.safe_dump({name: {"ros__parameters": v} for name, v in OVERRIDES.items()}))
        specs = describe_graph(robot="franka", franka_sim=True, seed=SEED, params_files=(str(overrides),))
        self.sim = GraphRunner([s for s in specs if s.name == "sim_node"], folder / "logs_sim", env)
        self.runtime = GraphRunner([s for s in specs if s.name != "sim_node"], folder / "logs_runtime", env)
        self.env, self.folder = env, folder
        self.monitor = None

    def alive(self):
        for runner in (self.sim, self.runtime):
            if runner.exited():
                name, code = next(iter(runner.exited().items()))
                raise AssertionError(f"{name} exited with {code}:\n{runner.log_tail(name, 40)}")

    def preflight(self, *args: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "hamster_franka.preflight", "--use-sim-time", "--camera-hz",
                   str(yaml.safe_load((CONFIG_DIR / "sim.yaml").read_text())["sim_node"]["ros__parameters"][
                       "camera_rate_hz"]), "--duration", "1.5", "--max-age", "0.2", *args]
        return subprocess.run(command, env=self.env, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def franka(tmp_path_factory, franka_env):
    graph = Franka(tmp_path_factory.mktemp("franka"), franka_env)
    graph.sim.start()
    try:
        graph.monitor = Monitor()
        wait_until(lambda: graph.monitor.call(graph.monitor.Trigger, graph.monitor.t.SIM_CHECK_SUCCESS,
                                              graph.monitor.Trigger.Request(), 120) is not None,
                   "the simulator", 120, graph.alive)
        yield graph
        graph.alive()
    finally:
        if graph.monitor is not None:
            graph.monitor.close()
        graph.runtime.stop()
        graph.sim.stop()


def rows(output: str) -> dict[str, str]:
    """check name -> PASS/FAIL/SKIP from hamster-preflight's table."""
    verdicts = {}
    for line in output.splitlines():
        for verdict in ("PASS", "FAIL", "SKIP"):
            marker = f"  {verdict}  "
            if marker in line:
                verdicts[line.split(marker)[0].strip()] = verdict
    return verdicts


# -- pre-flight against the simulator alone -----------------------------------------------------------------
def nudge_arguments() -> tuple[str, ...]:
    """A 1 cm nudge in the simulator's cell (franka_sim.yaml's limits, not franka.yaml's table)."""
    bridge = FRANKA_SIM["franka_bridge"]["ros__parameters"]
    return ("--nudge", "0.01", "--calibration", str(CONFIG_DIR / "calibration_sim.yaml"),
            "--workspace-min", *map(str, bridge["workspace_min"]),
            "--workspace-max", *map(str, bridge["workspace_max"]),
            "--max-linear-speed", str(bridge["max_linear_speed"]))


def test_preflight_passes_on_a_healthy_simulator_and_moves_the_arm(franka):
    process = franka.preflight(*nudge_arguments())
    verdicts = rows(process.stdout)
    assert process.returncode == 0, process.stdout + process.stderr
    assert process.stdout.strip().endswith("PRE-FLIGHT PASSED")
    assert verdicts["controller: takes the target stream"] == "PASS", process.stdout
    assert verdicts["gripper: answers a move goal"] == "PASS"
    assert verdicts["calibration: cloud sees the gripper at the measured pose"] == "PASS"
    assert sum(v == "PASS" for v in verdicts.values()) >= 14, process.stdout


def test_the_simulators_franka_interface_offers_every_interface_the_runtime_expects(franka):
    """Issue 18: `hamster-preflight --interfaces` lists what the runtime needs from the robot side (topics with the
    side that must exist, gripper and recovery actions, switch_controller) and finds each on the simulator."""
    process = franka.preflight("--interfaces")
    assert process.returncode == 0, process.stdout + process.stderr
    verdicts = rows(process.stdout)
    assert set(verdicts.values()) == {"PASS"} and len(verdicts) == 11, process.stdout
    for name in ("subscriber: /target_pose", "action: /action_server/error_recovery",
                 "service: /controller_manager/switch_controller",
                 "publisher: /franka_robot_state_broadcaster/robot_state"):
        assert name in verdicts, process.stdout
    assert process.stdout.strip().endswith("INTERFACES PASSED")


def test_a_compliant_arm_misses_the_stiff_nudge_tolerance_and_passes_the_one_from_its_stiffness(franka):
    """Issue 18 (item 6): with the simulator's compliant arm (400 N/m, 3 N of friction: it stops 7.5 mm short) the
    nudge fails the stiff arm's 5 mm and passes with --stiffness 400 --unmodelled-force 3 (2 + 7.5 mm)."""
    from rcl_interfaces.srv import SetParameters
    from rclpy.parameter import Parameter
    monitor = franka.monitor

    def compliance(stiffness: float, friction: float):
        request = SetParameters.Request(parameters=[
            Parameter("franka.compliance.stiffness", value=stiffness).to_parameter_msg(),
            Parameter("franka.compliance.friction", value=friction).to_parameter_msg()])
        results = monitor.call(SetParameters, "/sim_node/set_parameters", request).results
        assert all(r.successful for r in results), [r.reason for r in results]

    nudge = (*nudge_arguments(), "--gripper", "none")
    compliance(400.0, 3.0)
    try:
        stiff = franka.preflight(*nudge)
        compliant = franka.preflight(*nudge, "--stiffness", "400", "--unmodelled-force", "3")
    finally:
        compliance(0.0, 0.0)
    row = "controller: takes the target stream"
    line = next(line for line in stiff.stdout.splitlines() if line.startswith(row))
    assert rows(stiff.stdout)[row] == "FAIL" and "<= 5.0 mm" in line, stiff.stdout
    off = float(line.split("FAIL")[1].split("mm off")[0])
    assert 6.0 <= off <= 9.5, line             # friction / stiffness = 7.5 mm short, give or take the settling
    assert rows(compliant.stdout)[row] == "PASS" and "<= 9.5 mm" in compliant.stdout, compliant.stdout
    bad = monitor.call(SetParameters, "/sim_node/set_parameters", SetParameters.Request(parameters=[
        Parameter("franka.compliance.mass", value=-1.0).to_parameter_msg()])).results[0]
    assert not bad.successful and "mass must be positive, got -1.0" in bad.reason


def test_preflight_names_a_wrong_extrinsic(franka, tmp_path):
    wrong = yaml.safe_load((CONFIG_DIR / "calibration_sim.yaml").read_text())
    wrong["translation"][0] += 0.05          # 5 cm along the base x axis
    path = tmp_path / "wrong.yaml"
    path.write_text(yaml.safe_dump(wrong))
    process = franka.preflight("--calibration", str(path), "--gripper", "none")
    assert process.returncode == 1
    verdicts = rows(process.stdout)
    assert verdicts["calibration: cloud sees the gripper at the measured pose"] == "FAIL", process.stdout
    # Nothing else is wrong with this robot; only the stream-timing rows may also fail on a loaded machine.
    failed = [name for name, verdict in verdicts.items() if verdict == "FAIL"]
    assert all(name.startswith(("calibration: cloud", "alive:", "recent:", "in sync:")) for name in failed), \
        process.stdout
    assert "calibration: cloud sees the gripper" in process.stdout.strip().splitlines()[-1]


def test_preflight_names_a_stalled_camera(franka):
    franka.monitor.set_fault("stall_camera", True)
    try:
        time.sleep(0.3)
        process = franka.preflight("--calibration", str(CONFIG_DIR / "calibration_sim.yaml"), "--gripper", "none",
                                   "--discovery-timeout", "2")
    finally:
        franka.monitor.set_fault("stall_camera", False)
    assert process.returncode == 1
    verdicts = rows(process.stdout)
    remaps = yaml.safe_load((CONFIG_DIR / "franka_remappings.yaml").read_text())
    for topic in ("/camera/color/image_raw", "/camera/depth/image_raw", "/camera/color/camera_info"):
        assert verdicts[f"alive: {remaps[topic]}"] == "FAIL", process.stdout
    state_topic = yaml.safe_load((CONFIG_DIR / "franka.yaml").read_text())["franka_bridge"]["ros__parameters"][
        "robot_state_topic"]
    assert verdicts[f"alive: {state_topic}"] == "PASS", "the robot state goes on while the camera is stalled:\n" + \
        process.stdout


# -- the adapter alone, fed targets by this test ----------------------------------------------------------------
@pytest.fixture
def bridge_alone(franka):
    """franka_bridge without the policy node, so the test is the only source of targets; stopped before the
    runtime (which starts its own) comes up."""
    from hamster_apps.runner import GraphRunner
    specs = describe_graph(robot="franka", franka_sim=True, seed=SEED,
                           params_files=(str(franka.folder / "overrides.yaml"),))
    runner = GraphRunner([s for s in specs if s.name == "franka_bridge"], franka.folder / "logs_bridge", franka.env)
    runner.start()
    try:
        wait_until(lambda: franka.monitor.status().get("mode") == "move" and franka.monitor.ee_pose is not None,
                   "the adapter's first robot state", 60, lambda: _alive(runner))
        yield runner
        _alive(runner)
    finally:
        runner.stop()
        with franka.monitor.lock:
            franka.monitor.statuses.clear()  # the runtime's adapter starts from its own latched status


def _alive(runner):
    if runner.exited():
        name, code = next(iter(runner.exited().items()))
        raise AssertionError(f"{name} exited with {code}:\n{runner.log_tail(name, 40)}")


def test_the_adapter_step_limits_from_the_measured_pose_after_a_re_enable_and_sends_the_checked_pose(franka,
                                                                                                    bridge_alone):
    """S1: the first target after an enable is step-limited from where the arm is (a 4 cm jump inside
    max_deviation is dropped), and an enable while streaming keeps the step limit; S3: the controller gets the
    normalised quaternion and the runtime's frame; S6: every halt counts in the status, a re-enable keeps it."""
    monitor = franka.monitor
    limits = FRANKA_SIM["franka_bridge"]["ros__parameters"]
    one_step = limits["max_linear_speed"] * 5 * PERIOD      # hamster_core.franka.STEP_PERIODS at the nominal rate
    jump = np.array([0.0, 0.0, 0.07])                       # inside max_deviation: only the step limit stops it
    assert one_step < 0.07 < limits["max_deviation"]

    def measured():
        with monitor.lock:
            return monitor.ee_pose

    def forwarded_after(since: float, count: int = 1, timeout: float = 5.0):
        return wait_until(lambda: (lambda e: e if len(e) >= count else None)(monitor.controller_targets_since(since)),
                          "a forwarded target", timeout, lambda: _alive(bridge_alone))

    def step_drops() -> int:
        return sum(n for key, n in monitor.status().get("dropped", {}).items() if key.startswith("the target moved"))

    def nothing_forwarded(since: float, position, orientation) -> bool:
        """Nothing forwarded, and dropped by the step limit (not by the workspace or the deviation)."""
        drops = step_drops()
        for _ in range(3):
            monitor.publish_target(position, orientation)
            time.sleep(PERIOD)
        wait_until(lambda: step_drops() > drops, "the jump dropped by the step limit", 5, lambda: _alive(bridge_alone))
        return monitor.controller_targets_since(since) == []

    def stream(position, orientation, seconds: float = 0.2):
        for _ in range(int(seconds / PERIOD)):
            monitor.publish_target(position, orientation)
            time.sleep(PERIOD)

    monitor.enable()
    halts = monitor.status()["halt_count"]
    # S3: a target at the measured pose with a quaternion of norm 2 reaches the controller as a unit quaternion
    position, orientation = measured()
    since = time.monotonic()
    monitor.publish_target(position, 2.0 * orientation, frame_id="fr3_link0")
    first = forwarded_after(since)[0]
    assert np.isclose(np.linalg.norm(first[3]), 1.0, atol=1e-9), first
    assert np.allclose(first[2], position, atol=1e-9)
    # S1: an enable while streaming must not reset the step limit (the jump follows the stream within ~0.1 s: more
    # than max_linear_speed allows in that time)
    stream(position, orientation)
    monitor.call(monitor.SetBool, monitor.t.ROBOT_ENABLE, monitor.SetBool.Request(data=True))
    since = time.monotonic()
    assert nothing_forwarded(since, position + jump, orientation), "a jump passed after an enable while streaming"
    # a reflex halts; cleared and enabled again, the jump is still dropped and a step from the arm goes through
    monitor.set_fault("reflex", True)
    try:
        wait_until(lambda: monitor.status().get("gate") == "halted", "the halt", 10, lambda: _alive(bridge_alone))
    finally:
        monitor.set_fault("reflex", False)
    status = monitor.status()
    assert status["halt_count"] == halts + 1 and "reflex" in status["last_halt_reason"], status
    monitor.recover()
    monitor.enable()
    status = monitor.status()
    assert status["halt_count"] == halts + 1 and "reflex" in status["last_halt_reason"], "kept over the re-enable"
    position, orientation = measured()
    since = time.monotonic()
    assert nothing_forwarded(since, position + jump, orientation), \
        "the first target after a re-enable jumped 4 cm: it was not step-limited from the measured pose"
    small = position + np.array([0.0, 0.0, 0.003])
    monitor.publish_target(small, orientation)
    first = forwarded_after(since)[0]
    assert np.linalg.norm(np.asarray(first[2]) - position) <= one_step, first
    assert np.allclose(first[2], small, atol=1e-9)
    assert monitor.status()["dropped"], "the dropped jumps are counted"
    # S8: a state with an unusable o_t_ee halts in its own callback (not later as a stale state)
    monitor.set_fault("bad_pose", True)
    try:
        status = wait_until(lambda: monitor.status() if monitor.status().get("gate") == "halted" else None,
                            "the halt on an invalid pose", 10, lambda: _alive(bridge_alone))
        assert "invalid o_t_ee" in status["reason"] and status["halt_state_stamp"] is not None, status
        assert status["halt_count"] == halts + 2, status
        response = monitor.call(monitor.SetBool, monitor.t.ROBOT_ENABLE, monitor.SetBool.Request(data=True))
        assert not response.success and "invalid o_t_ee" in response.message
    finally:
        monitor.set_fault("bad_pose", False)


# -- the runtime on the franka interface ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def runtime(franka):
    franka.runtime_started = time.monotonic()
    franka.runtime.start()
    monitor = franka.monitor
    wait_until(lambda: monitor.episodes._episode.server_is_ready() and monitor.status().get("mode") == "move",
               "the runtime and the adapter's first robot state", 120, franka.alive)
    return franka


def test_nothing_reaches_the_controller_before_enable_then_the_measured_pose_is_held(runtime):
    monitor = runtime.monitor
    time.sleep(0.5)  # the policy node streams its held pose at 100 Hz by now
    status = monitor.status()
    assert status["gate"] == "disabled" and "enable" in status["reason"]
    assert monitor.controller_targets_since(runtime.runtime_started) == [] and status["forwarded"] == 0
    # gripper.homing_on_start: the one thing the adapter does before an enable, once franka_gripper is up
    # (it may finish before this monitor matched the results topic: the latched status keeps the last result)
    homing = wait_until(lambda: (monitor.status().get("last_gripper") or {}).get("action") == "homing"
                        and monitor.status()["last_gripper"], "homing", 20)
    assert homing["success"], homing
    message = monitor.enable()
    assert message.startswith("enabled")
    since = time.monotonic()
    wait_until(lambda: len(monitor.controller_targets_since(since)) > 20, "the target stream", 10, runtime.alive)


@pytest.mark.parametrize("fault,words", [("reflex", "reflex mode"), ("user_stop", "user stop"),
                                         ("robot_error", "cartesian_reflex")])
def test_a_bad_robot_state_halts_the_stream_within_one_control_period(runtime, fault, words):
    monitor = runtime.monitor
    monitor.enable()
    wait_until(lambda: len(monitor.controller_targets_since(time.monotonic() - 0.2)) > 5, "streaming", 10,
               runtime.alive)
    response = monitor.call(monitor.SetBool, f"/sim/{fault}", monitor.SetBool.Request(data=True))
    switched = float(response.message.split("at sim time ")[1].split()[0])
    try:
        status = wait_until(lambda: monitor.status() if monitor.status().get("gate") == "halted" else None,
                            "the adapter to halt", 10, runtime.alive)
        halted = time.monotonic()
        time.sleep(0.3)
        assert words in status["reason"]
        stale_after = FRANKA_SIM["franka_bridge"]["ros__parameters"]["stale_after_sec"]
        # The adapter halted in the callback of a robot state that showed the fault: nothing it forwarded is
        # stamped after that callback (stamps are the adapter's clock, the simulator's /clock) ...
        late = [e[1] for e in monitor.controller_targets_since(halted - 2.0) if e[1] > status["halted_at"]]
        assert late == [], f"{len(late)} targets forwarded after the halt"
        # ... on a state published after the switch (the simulator publishes one per control period), and not as
        # a stale-state halt: within stale_after_sec of the switch, on this loaded machine usually the first one.
        assert switched - CLOCK_STEP <= status["halt_state_stamp"] <= switched + stale_after, (switched, status)
        # The adapter's clock is its own copy of /clock and lags the simulator's under load (14 ms seen): a state
        # may be stamped a little after the adapter's now, within the gate's symmetric freshness window.
        delivery = status["halted_at"] - status["halt_state_stamp"]
        assert -stale_after <= delivery <= stale_after, status
        print(f"{fault}: halted on the state {(status['halt_state_stamp'] - switched) * 1000:.0f} ms after the "
              f"switch, {delivery * 1000:.0f} ms after its stamp (sim time)")
        response = monitor.call(monitor.SetBool, monitor.t.ROBOT_ENABLE, monitor.SetBool.Request(data=True))
        assert not response.success and words in response.message, "enable must be refused while the fault lasts"
    finally:
        monitor.set_fault(fault, False)
        if fault == "reflex":   # latched until error recovery, the controllers inactive meanwhile
            monitor.recover()


def test_a_reflex_during_an_episode_ends_it_with_the_reason(runtime):
    monitor = runtime.monitor
    monitor.enable()
    result_future, start = monitor.start_episode(SEED + 1, 60.0)
    def executing():
        with monitor.lock:
            return any(received >= start and status["status"] == "executing"
                       for received, status in monitor.executor_statuses)
    wait_until(executing, "the plan executing", 60, runtime.alive)
    time.sleep(0.5)
    monitor.set_fault("reflex", True)
    try:
        wait_until(result_future.done, "the episode to end", 30, runtime.alive)
        result = result_future.result().result
        assert not result.success and "robot halted: the robot is in reflex mode" in result.message, result.message
        assert result.message.endswith("while executing"), result.message
        # Issue 18, franka_ros2's sequence: the controllers went inactive after the states that showed the reflex
        # (no more states), the reflex stays until error recovery, and error recovery fails while its cause lasts.
        halted = monitor.status()
        wait_until(lambda: (monitor.status().get("state_age") or 0) > 1.0, "the robot state to stop", 10,
                   runtime.alive)
        response = monitor.call(monitor.SetBool, monitor.t.ROBOT_ENABLE, monitor.SetBool.Request(data=True))
        assert not response.success and "reflex mode" in response.message, response.message
        refused = monitor.call(monitor.Trigger, monitor.t.ROBOT_RECOVER, monitor.Trigger.Request(), timeout=60)
        assert not refused.success and "error recovery ended aborted: the robot's error persists" in refused.message, \
            refused.message
    finally:
        monitor.set_fault("reflex", False)
    assert halted["gate"] == "halted" and halted["mode"] == "reflex", halted
    message = monitor.recover()
    assert message.startswith("recovered: error recovery succeeded; activated franka_robot_state_broadcaster, "
                              "cartesian_impedance_controller"), message
    assert monitor.status()["mode"] == "move" and monitor.status()["state_age"] < 1.0, monitor.status()
    monitor.enable()
    outcome = monitor.episodes.episode(SEED, 90)
    assert outcome["success"], outcome


def test_a_frozen_robot_state_halts_the_stream(runtime):
    monitor = runtime.monitor
    monitor.enable()
    stale_after = FRANKA_SIM["franka_bridge"]["ros__parameters"]["stale_after_sec"]
    monitor.set_fault("freeze_state", True)
    try:
        status = wait_until(lambda: monitor.status() if monitor.status().get("gate") == "halted" else None,
                            "the adapter to halt on a stale state", 10, runtime.alive)
    finally:
        monitor.set_fault("freeze_state", False)
    assert "old" in status["reason"] and f"stale_after_sec {stale_after:g}" in status["reason"]


def _gripper(monitor, command: int, width: float, **fields) -> dict:
    """Sends a gripper command and returns its result: the one carrying the command's stamp (a homing that timed
    out meanwhile, or another goal's result, is someone else's)."""
    return _gripper_result(monitor, _send_gripper_command(monitor, command, width, **fields))


def _send_gripper_command(monitor, command: int, width: float, speed: float = 0.1, **fields) -> float:
    """Publishes a gripper command stamped later than any before it (the monitor's simulated clock can stand still
    between two quick commands, and then one command's result was taken for the other's)."""
    msg = monitor.GripperCommand(command=command, width=width, speed=speed, **fields)
    previous = getattr(monitor, "last_gripper_stamp", -1.0)
    wait_until(lambda: monitor.sim_now() > previous, "the monitor's clock to pass the last command's stamp", 10)
    msg.header.stamp = monitor.node.get_clock().now().to_msg()
    stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
    monitor.last_gripper_stamp = stamp
    monitor.gripper_pub.publish(msg)
    return stamp


def _gripper_result(monitor, stamp: float) -> dict:
    return wait_until(lambda: next((r for r in list(monitor.gripper_results)
                                    if r["command_stamp"] is not None and abs(r["command_stamp"] - stamp) < 1e-6),
                                   None), "the command's gripper result", 15)


def test_gripper_timeout_and_failure_are_reported(runtime):
    monitor = runtime.monitor
    G = monitor.GripperCommand
    monitor.call(monitor.Trigger, monitor.t.ROBOT_STOP, monitor.Trigger.Request())
    refused = _gripper(monitor, G.MOVE, 0.08)
    assert not refused["success"] and refused["error"].startswith("not sent: halted"), refused
    monitor.enable()
    opened = _gripper(monitor, G.MOVE, 0.08)
    assert opened["success"], (opened, list(monitor.gripper_results)[-4:], monitor.status())   # open (hand empty)
    failed = _gripper(monitor, G.GRASP, 0.05, force=20.0, epsilon_inner=0.035, epsilon_outer=0.035)
    assert failed["action"] == "grasp" and not failed["success"] and "grasp failed" in failed["error"], failed
    monitor.set_fault("stall_gripper", True)
    try:
        timed_out = _gripper(monitor, G.MOVE, 0.08)
    finally:
        monitor.set_fault("stall_gripper", False)
    assert not timed_out["success"] and f"no result within {GRIPPER_TIMEOUT:g} s" in timed_out["error"]
    # The timeout is on the adapter's ROS clock (the simulator's, slower than the wall under load): checked at rate_hz
    assert GRIPPER_TIMEOUT < timed_out["seconds"] <= GRIPPER_TIMEOUT + 5 * PERIOD, timed_out
    rejected = _gripper(monitor, G.MOVE, 0.5)
    assert not rejected["success"] and "width" in rejected["error"]
    assert np.isfinite(failed["seconds"])


def test_a_grasp_without_a_result_ends_the_episode_with_the_reason(runtime):
    """The gripper's answer reaches the episode: a grasp goal that never finishes times out in the adapter and the
    policy node ends the episode with that result (the Cartesian stream goes on meanwhile)."""
    monitor = runtime.monitor
    monitor.enable()
    instruction = monitor.episodes.reset(SEED)
    monitor.set_fault("stall_gripper", True)
    try:
        result_future = monitor.episodes.start(instruction, 60.0).get_result_async()
        wait_until(result_future.done, "the episode to end", 60, runtime.alive)
        since = time.monotonic()
        time.sleep(0.3)
        assert len(monitor.controller_targets_since(since)) > 10, "the stream to the controller went on"
    finally:
        monitor.set_fault("stall_gripper", False)
    result = result_future.result().result
    assert not result.success
    assert f"gripper grasp failed: no result within {GRIPPER_TIMEOUT:g} s" in result.message, result.message


def test_a_gripper_goal_that_preempts_another_is_not_stopped_by_its_cancel(runtime):
    """Issue 18: franka_gripper answers a cancel at once and stops the fingers (`gripper_->stop()`) when its goal
    loop next sees it, up to a feedback period later; the simulator's gripper does the same. The adapter sent the
    new goal right after the cancel, so that stop could halt the new goal's motion. It now sends it once the
    preempted goal has ended."""
    from sensor_msgs.msg import JointState

    monitor = runtime.monitor
    G = monitor.GripperCommand
    widths = []   # the fingers' opening from the joint states, as franka_gripper publishes them

    def on_joints(msg):
        if "fr3_finger_joint1" in msg.name:
            widths.append(2.0 * msg.position[list(msg.name).index("fr3_finger_joint1")])
    joints_topic = yaml.safe_load((CONFIG_DIR / "franka_remappings.yaml").read_text())["/robot/joint_states"]
    monitor.node.create_subscription(JointState, joints_topic, on_joints, monitor.t.SENSOR)
    monitor.enable()
    assert _gripper(monitor, G.MOVE, 0.08)["success"]
    close = _send_gripper_command(monitor, G.MOVE, 0.0, speed=0.02)      # closing slowly, ~4 s
    wait_until(lambda: widths and widths[-1] < 0.075, "the fingers to start closing", 15, runtime.alive)
    reopen = _send_gripper_command(monitor, G.MOVE, 0.08)               # open again: preempts the close
    preempted, reopened = _gripper_result(monitor, close), _gripper_result(monitor, reopen)
    assert not preempted["success"] and preempted["error"] == "preempted by a move goal", preempted
    assert reopened["action"] == "move" and reopened["success"], reopened
    assert widths[-1] > 0.075, widths[-5:]
