"""Timing read back from a recorded episode: command stream rate and jitter, simulator real-time factor.

`command_*` come from bag timestamps, the receive times on the recorder's clock: what a subscriber saw.
`stream_*` are the policy node's own tick statistics: what it produced. Per plan, on the wall clock across
processes (the policy node's `plan_timing`): `frame_to_command_ms` from the publication of the cloud the plan was
made from to the plan's first target, and its parts `frame_transport_ms` (publisher -> policy node),
`frame_age_at_plan_ms` (received -> planning starts), `plan_compute_ms`; `camera_stamp_to_send_ms` (the camera's
stamp -> the cloud's publication) where ROS time is the system clock (not in the simulator).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from rosbags.highlevel import AnyReader


PLAN_TIMING_KEYS = ("frame_to_command_ms", "frame_transport_ms", "frame_age_at_plan_ms", "plan_compute_ms",
                    "camera_stamp_to_send_ms")


def _receive_times(reader: AnyReader, topic: str) -> np.ndarray:
    connections = [c for c in reader.connections if c.topic == topic]
    return np.array([t for _, t, _ in reader.messages(connections=connections)], dtype=np.int64) * 1e-9


def episode_timing(bag: Path | str, command_topic: str = "/robot/cartesian_target",
                   status_topic: str = "/hamster/executor_status") -> dict:
    from hamster_bag.recorder import project_typestore
    with AnyReader([Path(bag)], default_typestore=project_typestore()) as reader:
        stats = {}
        times = _receive_times(reader, command_topic)
        if len(times) > 2:
            intervals_ms = np.diff(times) * 1e3
            stats.update(command_rate_hz=round(float((len(times) - 1) / (times[-1] - times[0])), 1),
                         command_interval_p50_ms=round(float(np.percentile(intervals_ms, 50)), 2),
                         command_interval_p99_ms=round(float(np.percentile(intervals_ms, 99)), 2),
                         command_interval_max_ms=round(float(intervals_ms.max()), 2))
        # The stream as the policy node produced it (its own tick timing), from its last status report.
        status = [c for c in reader.connections if c.topic == status_topic]
        reports = [json.loads(reader.deserialize(raw, c.msgtype).data)
                   for c, _, raw in reader.messages(connections=status)]
        produced = next((r["stream"] for r in reversed(reports) if r.get("stream")), {})
        stats.update({f"stream_{key}": value for key, value in produced.items()})
        # Camera frame -> first target of each plan and its parts, as the policy node measured them (per plan).
        timings = [r["plan_timing"] for r in reports if r.get("plan_timing")]
        per_plan = [timing for index, timing in enumerate(timings) if index == 0 or timing != timings[index - 1]]
        for key in PLAN_TIMING_KEYS:
            values = [timing.get(key) for timing in per_plan]
            if any(value is not None for value in values):
                stats[key] = values
        clock = [c for c in reader.connections if c.topic == "/clock"]
        samples = [(t * 1e-9, reader.deserialize(raw, c.msgtype).clock)
                   for c, t, raw in reader.messages(connections=clock)]
        if len(samples) > 2:
            wall = samples[-1][0] - samples[0][0]
            sim = (samples[-1][1].sec - samples[0][1].sec) + (samples[-1][1].nanosec - samples[0][1].nanosec) * 1e-9
            stats["sim_real_time_factor"] = round(sim / wall, 3)
    return stats
