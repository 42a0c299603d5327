"""The harness of the multi-process graph tests (test_faults.py, test_faults_vlm.py): a monitor node in its own
context that records the runtime's outputs and injects inputs, the node processes with a liveness check, and a
thread that plays a camera."""
from __future__ import annotations

import json
import threading
import time

import numpy as np

from waiting import call_service, wait_until, within


class Monitor:
    """A test node in its own context: records outputs, injects inputs, calls services and runs episodes."""

    def __init__(self, use_sim_time: bool):
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from geometry_msgs.msg import PoseStamped
        from rclpy.action import ActionClient
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.parameter import Parameter
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from rosgraph_msgs.msg import Clock
        from sensor_msgs.msg import CameraInfo, Image, PointCloud2
        from std_msgs.msg import String
        from std_srvs.srv import SetBool, Trigger

        from hamster_msgs.action import RunEpisode
        from hamster_msgs.msg import GroundingMasks, Path2D
        from hamster_msgs.srv import ResetScene
        from hamster_ros import interfaces as t
        from hamster_ros.node_main import RuntimeNode
        from hamster_ros.spinner import BackgroundSpinner

        self.t, self.RunEpisode, self.SetBool, self.Trigger = t, RunEpisode, SetBool, Trigger
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = RuntimeNode("fault_monitor", context=self.context,
                                parameter_overrides=[Parameter("use_sim_time", value=use_sim_time)])
        self.lock = threading.Lock()
        self.targets: list[tuple] = []    # (received, position, quaternion, header stamp in s)
        self.statuses: list[tuple[float, dict]] = []
        self.diagnostics: list[tuple] = []   # (received, name, level, message, {key: value})
        self.paths: list[tuple[float, str]] = []                         # (received, instruction)
        self.vlm_statuses: list[dict] = []
        self.masks_received: list[float] = []
        self.latest: dict[str, object] = {}
        self.ee_poses: list[tuple] = []   # (received, position, quaternion) of every measured pose
        every = QoSProfile(depth=5000, reliability=ReliabilityPolicy.RELIABLE)  # keep every command
        node = self.node
        node.create_subscription(PoseStamped, t.CARTESIAN_TARGET, self._on_target, every)
        node.create_subscription(String, t.EXECUTOR_STATUS, lambda m: self._append(self.statuses, json.loads(m.data)),
                                 QoSProfile(depth=500, reliability=ReliabilityPolicy.RELIABLE))
        node.create_subscription(DiagnosticArray, t.DIAGNOSTICS, self._on_diagnostics,
                                 QoSProfile(depth=500, reliability=ReliabilityPolicy.RELIABLE))
        node.create_subscription(Path2D, t.PATH, lambda m: self._append(self.paths, m.instruction), t.LATCHED)
        node.create_subscription(String, t.VLM_STATUS, lambda m: self.vlm_statuses.append(json.loads(m.data)),
                                 t.LATCHED)
        node.create_subscription(GroundingMasks, t.MASKS, lambda m: self.masks_received.append(time.monotonic()),
                                 t.SENSOR)
        for key, msg_type, topic in (("image", Image, t.COLOR_IMAGE), ("info", CameraInfo, t.COLOR_INFO),
                                     ("segmentation", Image, t.SEGMENTATION), ("ee", PoseStamped, t.EE_POSE)):
            node.create_subscription(msg_type, topic, lambda m, key=key: self.latest.__setitem__(key, m), t.SENSOR)
        node.create_subscription(PoseStamped, t.EE_POSE, self._on_ee_pose,
                                 QoSProfile(depth=5000, reliability=ReliabilityPolicy.BEST_EFFORT))
        self.clock_pub = node.create_publisher(Clock, "/clock", t.SENSOR)
        self.image_pub = node.create_publisher(Image, t.COLOR_IMAGE, t.SENSOR)
        self.segmentation_pub = node.create_publisher(Image, t.SEGMENTATION, t.SENSOR)
        self.cloud_pub = node.create_publisher(PointCloud2, t.POINTS, t.SENSOR)
        self.masks_pub = node.create_publisher(GroundingMasks, t.MASKS, t.SENSOR)
        self.Path2D = Path2D
        self.stall_camera = node.create_client(SetBool, t.SIM_STALL_CAMERA)
        self.freeze_state = node.create_client(SetBool, t.SIM_FREEZE_STATE)
        self.stop_client = node.create_client(Trigger, t.STOP)
        self.reset_client = node.create_client(ResetScene, t.SIM_RESET)
        self.ResetScene = ResetScene
        self.episode_client = ActionClient(node, RunEpisode, t.RUN_EPISODE)
        # One thread over RuntimeNode: every callback only records (service calls and goals wait on futures in the
        # test's thread), and a multi-threaded executor fell behind its queues on a loaded machine, so the
        # monitor's clock lagged and the messages it injected arrived stale.
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(node)
        self.spinner = BackgroundSpinner(self.executor)

    # -- recording ----------------------------------------------------------------------------------------
    def _append(self, records, item):
        with self.lock:
            records.append((time.monotonic(), item))

    def _on_target(self, msg):
        p, q = msg.pose.position, msg.pose.orientation
        stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
        with self.lock:
            self.targets.append((time.monotonic(), np.array([p.x, p.y, p.z]), np.array([q.x, q.y, q.z, q.w]),
                                 stamp))

    def _on_ee_pose(self, msg):
        p, q = msg.pose.position, msg.pose.orientation
        quaternion = np.array([q.x, q.y, q.z, q.w])
        with self.lock:
            self.ee_poses.append((time.monotonic(), np.array([p.x, p.y, p.z]), quaternion / np.linalg.norm(quaternion)))

    def _on_diagnostics(self, msg):
        with self.lock:
            for status in msg.status:
                level = int.from_bytes(status.level, "little") if isinstance(status.level, bytes) else int(status.level)
                self.diagnostics.append((time.monotonic(), status.name, level, status.message,
                                         {kv.key: kv.value for kv in status.values}))

    def targets_since(self, since: float) -> list:
        with self.lock:
            return [target for target in self.targets if target[0] >= since]

    def status_since(self, since: float, status: str | None = None, predicate=None):
        """The first executor status received after `since` with that status (and predicate), or None."""
        with self.lock:
            records = list(self.statuses)
        for received, record in records:
            if received >= since and (status is None or record["status"] == status) \
                    and (predicate is None or predicate(record)):
                return received, record
        return None

    def diagnostics_since(self, since: float, name: str) -> list:
        with self.lock:
            return [d for d in self.diagnostics if d[0] >= since and d[1] == name]

    # -- acting -------------------------------------------------------------------------------------------
    def now_stamp(self):
        """The monitor's time, or the newest target's stamp when that is later: in fresh-clone CI runs the
        monitor's own clock lagged the policy node's, and what it injected was older than the episode."""
        from hamster_ros.conversions import seconds_to_stamp
        now = self.node.get_clock().now().nanoseconds * 1e-9
        with self.lock:
            newest_target = self.targets[-1][3] if self.targets else now
        return seconds_to_stamp(max(now, newest_target))

    def call(self, client, request, timeout: float = 30.0):
        return call_service(client, request, timeout)

    def set_fault(self, client, on: bool):
        response = self.call(client, self.SetBool.Request(data=on))
        assert response.success, response.message

    def reset(self, seed: int) -> str:
        response = self.call(self.reset_client, self.ResetScene.Request(seed=seed))
        assert response.success, response.message
        return response.instruction

    def start_episode(self, instruction: str, timeout: float, alive=None):
        """The episode's result future. A goal the policy node never answers is stopped and sent again
        (hamster_apps.episode_client.send_episode_goal: a just-started server's answer can be lost)."""
        from hamster_apps.episode_client import send_episode_goal

        def stop_unanswered():
            print(f"the policy node did not answer the episode goal {instruction!r}: stopping, sending it again")
            self.stop()
        wait_until(self.episode_client.server_is_ready, "the policy node's episode server", 60, alive)
        goal = send_episode_goal(self.episode_client, self.RunEpisode.Goal(instruction=instruction,
                                                                           timeout_sec=float(timeout)),
                                 stop_unanswered, alive or (lambda: None))
        assert goal.accepted
        return goal.get_result_async()

    def result(self, future, timeout: float, alive=None):
        wait_until(future.done, "the episode result", timeout, alive)
        return future.result().result

    def stop(self):
        response = self.call(self.stop_client, self.Trigger.Request())
        assert response.success

    def close(self):
        assert self.spinner.stop(), "the spin thread did not stop"
        self.node.destroy_node()
        self.context.try_shutdown()


