"""The ROS-user build path (README, "With an existing ROS 2 installation"): the repository cloned into a colcon
workspace as src/hamster_runtime, built with

    colcon build --paths src/hamster_runtime src/hamster_runtime/msgs --cmake-args -DBUILD_TESTING=OFF

colcon must find both packages (its default discovery stops at the root package.xml and never sees msgs/), build
hamster_msgs before hamster_runtime, and the install must be usable on its own: messages, the ament index share
folder with the launch file and parameter files, and the console scripts where `ros2 run`/`ros2 launch` look
(<prefix>/lib/hamster_runtime, set by setup.cfg).

Here the venv stands in for /opt/ros/<distro>: no ROS is sourced, so AMENT_PREFIX_PATH/CMAKE_PREFIX_PATH point at
the venv, its bin/ comes first on PATH and CMake is told which python to generate for (-DPython3_EXECUTABLE). The
venv already holds its own hamster_msgs (built by tools/setup.sh) and an editable hamster_runtime, so every check
asserts that the workspace's install is what gets used. Measured here: the build takes ~27 s (hamster_msgs ~26 s,
hamster_runtime ~1 s) on 2 cores. `--symlink-install` also builds and imports (measured, not tested here).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # a colcon build of both packages (~30 s); no node is started

REPO = Path(__file__).resolve().parents[2]
VENV = Path(sys.prefix)
# The user-facing arguments: the two package folders inside the cloned repository.
PACKAGE_PATHS = ["src/hamster_runtime", "src/hamster_runtime/msgs"]
# Top-level entries of a working copy that are not part of a clone (or are this project's local outputs).
NOT_IN_CLONE = {".venv", "build", "install", "log", "runs", ".git", ".pytest_cache", ".hypothesis"}
PY = f"python{sys.version_info.major}.{sys.version_info.minor}"


def _clone_into(ws: Path) -> Path:
    src = ws / "src" / "hamster_runtime"

    def ignore(folder, names):
        skip = {n for n in names if n == "__pycache__" or n.endswith(".egg-info")}
        if Path(folder) == REPO:
            skip |= NOT_IN_CLONE & set(names)
        return skip

    shutil.copytree(REPO, src, ignore=ignore, symlinks=True)
    return src


def _colcon_env(tmp: Path) -> dict:
    """The environment of a shell that sourced /opt/ros/<distro>/setup.bash, with the venv as that prefix."""
    env = dict(os.environ)  # keeps the bootstrapper's LD_LIBRARY_PATH and _ROS_WHEELS_BOOTSTRAP_COMPLETE
    for key in ("PYTHONPATH", "COLCON_PREFIX_PATH", "COLCON_CURRENT_PREFIX", "AMENT_CURRENT_PREFIX"):
        env.pop(key, None)
    env.update(
        AMENT_PREFIX_PATH=str(VENV),
        CMAKE_PREFIX_PATH=str(VENV),
        PATH=f"{VENV / 'bin'}{os.pathsep}{env.get('PATH', '')}",
        COLCON_HOME=str(tmp / "colcon_home"),  # no user defaults/mixins from ~/.colcon
        ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
    )
    return env


def _discovered(ws: Path, env: dict, args: list[str]) -> list[str]:
    """Package names colcon finds in the workspace for these discovery arguments, in build (topological) order."""
    listed = subprocess.run([sys.executable, "-m", "colcon", "list", "--topological-order", "--names-only", *args],
                            cwd=ws, env=env, capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0, listed.stderr
    return listed.stdout.split()


# Run in a fresh process after sourcing the install's setup script: where everything comes from.
_CHECK = r"""
import json, os
from pathlib import Path
import hamster_core, hamster_msgs
from hamster_msgs.msg import GroundingMasks, Path2D
from rclpy.serialization import deserialize_message, serialize_message
from ament_index_python.packages import get_package_prefix, get_package_share_directory
from hamster_apps.graph import CONFIG_DIR, describe_graph

