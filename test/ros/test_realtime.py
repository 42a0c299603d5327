"""Scheduling of the target stream's thread (hamster_ros.realtime)."""
import os
import subprocess
import sys
import threading

import pytest

from hamster_ros import realtime


@pytest.mark.parametrize("priority", [-1, 100, 1.5, True])
def test_priority_out_of_range_is_refused_with_the_value(priority):
    with pytest.raises(ValueError, match=repr(priority).replace(".", r"\.")):
        realtime.check_priority(priority)


@pytest.mark.parametrize("seconds", [0.0, -1.0, 1.0])
def test_switch_interval_out_of_range_is_refused(seconds):
    with pytest.raises(ValueError, match="gil_switch_interval_sec"):
        realtime.set_gil_switch_interval(seconds)


def test_switch_interval_is_applied():
    before = sys.getswitchinterval()
    try:
        realtime.set_gil_switch_interval(0.0002)
        assert sys.getswitchinterval() == pytest.approx(0.0002)
    finally:
        sys.setswitchinterval(before)


def test_priority_zero_leaves_the_thread_alone():
    assert realtime.make_current_thread_realtime(0) is None
    assert os.sched_getscheduler(0) == os.SCHED_OTHER


def test_fifo_applies_to_the_calling_thread_only_or_says_why_not():
    seen = {}

    def stream_thread():
        seen["refused"] = realtime.make_current_thread_realtime(10)
        seen["policy"] = os.sched_getscheduler(0)

    thread = threading.Thread(target=stream_thread)
    thread.start()
    thread.join()
    if seen["refused"] is None:
        assert seen["policy"] == os.SCHED_FIFO
    else:  # no rtprio rights here: the reason is reported and nothing changed
        assert "Error" in seen["refused"] and seen["policy"] == os.SCHED_OTHER
    assert os.sched_getscheduler(0) == os.SCHED_OTHER  # the test's own thread was never touched


def test_a_thread_can_drop_back_to_normal_scheduling():
    seen = {}

    def episode_thread():
        realtime.make_current_thread_realtime(5)
        realtime.make_current_thread_normal()
        seen["policy"] = os.sched_getscheduler(0)

    thread = threading.Thread(target=episode_thread)
    thread.start()
    thread.join()
    assert seen["policy"] == os.sched_getscheduler(0) == os.SCHED_OTHER


@pytest.mark.graph  # starts a policy_node process
def test_policy_node_refuses_an_executor_priority_not_below_the_stream_priority():
    # The callback thread above (or level with) the stream thread would starve the stream.
    from hamster_apps.runner import ros_environment
    process = subprocess.run([sys.executable, "-m", "policy_node.node", "--ros-args",
                              "-p", "control_thread_priority:=20", "-p", "executor_thread_priority:=20"],
                             env=ros_environment(int(os.environ["ROS_DOMAIN_ID"])), capture_output=True, text=True,
                             timeout=120)
    assert process.returncode == 2
    assert "executor_thread_priority (20) must be below control_thread_priority (20)" in process.stderr
