"""One way to run every node: init, spin on a multi-threaded executor, shut down cleanly on SIGINT/SIGTERM."""
from __future__ import annotations

import dataclasses
import signal
import sys
import threading
from typing import Callable

import rclpy
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor, SingleThreadedExecutor
from rclpy.experimental import EventsExecutor
from rclpy.event_handler import PublisherEventCallbacks, SubscriptionEventCallbacks
from rclpy.node import Node
from rclpy.qos import qos_policy_name_from_kind

from hamster_ros.allocator import keep_large_buffers

SHUTDOWN_CHECK_SEC = 0.5   # longest the executor waits before it looks whether the context was shut down


class RuntimeNode(Node):
    """A Node whose publishers and subscriptions carry no middleware event handlers but a subscription's
    incompatible-QoS warning. rclpy gives each of them two by default, and every executor wake-up walks them all
    in Python, holding the GIL (bench/bench_executor.py measures the difference; numbers in the README,
    "Reliability and timing")."""

    def create_subscription(self, *args, event_callbacks: SubscriptionEventCallbacks | None = None, **kwargs):
        if event_callbacks is None:
            topic = kwargs.get("topic", args[1] if len(args) > 1 else "?")
            event_callbacks = SubscriptionEventCallbacks(
                incompatible_qos=lambda event, topic=topic: self.get_logger().warning(
                    f"a publisher on {topic} offers incompatible QoS "
                    f"({qos_policy_name_from_kind(event.last_policy_kind)}): none of its messages arrive"),
                use_default_callbacks=False)
        return super().create_subscription(*args, event_callbacks=event_callbacks, **kwargs)

    def create_publisher(self, *args, event_callbacks: PublisherEventCallbacks | None = None, **kwargs):
        if event_callbacks is None:  # a mismatched subscriber reports it on its side
            event_callbacks = PublisherEventCallbacks(use_default_callbacks=False)
        return super().create_publisher(*args, event_callbacks=event_callbacks, **kwargs)


def wants_help(argv: list[str]) -> bool:
    """-h/--help among a node's own arguments (those after --ros-args belong to ROS)."""
    own = argv[1:argv.index("--ros-args")] if "--ros-args" in argv else argv[1:]
    return any(arg in ("-h", "--help") for arg in own)


def print_node_help(make_node: Callable[[], Node]) -> None:
    module = sys.modules.get(make_node.__module__)
    name = make_node.__module__ if make_node.__module__ != "__main__" else (
        getattr(module, "__spec__", None) and module.__spec__.name) or sys.argv[0]
    print(f"usage: python -m {name} [--ros-args [-p NAME:=VALUE] [--params-file FILE] [-r FROM:=TO]]\n")
    print((module.__doc__ or "").strip())
    print("\nEvery parameter is declared with a description (`ros2 param describe <node> <name>` while it runs); "
          "the documented defaults are in config/*.yaml (docs/architecture.md).")


def run_node(make_node: Callable[[], Node], threads: int = 3, events_executor: bool = False) -> None:
    """threads=1 spins a SingleThreadedExecutor: less GIL contention for a node whose own thread does the work.
    events_executor=True spins rclpy's EventsExecutor (C++, one thread): a wake-up costs far less than rebuilding
    the Python executors' wait set, for a node woken hundreds of times a second (franka_bridge).
    -h/--help prints what the node is and how to pass parameters, and starts nothing."""
    if wants_help(sys.argv):
        print_node_help(make_node)
        return
    keep_large_buffers()  # camera-rate images and clouds reuse heap blocks instead of faulting in fresh pages
    interrupted = threading.Event()

    def on_sigint(signum, frame):
        interrupted.set()
        raise KeyboardInterrupt

    # Before rclpy.init, which chains its own SIGINT handler (shut the context down, wake the executor) to this one.
    signal.signal(signal.SIGINT, on_sigint)
    rclpy.init(args=sys.argv)
    # SIGTERM from a process supervisor ends the node like Ctrl-C: rclpy's own handler (SignalHandlerOptions.ALL)
    # shuts the context down from C and wakes the executor. A Python handler here would only run once the executor's
    # wait returned on its own, which for a node without timers is never (the VLM node outlived SIGTERM by 10 s+).
    node = None
    try:
        try:
            node = make_node()
        except ValueError as error:  # bad parameters: say which, and exit without a traceback
            print(f"[FATAL] {make_node.__name__}: {error}", file=sys.stderr, flush=True)
            raise SystemExit(2) from None
        if events_executor:
            executor = EventsExecutor()
        else:
            executor = MultiThreadedExecutor(num_threads=threads) if threads > 1 else SingleThreadedExecutor()
        executor.add_node(node)
        # A bounded wait, not executor.spin(): an idle VLM node once outlived SIGTERM (its context shut down, its
        # wait never woken) until a debugger interrupted the wait. With the bound it ends within that time anyway.
        while rclpy.ok():
            executor.spin_once(timeout_sec=SHUTDOWN_CHECK_SEC)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except RuntimeError:
        # Ctrl-C's KeyboardInterrupt raised while rclpy's C++ code was converting a taken message into Python
        # comes out of the executor as pybind11's "RuntimeError: Unable to convert call argument '0' to Python
        # object": the same interrupt, not a fault of the node. A SIGTERM during start-up shuts the context down
        # under the executor being built (RCLError, a RuntimeError): the same stop.
        if not interrupted.is_set() and rclpy.ok():
            raise
    finally:
        if node is not None:
            close = getattr(node, "close", None)
            if close is not None:
                close()
            node.destroy_node()
        rclpy.try_shutdown()


def declare(node: Node, name: str, default, description: str):
    """Declare a parameter with its documentation and return its value."""
    from rcl_interfaces.msg import ParameterDescriptor
    return node.declare_parameter(name, default, ParameterDescriptor(description=description)).value


def declare_fields(node: Node, config_class, prefix: str = "") -> dict:
    """Declare every field of a config dataclass as a `<prefix><field>` parameter, with the dataclass's default
    and the field's `doc` metadata as description; returns field -> value. Tuples are declared as lists, the
    way ROS parameters carry them, and come back as tuples."""
    values = {}
    for field in dataclasses.fields(config_class):
        default = field.default if field.default is not dataclasses.MISSING else field.default_factory()
        value = declare(node, f"{prefix}{field.name}", list(default) if isinstance(default, tuple) else default,
                        field.metadata.get("doc", f"{config_class.__name__}.{field.name}"))
        values[field.name] = tuple(value) if isinstance(default, tuple) else value
    return values


def declare_dataclass(node: Node, config_class, prefix: str = ""):
    """The config dataclass as its declared parameters describe it (it validates the values)."""
    return config_class(**declare_fields(node, config_class, prefix))
