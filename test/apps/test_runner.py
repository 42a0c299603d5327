"""The runner owns its node processes: however it ends, they end with it."""
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from hamster_apps.graph import CONFIG_DIR

CALIBRATION = CONFIG_DIR / "calibration_sim.yaml"


def wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.2)
    return False


@pytest.mark.graph
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_terminating_the_runner_stops_every_node(tmp_path, sig):
    """Regression: a runner killed by `timeout` (SIGTERM), or interrupted after being started in the background
    (SIGINT inherited as ignored), used to leave its nodes running, orphaned."""
    env = dict(os.environ, ROS_DOMAIN_ID=str(200 + os.getpid() % 30))
    runner = subprocess.Popen([sys.executable, "-m", "hamster_apps.runner", "--log-dir", str(tmp_path)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    pids = []
    try:
        first_line = runner.stdout.readline()
        pids += [int(p) for p in re.findall(r"pid (\d+)", first_line)]
        assert len(pids) == 4, first_line
        time.sleep(3)  # let the nodes get into rclpy
        runner.send_signal(sig)
        assert runner.wait(timeout=30) == 0
        for pid in pids:
            assert wait_gone(pid, 5), f"node pid {pid} outlived the runner"
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait()
        for pid in pids:  # never leave nodes behind, even when the test fails
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_runner_rejects_unknown_policy_with_its_name():
    run = subprocess.run([sys.executable, "-m", "hamster_apps.runner", "--policy", "nope"], capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 2 and "unknown policy 'nope'" in run.stderr


def test_runner_refuses_a_real_robot_with_the_franka_msgs_stand_in_on_its_paths(tmp_path):
    """A shell left with the stand-in's exports (hamster-franka-standin) must not start the real-robot graph."""
    env = dict(os.environ, HAMSTER_FRANKA_MSGS_STANDIN=str(tmp_path / "standin"))
    run = subprocess.run([sys.executable, "-m", "hamster_apps.runner", "--robot", "franka", "--vlm-backend", "openai",
                          "--perception-backend", "pipeline", "--calibration", str(CALIBRATION)], capture_output=True,
                         text=True, timeout=60, env=env)
    assert run.returncode == 2 and "TEST STAND-IN" in run.stderr and str(tmp_path / "standin") in run.stderr


def test_runner_help_says_how_to_start_an_episode_and_its_exit_codes():
    run = subprocess.run([sys.executable, "-m", "hamster_apps.runner", "--help"], capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 0
    for text in ("/hamster/run_episode", "hamster_msgs/action/RunEpisode", "ros2 action send_goal",
                 "python -m hamster_apps.episode_client", "exit codes"):
        assert text in run.stdout, text


@pytest.mark.graph
def test_runner_exits_1_with_the_log_tail_when_a_node_exits_by_itself(tmp_path):
    params = tmp_path / "bad.yaml"
    params.write_text("policy_node:\n  ros__parameters:\n    control_thread_priority: 100\n")
    env = dict(os.environ, ROS_DOMAIN_ID=str(200 + os.getpid() % 30))
    run = subprocess.run([sys.executable, "-m", "hamster_apps.runner", "--log-dir", str(tmp_path / "logs"),
                          "--params-file", str(params)], env=env, capture_output=True, text=True, timeout=180)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "policy_node exited with 2" in run.stderr and "control_thread_priority" in run.stderr
    assert "hamster_apps.episode_client" in run.stdout


def test_a_real_robot_graph_runs_in_the_callers_ros_environment(monkeypatch):
    """Issue 18: hamster-run forced LOCALHOST and, without ROS_DOMAIN_ID, a domain from its pid, so the nodes never
    saw franka_ros2 on domain 0 while hamster-preflight (the caller's environment) passed."""
    from hamster_apps.runner import caller_ros_environment, ros_environment
    monkeypatch.setenv("ROS_DOMAIN_ID", "7")
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "SUBNET")
    monkeypatch.delenv("FASTDDS_DEFAULT_PROFILES_FILE")
    env = caller_ros_environment()
    assert (env["ROS_DOMAIN_ID"], env["ROS_AUTOMATIC_DISCOVERY_RANGE"]) == ("7", "SUBNET")
    assert "FASTDDS_DEFAULT_PROFILES_FILE" not in env
    monkeypatch.delenv("ROS_DOMAIN_ID")
    assert "ROS_DOMAIN_ID" not in caller_ros_environment()   # ROS's default domain 0, as franka_ros2's
    confined = ros_environment()   # the simulator's graph: this machine only, a domain of its own
    assert confined["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST" and confined["ROS_DOMAIN_ID"]


def test_a_real_robot_graph_refuses_to_start_without_a_domain_when_franka_ros2_is_not_visible():
    from hamster_apps.runner import real_robot_refusal
    topic = "/franka_robot_state_broadcaster/robot_state"
    looked = []

    def visible(answer):
        return lambda: looked.append(answer) or answer
    assert real_robot_refusal({"ROS_DOMAIN_ID": "3"}, topic, visible(False)) is None and looked == []
    assert real_robot_refusal({}, topic, visible(True)) is None
    refusal = real_robot_refusal({}, topic, visible(False))
    assert refusal.startswith("ROS_DOMAIN_ID is not set and franka_ros2 is not visible on ROS's default domain 0 "
                              f"(nothing on {topic})"), refusal


def test_the_robot_state_topic_is_the_one_the_bridge_is_given(tmp_path):
    """The visibility check looks where franka_bridge will: a lab's parameter file (loaded last) wins."""
    from hamster_apps.graph import describe_graph
    from hamster_apps.runner import robot_state_topic
    lab = tmp_path / "lab.yaml"
    lab.write_text("franka_bridge:\n  ros__parameters:\n    robot_state_topic: /fr3/robot_state\n")
    real = {"robot": "franka", "vlm_backend": "openai", "perception_backend": "pipeline",
            "calibration": str(CALIBRATION)}
    assert robot_state_topic(describe_graph(**real)) == "/franka_robot_state_broadcaster/robot_state"
    assert robot_state_topic(describe_graph(**real, params_files=(str(lab),))) == "/fr3/robot_state"
