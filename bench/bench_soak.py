"""Soak: simulated episodes back to back in ONE long-running graph, watching for growth and drift.

Reports every node's resident memory over time (and its growth after the first episode, in MB per hour),
the control stream's rate and jitter as the policy node reports them once a second, and episode success.
Prints one JSON object last; `make soak` keeps it in bench/results_soak.json.

    .venv/bin/python bench/bench_soak.py [--minutes 30] [--first-seed 0] [--out FILE]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

SAMPLE_PERIOD_SEC = 5.0


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


def growth_mb_per_hour(samples: list[tuple[float, float]]) -> float | None:
    """Slope of a least-squares line through (seconds, MB) samples."""
    if len(samples) < 3:
        return None
    t, mb = np.array(samples).T
    if t[-1] - t[0] < 1.0:
        return None
    return float(np.polyfit(t, mb, 1)[0] * 3600.0)


def summarize(episodes, memory, stream, warmup_end: float | None) -> dict:
    summary = {"episodes": len(episodes),
               "success_rate": round(float(np.mean([e["success"] for e in episodes])), 3) if episodes else None,
               "memory_mb": {}, "stream": {}}
    for name, samples in memory.items():
        after_warmup = [s for s in samples if warmup_end is None or s[0] >= warmup_end]
        second_half = samples[len(samples) // 2:]  # allocators and caches settle first: a leak keeps growing
        values = [mb for _, mb in samples]
        summary["memory_mb"][name] = {
            "first": round(values[0], 1), "last": round(values[-1], 1), "max": round(max(values), 1),
            "growth_mb_per_hour_after_first_episode": (None if (g := growth_mb_per_hour(after_warmup)) is None
                                                       else round(g, 2)),
            "growth_mb_per_hour_second_half": (None if (g := growth_mb_per_hour(second_half)) is None
                                               else round(g, 2)),
            # (seconds, MB), thinned to at most 40 points: enough to see a plateau or a ramp.
            "series": [(round(t, 1), round(mb, 1)) for t, mb in samples[::max(1, len(samples) // 40)]]}
    rates = [s["rate_hz"] for _, s in stream if "rate_hz" in s]
    p99 = [s["interval_p99_ms"] for _, s in stream if "interval_p99_ms" in s]
    if rates:
        quarter = max(1, len(rates) // 4)
        summary["stream"] = {"reports": len(rates), "rate_hz_mean": round(float(np.mean(rates)), 2),
                             "rate_hz_min": round(float(np.min(rates)), 2),
                             "rate_hz_first_quarter": round(float(np.mean(rates[:quarter])), 2),
                             "rate_hz_last_quarter": round(float(np.mean(rates[-quarter:])), 2),
                             "interval_p99_ms_median": round(float(np.median(p99)), 2),
                             "interval_p99_ms_max": round(float(np.max(p99)), 2)}
    return summary


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30.0, help="keep starting episodes for this long")
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--episode-timeout", type=float, default=120.0)
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON summary here")
    args = parser.parse_args(argv)
    if args.minutes <= 0:
        parser.error(f"--minutes must be positive, got {args.minutes}")

    from hamster_apps.graph import describe_graph
    from hamster_apps.runner import GraphRunner, ros_environment, stop_on_signals
    stop_on_signals()
    env = ros_environment(int(os.environ.get("ROS_DOMAIN_ID", 20 + os.getpid() % 40)))
    os.environ.update({k: env[k] for k in ("ROS_AUTOMATIC_DISCOVERY_RANGE", "FASTDDS_DEFAULT_PROFILES_FILE",
                                           "ROS_DOMAIN_ID")})
    import rclpy
    from rclpy.executors import MultiThreadedExecutor
    from rclpy.node import Node
    from std_msgs.msg import String

    from hamster_ros import interfaces as topics
    from hamster_apps.episode_client import EpisodeClient, EpisodeError
    from hamster_ros.spinner import BackgroundSpinner

    episodes, memory, stream = [], {}, []
    started = time.monotonic()
    warmup_end = None
    with tempfile.TemporaryDirectory() as logs:
        runner = GraphRunner(describe_graph(), logs, env)
        rclpy.init()
        node = Node("hamster_soak")
        executor = MultiThreadedExecutor(num_threads=2)
        executor.add_node(node)
        spinner = BackgroundSpinner(executor)
        node.create_subscription(
            String, topics.EXECUTOR_STATUS,
            lambda msg: stream.append((time.monotonic() - started, json.loads(msg.data).get("stream", {}))),
            topics.EVENTS)
        done = threading.Event()

        def sample_memory():
            pids = dict({name: p.pid for name, p in runner.processes.items()}, soak_client=os.getpid())
            while not done.wait(SAMPLE_PERIOD_SEC):
                for name, pid in pids.items():
                    mb = rss_mb(pid)
                    if mb is not None:
                        memory.setdefault(name, []).append((time.monotonic() - started, mb))

        def check_alive():
            if runner.exited():
                name, code = next(iter(runner.exited().items()))
                raise EpisodeError(f"{name} exited with {code}:\n{runner.log_tail(name)}")

        error = None
        try:
            runner.start()
            sampler = threading.Thread(target=sample_memory, daemon=True)
            sampler.start()
            client = EpisodeClient(node, check_alive)
            client.wait_until_ready(60)
            seed = args.first_seed
            while time.monotonic() - started < args.minutes * 60:
                result = client.episode(seed, args.episode_timeout)
                result["finished_at_sec"] = round(time.monotonic() - started, 1)
                episodes.append(result)
                warmup_end = warmup_end or time.monotonic() - started
                print(json.dumps(result), file=sys.stderr, flush=True)
                seed += 1
        except (EpisodeError, KeyboardInterrupt) as caught:
            error = str(caught) or type(caught).__name__
        finally:
            done.set()
            spinner.stop()
            node.destroy_node()
            rclpy.try_shutdown()
            runner.stop()

    summary = summarize(episodes, memory, stream, warmup_end)
    summary.update(minutes_requested=args.minutes, wall_minutes=round((time.monotonic() - started) / 60, 2),
                   error=error, per_episode=episodes)
    text = json.dumps(summary)
    if args.out:
        args.out.write_text(json.dumps(summary, indent=1) + "\n")
    print(text)
    return 0 if error is None else 1


if __name__ == "__main__":
    sys.exit(main())
