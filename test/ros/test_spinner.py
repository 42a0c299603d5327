"""BackgroundSpinner: the spinning thread leaves by itself before the executor is shut down.

Regression: a fresh clone's CI run hung in GraphRunner.stop() because a test's `Thread(target=executor.spin)`
kept running, busy and holding the GIL, after `executor.shutdown()` was called from the main thread
(ros2/rclpy#968 races shutdown's clean-up against the spinning thread).
"""
import os
import threading
import time

import pytest
import rclpy
from rclpy.executors import MultiThreadedExecutor, SingleThreadedExecutor
from rclpy.node import Node

from hamster_ros.spinner import BackgroundSpinner


@pytest.mark.graph  # spins an executor
@pytest.mark.parametrize("executor_class", [SingleThreadedExecutor, MultiThreadedExecutor])
def test_spinner_runs_callbacks_and_stops_its_thread(executor_class):
    context = rclpy.Context()
    rclpy.init(context=context)
    node = Node("spinner_test", context=context)
    ticks = []
    node.create_timer(0.01, lambda: ticks.append(threading.current_thread().name))
    executor = executor_class(context=context)
    executor.add_node(node)
    spinner = BackgroundSpinner(executor, name="spinner_under_test", poll_sec=0.05)
    try:
        deadline = time.monotonic() + 10
        while len(ticks) < 5:
            assert time.monotonic() < deadline, "the timer never ran"
            time.sleep(0.01)
        started = time.monotonic()
        assert spinner.stop()
        assert time.monotonic() - started < 2.0
        assert not any(thread.name == "spinner_under_test" for thread in threading.enumerate())
        count = len(ticks)
        time.sleep(0.1)
        assert len(ticks) == count, "callbacks ran after stop()"
        if executor_class is SingleThreadedExecutor:
            assert set(ticks) == {"spinner_under_test"}
    finally:
        node.destroy_node()
        context.try_shutdown()


@pytest.mark.graph  # spins an executor
def test_spinner_leaves_when_the_context_is_shut_down_first():
    """SIGINT shuts the default context down before anyone calls stop(): the thread must still end."""
    context = rclpy.Context()
    rclpy.init(context=context)
    node = Node("spinner_context_test", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    spinner = BackgroundSpinner(executor, name="spinner_context", poll_sec=0.05)
    context.try_shutdown()
    deadline = time.monotonic() + 5
    while any(thread.name == "spinner_context" for thread in threading.enumerate()):
        assert time.monotonic() < deadline, "the spin thread outlived its context"
        time.sleep(0.01)
    assert spinner.stop()
    node.destroy_node()


def test_spinner_validates_its_poll_period():
    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        with pytest.raises(ValueError, match="-1"):
            BackgroundSpinner(SingleThreadedExecutor(context=context), poll_sec=-1)
    finally:
        context.try_shutdown()


@pytest.mark.graph  # spins an executor
@pytest.mark.parametrize("shut_down", [True, False])
def test_spinner_ends_quietly_only_when_the_context_is_down(shut_down):
    from rclpy.context import Context
    context = Context()
    rclpy.init(context=context, domain_id=200 + os.getpid() % 30)
    executor = SingleThreadedExecutor(context=context)
    errors = []
    previous, threading.excepthook = threading.excepthook, lambda args: errors.append(args.exc_value)

    def spin_once(timeout_sec=None):  # shut down between the loop's ok() check and the next wait
        if shut_down:
            context.try_shutdown()
        raise RuntimeError("failed to initialize wait set: the given context is not valid")
    executor.spin_once = spin_once
    try:
        spinner = BackgroundSpinner(executor, poll_sec=0.01)
        spinner._thread.join(timeout=5)
        assert not spinner._thread.is_alive() and (errors == []) == shut_down, errors
    finally:
        threading.excepthook = previous
        context.try_shutdown()


@pytest.mark.graph  # spins an executor
def test_an_entity_destroyed_during_the_wait_does_not_end_the_spin_thread():
    """Regression (a demo's spin thread died at the recorder's close): rclpy raised InvalidHandle from an event
    handler's add_to_wait_set for a subscription another thread was destroying. The spinner carries on."""
    from rclpy.exceptions import InvalidHandle
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=200 + os.getpid() % 30)
    node = Node("spinner_invalid_handle_test", context=context)
    ticks = []
    node.create_timer(0.01, lambda: ticks.append(1))
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    real_spin_once, raised = executor.spin_once, []

    def spin_once(timeout_sec=None):
        if not raised:
            raised.append(1)
            raise InvalidHandle("cannot use Destroyable because destruction was requested")
        real_spin_once(timeout_sec)
    executor.spin_once = spin_once
    spinner = BackgroundSpinner(executor, name="spinner_invalid_handle", poll_sec=0.01)
    try:
        deadline = time.monotonic() + 10
        while len(ticks) < 5:
            assert time.monotonic() < deadline and spinner._thread.is_alive(), "the spin thread ended"
            time.sleep(0.01)
        assert raised
    finally:
        assert spinner.stop()
        node.destroy_node()
        context.try_shutdown()
