"""Start the runtime's node graph as separate processes, the way `ros2 launch` would, where it is not installed.

    hamster-run [--policy NAME] [--vlm-backend NAME] [--perception-backend NAME] [--robot sim|franka] [--seed N]

Every node gets the same environment: DDS discovery confined to this machine, a ROS_DOMAIN_ID, headless
MuJoCo rendering, one OpenMP thread.
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import yaml

from hamster_apps.graph import NodeSpec, describe_graph
from hamster_ros.dds import confine_dds_to_this_machine


EPILOG = """starting an episode:
  Once the nodes run (the first line printed names them, their ROS_DOMAIN_ID and the log folder), start an
  episode from another shell with the same ROS_DOMAIN_ID. An episode is policy_node's RunEpisode action
  (hamster_msgs/action/RunEpisode: instruction, timeout_sec -> success, message, duration_sec) on
  /hamster/run_episode.

  From this venv (no ROS installation needed), with hamster-demo's episode client:
    ROS_DOMAIN_ID=<id> .venv/bin/python -m hamster_apps.episode_client --seed 3
      reset the simulator to scene 3, run its instruction, check success, print one JSON line
    ROS_DOMAIN_ID=<id> .venv/bin/python -m hamster_apps.episode_client --instruction "pick up the ..."
      these words on the scene as it is, no success check; add --enable for --robot franka

  With a ROS 2 installation that has hamster_msgs on its paths:
    ros2 action send_goal /hamster/run_episode hamster_msgs/action/RunEpisode \\
        "{instruction: 'pick up the red cube and put it in the blue bowl'}"
    ros2 service call /hamster/stop std_srvs/srv/Trigger        # hold the arm

  hamster-demo does it all in one command: the graph, one seeded episode, a recorded bag.

exit codes:
  0 stopped by Ctrl-C or SIGTERM (every node stopped with it); 1 a node exited by itself (its log tail on
  stderr; the other nodes are stopped); 2 bad options.
"""


def ros_environment(domain_id: int | None = None) -> dict[str, str]:
    env = dict(os.environ)
    confine_dds_to_this_machine(env)  # never let discovery or DDS sockets leave this machine
    if domain_id is not None:
        env["ROS_DOMAIN_ID"] = str(domain_id)
    env.setdefault("ROS_DOMAIN_ID", str(1 + os.getpid() % 200))
    env.setdefault("MUJOCO_GL", "egl")
    env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def caller_ros_environment() -> dict[str, str]:
    """A real robot's graph runs in the caller's ROS environment as it is: franka_ros2's domain, discovery range
    and DDS profile (it may run on another computer). Without ROS_DOMAIN_ID that is ROS's default domain 0."""
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def topic_visible(env: dict[str, str], topic: str, timeout_sec: float) -> bool:
    """Whether anything publishes or subscribes `topic` in env's ROS domain, within timeout_sec of discovery."""
    import rclpy
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=int(env.get("ROS_DOMAIN_ID") or 0))
    try:
        node = rclpy.create_node("hamster_run_probe", context=context)
        deadline = time.monotonic() + timeout_sec
        while time.monotonic() < deadline:
            if any(name == topic for name, _ in node.get_topic_names_and_types()):
                return True
            time.sleep(0.1)
        return False
    finally:
        context.try_shutdown()


def real_robot_refusal(env: dict[str, str], state_topic: str, robot_visible: Callable[[], bool]) -> str | None:
    """Why the graph must not start for a real robot, or None. A graph on another domain than franka_ros2's
    would wait for a robot state forever while `hamster-preflight` (run in the caller's environment) passes."""
    if env.get("ROS_DOMAIN_ID") or robot_visible():
        return None
    return (f"ROS_DOMAIN_ID is not set and franka_ros2 is not visible on ROS's default domain 0 (nothing on "
            f"{state_topic}): export the ROS_DOMAIN_ID of the robot PC's franka_ros2 (and, if it runs on another "
            f"computer, ROS_AUTOMATIC_DISCOVERY_RANGE or ROS_STATIC_PEERS; README \"Running across machines\")")


