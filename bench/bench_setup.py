"""Set-up time: `tools/setup.sh` into a fresh venv (torch, the pinned ROS 2 wheels and Python dependencies, the FR3
assets, the hamster_msgs build, this package), then again with nothing changed. Prints one JSON object.

    .venv/bin/python bench/bench_setup.py [--keep DIR]

Downloads come from the package index (or pip's cache, as on a machine that ran it before), so the fresh
number depends on the network; the repeated one is the checksum check alone.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def timed_setup(venv: Path) -> float:
    start = time.monotonic()
    # The set-up script runs the venv's own python; this process's ROS bootstrap variables must not leak in.
    # The venv's bootstrap put its library folders on LD_LIBRARY_PATH: a shell that never ran it has neither.
    env = {key: value for key, value in os.environ.items()
           if not key.startswith("_ROS_WHEELS") and not (key == "LD_LIBRARY_PATH" and sys.prefix in value)}
    env["HAMSTER_VENV"] = str(venv)
    run = subprocess.run(["bash", str(ROOT / "tools" / "setup.sh")], env=env, capture_output=True, text=True,
                         timeout=1800)
    if run.returncode != 0:
        raise SystemExit(f"tools/setup.sh failed ({run.returncode}):\n{run.stdout[-2000:]}\n{run.stderr[-2000:]}")
    return round(time.monotonic() - start, 2)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keep", type=Path, help="build the venv here and keep it (default: a temporary folder)")
    args = parser.parse_args()
    folder = args.keep or Path(tempfile.mkdtemp(prefix="hamster-setup-bench-"))
    venv = folder / "venv"
    try:
        fresh = timed_setup(venv)
        repeated = timed_setup(venv)
    finally:
        if args.keep is None:
            shutil.rmtree(folder, ignore_errors=True)
    print(json.dumps({"setup_fresh_sec": fresh, "setup_repeated_sec": repeated}))


if __name__ == "__main__":
    sys.exit(main())
