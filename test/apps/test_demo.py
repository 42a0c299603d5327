"""hamster-demo's verdict on the terminal, without a graph: the reason of a failure on stderr, the JSON line last on
stdout, and the exit codes the README documents; the demo's own ROS participant checked for hearing the graph."""
import json
import subprocess
import sys

import pytest
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rosgraph_msgs.msg import Clock

from hamster_apps import demo
from hamster_apps.episode_client import EpisodeError, failure_reason
from hamster_ros import interfaces as t
from hamster_ros.spinner import BackgroundSpinner


def test_failure_reason_says_what_went_wrong():
    assert failure_reason({"success": True}) is None
    assert failure_reason({"success": False, "error": "policy_node exited with 1"}) == "policy_node exited with 1"
    assert failure_reason({"success": False, "policy_success": False,
                           "policy_message": "timed out after 4 s while executing"}) \
        == "the episode ended unsuccessfully: timed out after 4 s while executing"
    assert "the task is not done: cube at [0.5, 0.1, 0.02]" in failure_reason(
        {"success": False, "policy_success": True, "check": "cube at [0.5, 0.1, 0.02]"})


def test_a_failed_demo_prints_its_reason_on_stderr_keeps_json_last_and_exits_1(monkeypatch, capsys):
    import hamster_apps.demo as demo
    monkeypatch.setattr(demo, "run_demo", lambda args: {"success": False, "policy_success": False,
                                                        "policy_message": "timed out after 4 s while executing",
                                                        "logs": "runs/episode-x/logs"})
    assert demo.main([]) == 1
    out, err = capsys.readouterr()
    assert "hamster-demo: FAILED: the episode ended unsuccessfully: timed out after 4 s while executing" in err
    assert "runs/episode-x/logs" in err and json.loads(out.strip().splitlines()[-1])["success"] is False


def test_episode_client_refuses_an_empty_instruction():
    run = subprocess.run([sys.executable, "-m", "hamster_apps.episode_client", "--instruction", "  "],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "--instruction must not be empty" in run.stderr


def test_demos_started_in_the_same_second_get_their_own_folders(tmp_path, monkeypatch):
    # Regression: two `make demo` runs from one working directory within a second; the second died on the first
    # one's runs/episode-<time> folder with a FileExistsError traceback.
    import time

    from hamster_apps.demo import new_episode_folder

    monkeypatch.setattr(time, "strftime", lambda fmt: "episode-20261207-181233")
    folders = [new_episode_folder(tmp_path / "runs") for _ in range(3)]
    assert [f.name for f in folders] == ["episode-20261207-181233", "episode-20261207-181233-2",
                                         "episode-20261207-181233-3"]
    assert all(f.is_dir() for f in folders)


class Ready:
    """An EpisodeClient whose simulator and policy node are up (only wait_until_ready is used here)."""

    def __init__(self, node):
        self.node = node

    def wait_until_ready(self, timeout):
        pass


def test_a_demo_participant_that_hears_nothing_is_replaced_then_refused_with_a_reason(monkeypatch):
    """Regression: a fresh-clone demo's participant discovered the graph and sent three scene resets (the simulator
    logged them) but received nothing, and failed after 30 s as "timed out waiting for the scene reset". Here no
    node publishes /clock: each participant is found deaf, another is started, and every one is closed."""
    monkeypatch.setattr(demo, "HEAR_TIMEOUT_SEC", 0.3)
    made = []
    with pytest.raises(EpisodeError, match="no data from the graph with 3 ROS participants"):
        demo.open_link(5.0, lambda: None, lambda node: made.append(Ready(node)) or made[-1])
    assert len(made) == demo.LINK_ATTEMPTS
    assert all(not client.node.context.ok() for client in made)


def test_a_demo_participant_that_hears_the_clock_is_kept():
    context = rclpy.Context()
    rclpy.init(context=context)
    simulator = rclpy.create_node("clock_source", context=context)
    clock = simulator.create_publisher(Clock, "/clock", t.SENSOR)
    timer = simulator.create_timer(0.01, lambda: clock.publish(Clock()))
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(simulator)
    spinner = BackgroundSpinner(executor)
    try:
        link, client, deaf = demo.open_link(5.0, lambda: None, Ready)
        assert client.node is link.node and deaf == [] and link.clock_messages > 0
        link.close()
    finally:
        spinner.stop()
        simulator.destroy_timer(timer)
        simulator.destroy_node()
        context.try_shutdown()
