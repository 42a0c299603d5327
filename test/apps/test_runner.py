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