msg = Path2D()
assert type(deserialize_message(serialize_message(msg), Path2D)) is Path2D  # loads the C typesupport libraries
serialize_message(GroundingMasks())
share = Path(get_package_share_directory("hamster_runtime"))
# What the launch file does, minus launch_ros (not installable here): the graph for its default arguments.
specs = describe_graph("path_follower", "oracle", "sim_ground_truth", "sim", config_dir=share / "config", seed=0)
print(json.dumps({
    "hamster_msgs": hamster_msgs.__file__,
    "hamster_core": hamster_core.__file__,
    "msgs_prefix": get_package_prefix("hamster_msgs"),
    "runtime_prefix": get_package_prefix("hamster_runtime"),
    "share": str(share),
    "config_dir": str(CONFIG_DIR),
    "executables": [s.executable for s in specs],
    "parameter_files": sorted({f for s in specs for f in s.parameter_files}),
    "loaded_libraries": sorted({line.split()[-1] for line in open("/proc/self/maps") if "hamster_msgs" in line}),
}))
"""


def test_colcon_builds_both_packages_and_the_install_is_usable(tmp_path):
    ws = tmp_path / "ws"
    _clone_into(ws)
    env = _colcon_env(tmp_path)

    # Default discovery stops at the repository's package.xml: that is why the README names both paths.
    assert _discovered(ws, env, []) == ["hamster_runtime"]
    assert _discovered(ws, env, ["--paths", *PACKAGE_PATHS]) == ["hamster_msgs", "hamster_runtime"]
    # The alternative for a workspace with other packages in src/: add the nested folder as a base path.
    assert _discovered(ws, env, ["--base-paths", "src", "src/hamster_runtime/msgs"]) == \
        ["hamster_msgs", "hamster_runtime"]

    build, install, log = tmp_path / "build", tmp_path / "install", tmp_path / "log"
    command = [sys.executable, "-m", "colcon", "--log-base", str(log), "build", "--paths", *PACKAGE_PATHS,
               "--build-base", str(build), "--install-base", str(install),
               "--cmake-args", f"-DPython3_EXECUTABLE={sys.executable}", "-DBUILD_TESTING=OFF"]
    start = time.monotonic()
    built = subprocess.run(command, cwd=ws, env=env, capture_output=True, text=True, timeout=600)
    seconds = time.monotonic() - start
    output = built.stdout + built.stderr
    assert built.returncode == 0, output[-6000:]
    print(f"colcon build: {seconds:.1f} s")

    # hamster_msgs first, and hamster_runtime's build saw it as a dependency (colcon sourced its package hooks).
    lines = output.splitlines()
    order = [line.split()[0] + " " + line.split()[2] for line in lines
             if line.startswith(("Starting >>>", "Finished <<<"))]
    assert order == ["Starting hamster_msgs", "Finished hamster_msgs",
                     "Starting hamster_runtime", "Finished hamster_runtime"], order
    prefix_script = (build / "hamster_runtime" / "colcon_command_prefix_setup_py.sh").read_text()
    assert str(install / "hamster_msgs" / "share" / "hamster_msgs" / "package.sh") in prefix_script

    # ros2 run/launch look for executables in <prefix>/lib/<package>/ (setup.cfg's script_dir/install_scripts).
    scripts = install / "hamster_runtime" / "lib" / "hamster_runtime"
    for name in ("sim_node", "hamster_vlm_node", "perception_node", "policy_node", "hamster-run", "hamster-demo"):
        assert os.access(scripts / name, os.X_OK), f"{name} missing from {scripts}"

    # A fresh shell that sources the install, as a user does after `source /opt/ros/<distro>/setup.bash`.
    setup = install / "setup.bash"
    user_env = {key: value for key, value in env.items() if key != "COLCON_HOME"}
    shell = ['bash', '-c', '. "$1" && exec "$2" -c "$3"', "bash", str(setup), sys.executable]
    checked = subprocess.run([*shell, _CHECK], cwd=tmp_path, env=user_env, capture_output=True, text=True,
                             timeout=120)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    where = json.loads(checked.stdout.strip().splitlines()[-1])

    msgs_prefix, runtime_prefix = install / "hamster_msgs", install / "hamster_runtime"
    site = f"lib/{PY}/site-packages"
    # Python code from the install, not the venv's hamster_msgs or its editable hamster_runtime.
    assert where["hamster_msgs"] == str(msgs_prefix / site / "hamster_msgs" / "__init__.py")
    assert where["hamster_core"] == str(runtime_prefix / site / "hamster_core" / "__init__.py")
    # The message libraries too (LD_LIBRARY_PATH from the install comes first).
    assert where["loaded_libraries"], "no hamster_msgs library loaded"
    assert all(path.startswith(str(msgs_prefix) + "/") for path in where["loaded_libraries"]), \
        where["loaded_libraries"]
    # The ament index resolves both packages to the install.
    assert where["msgs_prefix"] == str(msgs_prefix)
    assert where["runtime_prefix"] == str(runtime_prefix)
    share = runtime_prefix / "share" / "hamster_runtime"
    assert where["share"] == str(share)
    assert (share / "launch" / "hamster.launch.py").is_file()
    assert (share / "config" / "runtime.yaml").is_file()
    assert (share / "package.xml").is_file()
    assert where["config_dir"] == str(share / "config")
    # Every node the launch file starts for its defaults has an installed executable and existing parameter files.
    assert where["executables"] == ["sim_node", "hamster_vlm_node", "perception_node", "policy_node"]
    assert all((scripts / name).is_file() for name in where["executables"])
    assert where["parameter_files"] and all(Path(f).is_file() and Path(f).parent == share / "config"
                                            for f in where["parameter_files"])

    # A console script from the install runs (argparse only: no ROS graph is started).
    run = subprocess.run(["bash", "-c", '. "$1" && exec "$2" --help', "bash", str(setup), str(scripts / "hamster-run")],
                         cwd=tmp_path, env=user_env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "usage: hamster-run" in run.stdout
