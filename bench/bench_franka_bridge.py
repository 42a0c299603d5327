"""franka_bridge's CPU at a real arm's rates: FrankaRobotState at 1 kHz (as franka_robot_state_broadcaster
publishes it) and Cartesian targets at 100 Hz, forwarded to a controller that listens on /target_pose. Percent
of one core spent by the bridge process (utime + stime from /proc), with a callback per state
(state_per_message, how it was) and with the states taken at the 100 Hz check (the default), in one run.
Prints one JSON object.

    .venv/bin/python bench/bench_franka_bridge.py [--seconds 10]

The robot side is a small process of the franka_msgs TEST STAND-IN (built into build/franka_msgs_standin, or
$HAMSTER_FRANKA_STANDIN_PREFIX): one pre-built ~2.8 KB state restamped and published on the wall clock.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from hamster_apps.graph import CONFIG_DIR, NodeSpec
from hamster_apps.runner import GraphRunner, ros_environment
from hamster_franka.franka_standin import STANDIN_SOURCE, build_standin, standin_environment


ROBOT_SIDE = textwrap.dedent("""
    import json, sys, time
    import rclpy
    from geometry_msgs.msg import PoseStamped
    from std_srvs.srv import SetBool
    from franka_msgs.msg import FrankaRobotState
    state_hz, seconds = float(sys.argv[1]), float(sys.argv[2])
    rclpy.init()
    node = rclpy.create_node("bench_robot_side")
    sensor = rclpy.qos.qos_profile_sensor_data
    reliable = rclpy.qos.QoSProfile(depth=1, reliability=rclpy.qos.ReliabilityPolicy.RELIABLE)
    states = node.create_publisher(FrankaRobotState, "/franka_robot_state_broadcaster/robot_state", sensor)
    targets = node.create_publisher(PoseStamped, "/robot/cartesian_target", reliable)
    forwarded = []
    node.create_subscription(PoseStamped, "/target_pose", forwarded.append, reliable)   # the controller
    enable = node.create_client(SetBool, "/robot/enable")
    state = FrankaRobotState()
    state.robot_mode = 2   # MOVE
    state.o_t_ee.header.frame_id = "fr3_link0"
    state.o_t_ee.pose.position.x, state.o_t_ee.pose.position.z = 0.5, 0.3
    state.o_t_ee.pose.orientation.x, state.o_t_ee.pose.orientation.w = 1.0, 0.0
    target = PoseStamped()
    target.header.frame_id = "fr3_link0"
    target.pose = state.o_t_ee.pose
    period, published, start, enabled = 1.0 / state_hz, 0, time.monotonic(), None
    next_tick = start
    while time.monotonic() - start < seconds:
        now = node.get_clock().now().to_msg()
        state.header.stamp = state.o_t_ee.header.stamp = now
        states.publish(state)
        published += 1
        if published % round(state_hz / 100) == 0:
            target.header.stamp = now
            targets.publish(target)
            rclpy.spin_once(node, timeout_sec=0)
        if enabled is None and time.monotonic() - start > 1.0 and enable.service_is_ready():
            enabled = enable.call_async(SetBool.Request(data=True))
        next_tick += period
        delay = next_tick - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    print(json.dumps({"state_rate_hz": round(published / (time.monotonic() - start), 1),
                      "enabled": bool(enabled and enabled.done() and enabled.result().success),
                      "forwarded": len(forwarded)}), flush=True)
""")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")   # utime + stime


def measure(env: dict, state_per_message: bool, seconds: float, folder: Path) -> dict:
    spec = NodeSpec("franka_bridge", "franka_bridge", "hamster_franka.franka_bridge",
                    (str(CONFIG_DIR / "franka.yaml"),), {"use_sim_time": False, "state_per_message": state_per_message})
    script = folder / "robot_side.py"
    script.write_text(ROBOT_SIDE)
    with GraphRunner([spec], folder / f"logs_{state_per_message}", env) as runner:
        warm_up = 3.0
        robot = subprocess.Popen([sys.executable, str(script), "1000", str(warm_up + seconds + 1.0)], env=env,
                                 stdout=subprocess.PIPE, text=True)
        time.sleep(warm_up)   # discovery, the enable, caches: not what is measured
        pid = runner.processes["franka_bridge"].pid
        cpu0, wall0 = cpu_seconds(pid), time.monotonic()
        time.sleep(seconds)
        cpu1, wall1 = cpu_seconds(pid), time.monotonic()
        robot_side = json.loads(robot.communicate(timeout=60)[0].strip().splitlines()[-1])
    return {"cpu_percent": round(100 * (cpu1 - cpu0) / (wall1 - wall0), 1), **robot_side}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    prefix = os.environ.get("HAMSTER_FRANKA_STANDIN_PREFIX") or STANDIN_SOURCE.parent.parent / "build" / \
        "franka_msgs_standin"
    build_standin(prefix)
    env = standin_environment(prefix, ros_environment(int(os.environ.get("ROS_DOMAIN_ID", 40 + os.getpid() % 40))))
    with tempfile.TemporaryDirectory() as folder:
        every = measure(env, True, args.seconds, Path(folder))
        decimated = measure(env, False, args.seconds, Path(folder))
    print(json.dumps({
        "franka_bridge_cpu_percent_1khz": decimated["cpu_percent"],
        "franka_bridge_cpu_percent_1khz_state_per_message": every["cpu_percent"],
        "state_rate_hz": [every["state_rate_hz"], decimated["state_rate_hz"]],
        "enabled_and_forwarding": [every["enabled"] and every["forwarded"] > 0,
                                   decimated["enabled"] and decimated["forwarded"] > 0],
        "targets_forwarded": [every["forwarded"], decimated["forwarded"]],
    }))


if __name__ == "__main__":
    main()
