"""End-to-end episodes in the simulator through the real graph: success, wall time, the target stream's rate
and jitter as the policy node produced it (stream_*) and as a subscriber received it (command_*), camera frame
-> first command of each plan (frame_to_command_ms, wall clock across processes), simulator real-time factor.
Prints one JSON object.

    .venv/bin/python bench/bench_episode.py [--seeds 0 1 2 ...]   (default: seeds 0-9)
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

from hamster_ros.dds import confine_dds_to_this_machine


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(10)))
    args = parser.parse_args()
    env = confine_dds_to_this_machine(dict(os.environ, OMP_NUM_THREADS="1",
                                           ROS_DOMAIN_ID=os.environ.get("ROS_DOMAIN_ID", str(60 + os.getpid() % 40))))
    episodes = []
    with tempfile.TemporaryDirectory() as out:
        for seed in args.seeds:
            run = subprocess.run([sys.executable, "-m", "hamster_apps.demo", "--seed", str(seed), "--out", out],
                                 env=env, capture_output=True, text=True, timeout=600)
            result = json.loads(run.stdout.strip().splitlines()[-1])
            for key in ("bag", "overlay", "logs", "pids", "bag_messages"):
                result.pop(key, None)
            episodes.append(result)
            print(json.dumps(result), file=sys.stderr, flush=True)

    def values(key):
        return [e[key] for e in episodes if key in e]

    def percentile(key, q):
        samples = [value for episode in values(key) for value in episode if value is not None]
        return round(float(np.percentile(samples, q)), 1) if samples else None

    summary = {
        "episodes": len(episodes),
        "success_rate": float(np.mean([e["success"] for e in episodes])),
        "demo_seconds_mean": round(float(np.mean(values("demo_seconds"))), 2),
        "episode_seconds_mean": round(float(np.mean(values("episode_seconds"))), 2),
        "command_rate_hz_mean": round(float(np.mean(values("command_rate_hz"))), 1),
        "command_interval_p50_ms_mean": round(float(np.mean(values("command_interval_p50_ms"))), 2),
        "command_interval_p99_ms_max": round(float(np.max(values("command_interval_p99_ms"))), 2),
        "stream_rate_hz_mean": round(float(np.mean(values("stream_rate_hz"))), 1),
        "stream_interval_p50_ms_mean": round(float(np.mean(values("stream_interval_p50_ms"))), 2),
        "stream_interval_p99_ms_max": round(float(np.max(values("stream_interval_p99_ms"))), 2),
        # wall clock across processes: the cloud's publication -> the plan's first target, and its parts
        "frame_to_command_ms_p50": percentile("frame_to_command_ms", 50),
        "frame_to_command_ms_p99": percentile("frame_to_command_ms", 99),
        "frame_to_command_plans": sum(value is not None for e in values("frame_to_command_ms") for value in e),
        "frame_transport_ms_p50": percentile("frame_transport_ms", 50),
        "frame_transport_ms_p99": percentile("frame_transport_ms", 99),
        "frame_age_at_plan_ms_p50": percentile("frame_age_at_plan_ms", 50),
        "frame_age_at_plan_ms_p99": percentile("frame_age_at_plan_ms", 99),
        "plan_compute_ms_p50": percentile("plan_compute_ms", 50),
        "plan_compute_ms_p99": percentile("plan_compute_ms", 99),
        "sim_real_time_factor_mean": round(float(np.mean(values("sim_real_time_factor"))), 3),
        "per_episode": episodes,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
