"""`make bench`: run every benchmark and keep what they printed in bench/results.json (committed, so changes
in performance show up in review). Each entry holds the command, its output and the machine it ran on."""
import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from hamster_ros.dds import confine_dds_to_this_machine

BENCH = Path(__file__).resolve().parent
SCRIPTS = ["bench_setup.py", "bench_conversions.py", "bench_executor.py", "bench_sim.py", "bench_vlm.py",
           "bench_vlm_families.py", "bench_perception.py", "bench_episode.py", "bench_franka_bridge.py"]


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("scripts", nargs="*", metavar="SCRIPT",
                        help=f"run only these and keep the other entries of results.json (default: all of {SCRIPTS})")
    args = parser.parse_args()
    unknown = sorted(set(args.scripts) - set(SCRIPTS))
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; known: {SCRIPTS}")
    scripts = args.scripts or SCRIPTS
    env = confine_dds_to_this_machine(dict(os.environ, OMP_NUM_THREADS="1"))
    path = BENCH / "results.json"
    results = json.loads(path.read_text()) if args.scripts and path.is_file() else {}
    results.update({"date": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": {"cpus": os.cpu_count(),
                                                                            "platform": platform.platform()}})
    for script in scripts:
        print(f"== {script}", flush=True)
        run = subprocess.run([sys.executable, str(BENCH / script)], env=env, capture_output=True, text=True,
                             timeout=1800)
        print(run.stdout, flush=True)
        entry = {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "returncode": run.returncode,
                 "output": run.stdout.strip().splitlines()}
        try:
            entry["result"] = json.loads(entry["output"][-1])
        except (IndexError, json.JSONDecodeError):
            pass
        if run.returncode != 0:
            entry["stderr"] = run.stderr.strip().splitlines()[-20:]
        results[script] = entry
    path.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {path}")
    return 0 if all(results[s]["returncode"] == 0 for s in scripts) else 1


if __name__ == "__main__":
    sys.exit(main())
