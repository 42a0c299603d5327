"""Publish a recorded episode back onto the graph: every topic with its recorded type and QoS, and /clock
from the bag's time for nodes with use_sim_time.

    hamster-replay BAG [--rate F | --paced] [--remap FILE] [--topics T ...] [--loop yes|no] [--clock bag|recorded|none]

Messages are published as the recorded CDR bytes (`Publisher.publish(bytes)`): no deserialization. Types
come from the installed ROS packages. A topic whose type is not installed is skipped with one warning line
(and listed in the summary's `skipped`): tf2_msgs has no wheel on PyPI, so a real robot bag's /tf and
/tf_static are skipped here (hamster-replay-eval reads them from the bag itself); a topic named with --topics
whose type is not installed stops the replay before it starts.

QoS: each topic is published with its recorded reliability and durability and its recorded history depth;
rosbag2 records depth 0 when the publisher's depth was not discoverable, and then the replay uses rosbag2
player's default of 10 (depth 1 lost messages at --rate 2). A latched topic keeps every recorded message
(up to 100) for late joiners: a bag's /tf_static holds one message per static broadcaster.

Pacing
- `--rate F` (default 1): message i goes out at wall time start + (t_i - t_0) / F; /clock follows the same
  schedule at --clock-hz, and is also published at t_i just before message i, so a subscriber never sees a
  message stamped ahead of the clock.
- `--paced`: as fast as every matched subscriber takes it, and no faster. All topics are published reliable
  (latched ones stay transient local) with a history of at least --window messages; after every --window
  messages on a topic the replay waits until all of that topic's readers have acknowledged them
  (`wait_for_all_acked`). The writer's history can therefore never overwrite a message some reader has not
  received: with a bounded in-flight window of W, nothing is lost between writer and reader. Readers that
  keep fewer messages than they receive (keep-last-1 and a slow callback) still drop them in their own
  queue; that is their chosen QoS. Best-effort readers do not acknowledge and are not waited for. /clock
  is set to t_i before message i.

Before the first message the replay waits until the number of matched subscribers has been stable for
--settle seconds (at most --match-timeout), so discovery does not eat the first messages. Ends with exit 0
at the end of the bag and on SIGINT/SIGTERM, after printing a JSON summary (achieved rate, /clock).
"""
from __future__ import annotations

import argparse
import importlib
import json
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

LATCHED_TOPICS = {"/camera/pose", "/hamster/instruction", "/hamster/path", "/hamster/path_image", "/sim/scene",
                  "/hamster/episode_metadata", "/tf_static"}
SENSOR_TYPES = {"sensor_msgs/msg/Image", "sensor_msgs/msg/CameraInfo", "sensor_msgs/msg/PointCloud2",
                "sensor_msgs/msg/JointState", "sensor_msgs/msg/Imu", "sensor_msgs/msg/CompressedImage"}


class ReplayError(ValueError):
    """Bad input: unknown type, missing topic, bad option. Exit code 2."""


def message_class(msgtype: str):
    """'pkg/msg/Name' -> the installed Python class; ReplayError naming the type when it is not installed."""
    try:
        package, kind, name = msgtype.split("/")
        return getattr(importlib.import_module(f"{package}.{kind}"), name)
    except (ValueError, ImportError, AttributeError) as error:
        raise ReplayError(f"unknown message type {msgtype!r}: not an installed ROS interface ({error})") from None


UNKNOWN_DEPTH = 10          # rosbag2 player's history depth when the bag recorded none (depth 0)
MAX_LATCHED_DEPTH = 100


def replay_qos(topic: str, msgtype: str, recorded: list, *, paced: bool, window: int, count: int = 1):
    """The publisher QoS: the recorded profile when the bag has one, else the runtime's convention for the
    topic; --paced makes it reliable with room for the in-flight window."""
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
    from rosbags.interfaces import QosDurability, QosReliability

    if recorded:
        profile = recorded[0]
        reliable = profile.reliability != QosReliability.BEST_EFFORT
        latched = profile.durability == QosDurability.TRANSIENT_LOCAL
        depth = int(profile.depth) or UNKNOWN_DEPTH
    else:
        latched = topic in LATCHED_TOPICS
        reliable = latched or msgtype not in SENSOR_TYPES
        depth = 1 if latched else (5 if msgtype in SENSOR_TYPES else 10)
    if latched:
        depth = max(depth, min(count, MAX_LATCHED_DEPTH))
    if paced:
        reliable, depth = True, max(depth, window)
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth,
                      reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
                      durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE)


@dataclass
class PlannedTopic:
    bag_topic: str
    topic: str          # published name, after remapping
    msgtype: str
    qos: object
    count: int