def moving_after(monitor: Monitor, since: float) -> bool:
    targets = monitor.targets_since(since)
    return len(targets) > 10 and not np.array_equal(targets[0][1], targets[-1][1])


def hearing_monitor(make_monitor, ready, hears, what: str, alive, attempts: int = 3, hear_timeout: float = 30.0):
    """A Monitor that receives the graph's data, and the deaf ones to close at the end. Fast DDS sometimes starts a
    participant that discovers the graph and sends but receives nothing (README "A deaf participant in a fresh
    graph"): once `ready(monitor)` (services visible), `hears(monitor)` must turn true within `hear_timeout`, else
    the monitor is kept open (so the next one takes another shared-memory port) and another made."""
    monitors = []
    try:
        for attempt in range(1, attempts + 1):
            monitor = make_monitor()
            monitors.append(monitor)
            wait_until(lambda: ready(monitor), f"{what}: the services", 120, alive)
            if attempt == attempts:
                wait_until(lambda: hears(monitor), what, hear_timeout, alive)
            elif not within(lambda: hears(monitor), hear_timeout, alive):
                print(f"the test's monitor received nothing in {hear_timeout:.0f} s (attempt {attempt}): another one")
                continue
            return monitor, monitors[:-1]
    except BaseException:
        for monitor in monitors:
            monitor.close()
        raise


