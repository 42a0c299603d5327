"""franka_msgs, or a TEST STAND-IN for it where the real package cannot be installed.

The runtime's franka adapter (hamster_franka.franka_bridge) and the simulator's franka interface import
`franka_msgs`. On a robot PC that is franka_ros2's own package. On a machine without it (this project's CI:
franka_msgs is not on PyPI), `tools/franka_msgs_standin/` holds an interface package with the same names and
field layout (and `tools/controller_manager_msgs_standin/` the one ros2_control service /robot/recover calls),
and `build_standin(prefix)` builds both with plain CMake into `prefix` (the way tools/setup.sh builds
hamster_msgs) and returns the environment child node processes need to import them. It is never
installed into the venv, so the runtime itself never picks it up by accident.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

from hamster_ros.interfaces import franka_msgs_available


STANDIN_SOURCE = Path(__file__).resolve().parent.parent / "tools" / "franka_msgs_standin"
# Built in this order into one prefix.
STANDIN_SOURCES = (STANDIN_SOURCE, STANDIN_SOURCE.parent / "controller_manager_msgs_standin")


STANDIN_ON_REAL_ROBOT_MESSAGE = (
    "this shell has the franka_msgs TEST STAND-IN on its paths (HAMSTER_FRANKA_MSGS_STANDIN={prefix}): a real robot "
    "needs franka_ros2's franka_msgs; start from a shell without the stand-in's exports, or add --franka-sim for the "
    "simulator")


class StandinError(RuntimeError):
    """The stand-in could not be built (its log tail is in the message)."""


def _inputs_checksum() -> str:
    digest = hashlib.sha256()
    for source in STANDIN_SOURCES:
        for path in sorted(source.rglob("*")):
            if path.is_file():
                digest.update(path.relative_to(source.parent).as_posix().encode())
                digest.update(path.read_bytes())
    digest.update(sys.executable.encode())
    return digest.hexdigest()


def standin_environment(prefix: Path | str, base: dict[str, str] | None = None) -> dict[str, str]:
    """`base` (default os.environ) with the stand-in's prefix prepended to the import and library paths."""
    prefix = Path(prefix)
    env = dict(os.environ if base is None else base)
    python_dir = prefix / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"

    def prepend(key: str, value: Path):
        env[key] = os.pathsep.join([str(value)] + ([env[key]] if env.get(key) else []))

    prepend("PYTHONPATH", python_dir)
    prepend("LD_LIBRARY_PATH", prefix / "lib")
    if not env.get("AMENT_PREFIX_PATH"):  # unset means the venv's own index (the ROS wheels'); keep it searchable
        env["AMENT_PREFIX_PATH"] = sys.prefix
    prepend("AMENT_PREFIX_PATH", prefix)
    env["HAMSTER_FRANKA_MSGS_STANDIN"] = str(prefix)  # so nodes can say loudly that they use the stand-in
    return env


def build_standin(prefix: Path | str, jobs: int = 2) -> dict[str, str]:
    """Build the stand-in into `prefix` (skipped when it is already built from the same sources) and return
    the environment for processes that import it. Raises StandinError with the build log's tail."""
    prefix = Path(prefix).resolve()
    stamp = prefix / ".standin.sha256"
    checksum = _inputs_checksum()
    if stamp.is_file() and stamp.read_text() == checksum:
        return standin_environment(prefix)
    venv = Path(sys.prefix)
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    # The later package finds nothing of the earlier one's: each depends only on the venv's interfaces.
    env["AMENT_PREFIX_PATH"] = env["CMAKE_PREFIX_PATH"] = str(venv)
    log = prefix / "build.log"
    started = time.monotonic()
    with open(log, "w") as out:
        for source in STANDIN_SOURCES:
            build = prefix / "build" / source.name
            # A rebuild starts clean: a cache configured from another checkout's sources makes cmake refuse it.
            shutil.rmtree(build, ignore_errors=True)
            build.mkdir(parents=True, exist_ok=True)
            steps = [
                ["cmake", "-S", str(source), "-B", str(build), f"-DCMAKE_INSTALL_PREFIX={prefix}",
                 f"-DPython3_EXECUTABLE={sys.executable}", f"-DPython3_INCLUDE_DIR={sysconfig.get_paths()['include']}",
                 "-DBUILD_TESTING=OFF", "-DCMAKE_BUILD_TYPE=Release"],
                ["cmake", "--build", str(build), f"-j{jobs}"],
                ["cmake", "--install", str(build)],
            ]
            for step in steps:
                if subprocess.run(step, env=env, stdout=out, stderr=subprocess.STDOUT).returncode != 0:
                    out.flush()
                    tail = "\n".join(log.read_text(errors="replace").splitlines()[-25:])
                    raise StandinError(f"building the {source.name} stand-in failed at {' '.join(step[:2])}; "
                                       f"log {log}:\n{tail}")
        out.write(f"built in {time.monotonic() - started:.1f} s\n")
    stamp.write_text(checksum)
    return standin_environment(prefix)


def main(argv=None) -> int:
    """python -m hamster_franka.franka_standin PREFIX: build the stand-in and print the environment to use it."""
    import argparse
    import shlex
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("prefix", type=Path)
    args = parser.parse_args(argv)
    started = time.monotonic()
    env = build_standin(args.prefix)
    for key in ("PYTHONPATH", "LD_LIBRARY_PATH", "AMENT_PREFIX_PATH", "HAMSTER_FRANKA_MSGS_STANDIN"):
        print(f"export {key}={shlex.quote(env[key])}")
    print(f"# franka_msgs TEST STAND-IN ready in {time.monotonic() - started:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())


def franka_environment(env: dict, program: str) -> dict:
    """The nodes' environment for robot:=franka: franka_ros2's franka_msgs where it is installed, else the TEST
    STAND-IN built into build/franka_msgs_standin or $HAMSTER_FRANKA_STANDIN_PREFIX (rebuilt only when its sources
    change), said loudly. `program` names the caller in what it prints."""
    if franka_msgs_available():
        if os.environ.get("HAMSTER_FRANKA_MSGS_STANDIN"):
            print(f"{program}: franka_msgs is the TEST STAND-IN from {os.environ['HAMSTER_FRANKA_MSGS_STANDIN']}",
                  file=sys.stderr, flush=True)
        return env
    prefix = Path(os.environ.get("HAMSTER_FRANKA_STANDIN_PREFIX")
                  or STANDIN_SOURCE.parent.parent / "build" / "franka_msgs_standin")
    print(f"{program}: franka_msgs is not installed; using the franka_msgs TEST STAND-IN built into {prefix} "
          "(same field layout, not franka_ros2's package: only for the simulator)", file=sys.stderr, flush=True)
    build_standin(prefix)
    return standin_environment(prefix, env)