def plan_topics(connections, remap: dict[str, str], selected: list[str] | None, clock_mode: str, *,
                paced: bool, window: int, skipped: dict | None = None) -> dict[int, PlannedTopic]:
    """connection id -> what to publish it as. Raises ReplayError for selected topics the bag does not have or
    whose type is not installed; other topics of an uninstalled type go into `skipped` (topic -> why)."""
    if selected:
        known = {c.topic for c in connections} | {remap.get(c.topic, c.topic) for c in connections}
        missing = [topic for topic in selected if topic not in known]
        if missing:
            raise ReplayError(f"topic(s) {', '.join(missing)} not in the bag; it has: "
                              f"{', '.join(sorted({c.topic for c in connections}))}")
    planned = {}
    for connection in connections:
        name = remap.get(connection.topic, connection.topic)
        if selected and connection.topic not in selected and name not in selected:
            continue
        if name == "/clock" and clock_mode != "recorded":
            continue  # the replay publishes its own clock (or none)
        try:
            message_class(connection.msgtype)
        except ReplayError as error:
            if selected or skipped is None:
                raise
            skipped[connection.topic] = str(error)
            continue
        planned[connection.id] = PlannedTopic(connection.topic, name, connection.msgtype,
                                              replay_qos(name, connection.msgtype, connection.ext.offered_qos_profiles,
                                                         paced=paced, window=window, count=connection.msgcount),
                                              connection.msgcount)
    types = {}
    for item in planned.values():
        if types.setdefault(item.topic, item.msgtype) != item.msgtype:
            raise ReplayError(f"topic {item.topic} would carry both {types[item.topic]} and {item.msgtype}")
    return planned


class Replayer:
    def __init__(self, node, reader, planned: dict[int, PlannedTopic], *, rate: float | None, clock_mode: str,
                 clock_hz: float, window: int, ack_timeout: float, stop: threading.Event):
        from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
        from rosgraph_msgs.msg import Clock

        self.node, self.reader, self.planned = node, reader, planned
        self.rate, self.clock_mode, self.clock_period = rate, clock_mode, 1.0 / clock_hz
        self.window, self.ack_timeout, self.stop = window, ack_timeout, stop
        self.publishers = {}
        by_topic = {}
        for connection_id, item in planned.items():
            if item.topic not in by_topic:
                by_topic[item.topic] = node.create_publisher(message_class(item.msgtype), item.topic, item.qos)
            self.publishers[connection_id] = by_topic[item.topic]
        self._clock_msg = Clock
        self.clock_pub = None
        if clock_mode == "bag":
            self.clock_pub = node.create_publisher(Clock, "/clock", QoSProfile(
                history=HistoryPolicy.KEEP_LAST, depth=max(10, window), reliability=ReliabilityPolicy.RELIABLE))
        self.published = 0
        self.clock_published = 0
        self._unacked = {}
        self._last_clock = None
        self.acks_timed_out = 0

    def wait_for_subscribers(self, settle: float, timeout: float) -> int:
        """Wait until the matched subscriber count has not changed for `settle` s (at most `timeout` s)."""
        publishers = list({id(p): p for p in self.publishers.values()}.values())
        deadline = time.monotonic() + timeout
        count, since = -1, time.monotonic()
        while time.monotonic() < deadline and not self.stop.is_set():
            current = sum(p.get_subscription_count() for p in publishers)
            if current != count:
                count, since = current, time.monotonic()
            elif time.monotonic() - since >= settle and current > 0:
                break
            self.stop.wait(0.05)
        return max(count, 0)

    def _publish_clock(self, bag_ns: int) -> None:
        if self.clock_pub is None or (self._last_clock is not None and bag_ns <= self._last_clock):
            return
        msg = self._clock_msg()
        msg.clock.sec, msg.clock.nanosec = divmod(int(bag_ns), 1_000_000_000)
        self.clock_pub.publish(msg)
        self._last_clock = bag_ns
        self.clock_published += 1

    def play_once(self, offset_ns: int) -> None:
        """One pass over the bag; bag times are shifted by offset_ns (looping keeps /clock increasing)."""
        start_bag = self.reader.start_time
        start_wall = time.monotonic()
        connections = [c for c in self.reader.connections if c.id in self.planned]
        for connection, stamp, raw in self.reader.messages(connections=connections):
            if self.stop.is_set():
                return
            bag_ns = stamp + offset_ns
            if self.rate is not None:  # real-time schedule, /clock ticking while we wait
                due = start_wall + (stamp - start_bag) * 1e-9 / self.rate
                while not self.stop.is_set():
                    now = time.monotonic()
                    if now >= due:
                        break
                    tick = min(due, now + self.clock_period)
                    self.stop.wait(max(0.0, tick - now))
                    clock_ns = start_bag + offset_ns + int((min(time.monotonic(), due) - start_wall) * self.rate * 1e9)
                    self._publish_clock(min(clock_ns, bag_ns))
                if self.stop.is_set():
                    return
            self._publish_clock(bag_ns)
            publisher = self.publishers[connection.id]
            publisher.publish(bytes(raw))
            self.published += 1
            if self.rate is None:
                self._unacked[publisher] = self._unacked.get(publisher, 0) + 1
                if self._unacked[publisher] >= self.window:
                    self._drain(publisher)

    def _drain(self, publisher) -> None:
        from rclpy.duration import Duration
        self._unacked[publisher] = 0
        if publisher.get_subscription_count() and not publisher.wait_for_all_acked(Duration(seconds=self.ack_timeout)):
            self.acks_timed_out += 1

    def flush(self) -> None:
        """Let reliable readers receive the last messages before the publishers go away."""
        from rclpy.duration import Duration
        for publisher in {id(p): p for p in self.publishers.values()}.values():
            if publisher.get_subscription_count():
                publisher.wait_for_all_acked(Duration(seconds=self.ack_timeout))