class Graph:
    def __init__(self, runner, monitor: Monitor):
        self.runner, self.monitor = runner, monitor
        self.killed: set[str] = set()

    def alive(self, *allowed_dead: str):
        """Raises when a node other than `allowed_dead` has exited: faults must never crash a node."""
        dead = {name: code for name, code in self.runner.exited().items() if name not in allowed_dead}
        if dead:
            raise AssertionError(f"nodes exited: {dead}\n" + self.log_tails(dead, 40))

    def log_tails(self, names, lines: int) -> str:
        return "\n".join(f"--- {name}:\n{self.runner.log_tail(name, lines)}" for name in names)

    def kill(self, name: str) -> int:
        self.killed.add(name)
        return self.runner.kill(name)

    def restart(self, name: str, receiving, what: str, attempts: int = 3, timeout: float = 45.0):
        """Start a killed node again and wait until `receiving()` shows that it gets messages; returns its value.

        Fast DDS 3.2.3's shared-memory transport sometimes never delivers to a node restarted after a SIGKILL: it is
        discovered and publishes, but receives nothing, for good (CI stop 24: the restarted policy node sent no
        target for 60 s; 6 of ~70 restarts of a plain rclpy subscriber here; README "Restarting one node"). Such a
        deaf restart is said on stdout, killed and started again, up to `attempts` times."""
        for attempt in range(1, attempts + 1):
            self.runner.restart(name)
            try:
                return wait_until(receiving, what, timeout, self.alive)
            except AssertionError:
                if attempt == attempts:
                    raise
                print(f"{name} restarted but no {what} in {timeout:.0f} s (attempt {attempt}): starting it again")
                self.runner.kill(name)

    def revive(self):
        """Restart the nodes a (failed) test killed and left dead, so one failure does not cascade."""
        for name in sorted(self.killed):
            if name in self.runner.exited():
                self.runner.restart(name)
        self.killed.clear()

    def log(self, name: str) -> str:
        return (self.runner.log_dir / f"{name}.log").read_text(errors="replace")

    def executing(self, since: float):
        """Waits until the executor runs a plan and the targets move."""
        try:
            wait_until(lambda: self.monitor.status_since(since, "executing"), "status executing", 60, self.alive)
            wait_until(lambda: moving_after(self.monitor, time.monotonic() - 0.3), "moving targets", 30, self.alive)
        except AssertionError as error:
            tails = self.log_tails(self.runner.processes, 15)
            raise AssertionError(f"{error}\n{tails}") from None


class Injector:
    """Publishes restamped copies of the last real camera image (so the VLM can plan while the camera is
    stalled) and/or a sequence of injected messages, at 10 Hz on a thread."""

    def __init__(self, monitor: Monitor, make_messages, image: bool = True):
        self.monitor, self.make_messages, self.image = monitor, make_messages, image
        self.running = True
        self.published = 0
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        m = self.monitor
        image = m.latest["image"]
        while self.running:
            stamp = m.now_stamp()
            if self.image:
                image.header.stamp = stamp
                m.image_pub.publish(image)
            for publisher, msg in self.make_messages(self.published, stamp):
                publisher.publish(msg)
            self.published += 1
            time.sleep(0.1)

    def close(self):
        self.running = False
        self.thread.join(timeout=5)