class GraphRunner:
    """Owns the node processes it starts and ends exactly those (by pid)."""

    def __init__(self, specs: list[NodeSpec], log_dir: Path | str, env: dict[str, str] | None = None):
        self.specs = specs
        self.log_dir = Path(log_dir)
        self.env = env or ros_environment()
        self.processes: dict[str, subprocess.Popen] = {}

    def __enter__(self) -> "GraphRunner":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for spec in self.specs:
            self._launch(spec, "w")

    def _launch(self, spec: NodeSpec, mode: str) -> None:
        log = open(self.log_dir / f"{spec.name}.log", mode)
        # The venv's python with the parent's environment: the ROS wheels' bootstrap needs both.
        command = [sys.executable, "-m", spec.module, *spec.ros_arguments()]
        self.processes[spec.name] = subprocess.Popen(command, env=self.env, stdout=log,
                                                     stderr=subprocess.STDOUT, start_new_session=True)
        log.close()

    # -- fault injection (tests and bring-up): one node at a time, by its pid only -----------------------
    def kill(self, name: str, sig: int = signal.SIGKILL, timeout: float = 10.0) -> int:
        """Send `sig` (default SIGKILL: a crash, no clean shutdown) to one node's process and wait for it to
        end; returns its exit code. The rest of the graph keeps running."""
        process = self.processes[name]
        if process.poll() is None:
            process.send_signal(sig)
        return process.wait(timeout=timeout)

    def restart(self, name: str) -> None:
        """Start one node again with the same spec (after kill(), or after it exited by itself); its log
        file is appended to, after a marker line."""
        process = self.processes[name]
        if process.poll() is None:
            raise RuntimeError(f"{name} (pid {process.pid}) is still running: kill() it first")
        spec = next(spec for spec in self.specs if spec.name == name)
        with open(self.log_dir / f"{name}.log", "a") as log:
            log.write(f"--- restarted after exit code {process.returncode} ---\n")
        self._launch(spec, "a")

    def exited(self) -> dict[str, int]:
        return {name: p.returncode for name, p in self.processes.items() if p.poll() is not None}

    def log_tail(self, name: str, lines: int = 20) -> str:
        path = self.log_dir / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def stop(self, timeout: float = 10.0) -> None:
        """SIGINT (clean rclpy shutdown), then SIGTERM, then SIGKILL for whatever is still running."""
        for sig, wait in ((signal.SIGINT, timeout), (signal.SIGTERM, 3.0), (signal.SIGKILL, 3.0)):
            alive = [p for p in self.processes.values() if p.poll() is None]
            if not alive:
                break
            for process in alive:
                process.send_signal(sig)
            deadline = time.monotonic() + wait
            for process in alive:
                try:
                    process.wait(timeout=max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    pass


def stop_on_signals() -> None:
    """Turn SIGINT and SIGTERM into KeyboardInterrupt, so `with GraphRunner(...)` and `finally` blocks stop the
    children (they run in their own sessions and would otherwise outlive their parent). SIGINT is set
    explicitly: a process started in the background by a non-interactive shell inherits it ignored."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)


def add_graph_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--policy", default="path_follower")
    parser.add_argument("--vlm-backend", default="oracle")
    parser.add_argument("--perception-backend", default="sim_ground_truth")
    parser.add_argument("--robot", default="sim", choices=["sim", "franka"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--franka-sim", action="store_true",
                        help="with --robot franka: the simulator's franka-shaped interface instead of a robot")
    parser.add_argument("--calibration", default=None, metavar="YAML",
                        help="with --robot franka: camera-to-base calibration (default config/calibration.yaml)")
    parser.add_argument("--config-dir", type=Path, default=None, help="folder with runtime.yaml and <robot>.yaml")
    parser.add_argument("--params-file", action="append", default=[], metavar="YAML",
                        help="your own ROS parameter file, loaded last (repeatable)")
    parser.add_argument("--random-weights", action="store_true",
                        help="simulator only: let a learned policy without a checkpoint run on random weights "
                             "(meaningless actions); without it such a policy refuses to start")


def robot_state_topic(specs: list[NodeSpec]) -> str:
    """franka_bridge's robot_state_topic as its parameter files set it (the last file that names it wins)."""
    from hamster_ros.interfaces import FRANKA_ROBOT_STATE
    topic = FRANKA_ROBOT_STATE
    bridge = next(spec for spec in specs if spec.name == "franka_bridge")
    for path in bridge.parameter_files:
        section = (yaml.safe_load(Path(path).read_text()) or {}).get("franka_bridge", {}).get("ros__parameters", {})
        topic = section.get("robot_state_topic", topic)
    return topic


def random_weights_warning(args) -> str | None:
    """What --random-weights means, for the terminal (policy_node also logs it when it applies)."""
    if not args.random_weights:
        return None
    return (f"WARNING: --random-weights: {args.policy} runs randomly initialised weights when no checkpoint is "
            f"set; its actions are meaningless (simulator only)")


def graph_from_arguments(args) -> list[NodeSpec]:
    return describe_graph(args.policy, args.vlm_backend, args.perception_backend, args.robot,
                          config_dir=args.config_dir, seed=args.seed, params_files=tuple(args.params_file),
                          franka_sim=args.franka_sim, calibration=args.calibration,
                          random_weights=args.random_weights)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_graph_arguments(parser)
    parser.add_argument("--log-dir", type=Path, default=Path("runs/logs"))
    args = parser.parse_args(argv)
    try:
        specs = graph_from_arguments(args)
    except ValueError as error:
        parser.error(str(error))
    if random_weights_warning(args):
        print(random_weights_warning(args), file=sys.stderr, flush=True)
    env = ros_environment()
    if args.robot == "franka":
        from hamster_franka.franka_standin import STANDIN_ON_REAL_ROBOT_MESSAGE, franka_environment
        from hamster_ros.interfaces import MISSING_MESSAGE, franka_msgs_available
        if args.franka_sim:  # the simulator behind the franka interface: the test stand-in where franka_msgs is missing
            env = franka_environment(env, "hamster-run")
        elif os.environ.get("HAMSTER_FRANKA_MSGS_STANDIN"):
            parser.error(STANDIN_ON_REAL_ROBOT_MESSAGE.format(prefix=os.environ["HAMSTER_FRANKA_MSGS_STANDIN"]))
        elif not franka_msgs_available():
            parser.error(MISSING_MESSAGE)
        else:
            env = caller_ros_environment()
            state_topic = robot_state_topic(specs)
            refusal = real_robot_refusal(env, state_topic, lambda: topic_visible(env, state_topic, 3.0))
            if refusal:
                parser.error(refusal)
    stop_on_signals()
    runner = GraphRunner(specs, args.log_dir, env)
    code = 0
    with runner:
        domain_id = runner.env["ROS_DOMAIN_ID"]
        print(f"started {', '.join(f'{name} (pid {p.pid})' for name, p in runner.processes.items())}; "
              f"ROS_DOMAIN_ID={domain_id}, logs in {args.log_dir}; Ctrl-C stops them", flush=True)
        print(f"start an episode from another shell: ROS_DOMAIN_ID={domain_id} {sys.executable} -m "
              f"hamster_apps.episode_client --seed {args.seed}{' --enable' if args.robot == 'franka' else ''} "
              "(hamster-run --help: more ways)", flush=True)
        try:
            while not runner.exited():
                time.sleep(0.5)
            for name, exit_code in runner.exited().items():
                print(f"{name} exited with {exit_code}:\n{runner.log_tail(name)}", file=sys.stderr)
            code = 1
        except KeyboardInterrupt:
            pass
    return code


if __name__ == "__main__":
    sys.exit(main())