def run(args) -> dict:
    import rclpy
    from rclpy.node import Node

    from hamster_bag.bag_episode import BagError, TopicMapping, open_reader

    if args.rate is not None and not (args.rate > 0 and args.rate < 1000):
        raise ReplayError(f"--rate must be in (0, 1000), got {args.rate}")
    for name in ("clock_hz", "settle", "match_timeout", "ack_timeout"):
        if not getattr(args, name) > 0:
            raise ReplayError(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    if args.window < 1:
        raise ReplayError(f"--window must be >= 1, got {args.window}")
    try:
        remap = TopicMapping.load(args.remap).topics
        reader = open_reader(args.bag)
    except BagError as error:
        raise ReplayError(str(error)) from None
    paced = args.paced
    rate = None if paced else (args.rate or 1.0)
    stop = threading.Event()
    try:
        skipped = {}
        planned = plan_topics(reader.connections, remap, args.topics, args.clock, paced=paced, window=args.window,
                              skipped=skipped)
        for topic, why in skipped.items():
            print(f"hamster-replay: warning: skipping {topic}: {why}", file=sys.stderr, flush=True)
        if not planned:
            raise ReplayError(f"nothing to replay in {args.bag}")
        previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
        rclpy.init(args=None)
        node = Node("hamster_replay")
        try:
            replayer = Replayer(node, reader, planned, rate=rate, clock_mode=args.clock, clock_hz=args.clock_hz,
                                window=args.window, ack_timeout=args.ack_timeout, stop=stop)
            matched = replayer.wait_for_subscribers(args.settle, args.match_timeout)
            duration_ns = max(1, reader.end_time - reader.start_time)
            bag_seconds = duration_ns * 1e-9
            started, passes = time.monotonic(), 0
            while not stop.is_set():
                replayer.play_once(passes * duration_ns)
                passes += 1
                if args.loop == "no":
                    break
            wall = time.monotonic() - started
            replayer.flush()
            time.sleep(args.linger)
        finally:
            node.destroy_node()
            rclpy.try_shutdown()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    finally:
        reader.close()
    bag_seconds *= passes
    return {"bag": str(args.bag), "mode": "paced" if paced else f"rate {rate}", "published": replayer.published,
            "topics": len({p.topic for p in planned.values()}), "matched_subscribers": matched,
            "clock_messages": replayer.clock_published, "passes": passes, "interrupted": stop.is_set(),
            "bag_seconds": round(bag_seconds, 3), "wall_seconds": round(wall, 3),
            "achieved_rate": round(bag_seconds / wall, 3) if wall > 0 else None,
            "acks_timed_out": replayer.acks_timed_out, "skipped": sorted(skipped)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bag", type=Path, help="rosbag2 folder (mcap or sqlite3)")
    pacing = parser.add_mutually_exclusive_group()
    pacing.add_argument("--rate", type=float, default=None, help="bag seconds per wall second (default 1)")
    pacing.add_argument("--paced", action="store_true", help="as fast as every matched subscriber acknowledges")
    parser.add_argument("--remap", type=Path, default=None, help="mapping YAML: topics: {bag name: published name}")
    parser.add_argument("--topics", nargs="+", default=None, help="only these topics (bag or remapped names)")
    parser.add_argument("--loop", choices=("yes", "no"), default="no")
    parser.add_argument("--clock", choices=("bag", "recorded", "none"), default="bag",
                        help="/clock from the bag's receive times, the recorded /clock topic as is, or none")
    parser.add_argument("--clock-hz", type=float, default=100.0, help="/clock rate while waiting (rate mode)")
    parser.add_argument("--window", type=int, default=10, help="--paced: unacknowledged messages per topic")
    parser.add_argument("--ack-timeout", type=float, default=5.0, help="--paced: give up waiting on a reader (s)")
    parser.add_argument("--settle", type=float, default=0.5, help="subscriber count stable this long before start")
    parser.add_argument("--match-timeout", type=float, default=3.0, help="at most this long waiting for subscribers")
    parser.add_argument("--linger", type=float, default=0.2, help="keep publishers alive after the end (s)")
    args = parser.parse_args(argv)
    try:
        result = run(args)
    except ReplayError as error:
        print(f"hamster-replay: error: {error}", file=sys.stderr)
        return 2
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
