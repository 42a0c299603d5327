"""Every module with a `main` answers --help with its usage and starts nothing (issue 21: the simulator's VLM server
started serving on --help). Each runs in a process whose ROS domain nobody else uses: a node that started anyway
would still be found by the listing below."""
import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("hamster_core", "hamster_ros", "hamster_vlm_node", "perception_node", "policy_node", "hamster_franka",
            "hamster_sim", "hamster_bag", "hamster_apps")


def modules_with_main() -> list[str]:
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text())
            if any(isinstance(node, ast.FunctionDef) and node.name == "main" for node in tree.body):
                found.append(".".join(path.relative_to(ROOT).with_suffix("").parts))
    return found


def test_the_list_is_not_empty():
    assert {"policy_node.node", "hamster_sim.vlm_server", "hamster_apps.runner"} <= set(modules_with_main())


@pytest.mark.slow  # one python start per module (~25)
@pytest.mark.parametrize("module", modules_with_main())
def test_help_prints_usage_and_starts_nothing(module, tmp_path):
    env = dict(os.environ, ROS_DOMAIN_ID=str(150 + os.getpid() % 40), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
               ROS_LOG_DIR=str(tmp_path))
    run = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, timeout=120,
                         env=env, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.lstrip().startswith("usage:"), run.stdout[:500]
    assert not list(tmp_path.iterdir()), "--help wrote files (a node started?)"


NODES = [("policy_node.node", "policy_node", []), ("perception_node.node", "perception_node", []),
         ("hamster_vlm_node.node", "hamster_vlm_node", []), ("hamster_sim.vlm_server", "sim_vlm_server", []),
         ("hamster_franka.camera_cloud", "camera_cloud",
          ["--ros-args", "-p", f"calibration_file:={ROOT / 'config' / 'calibration_sim.yaml'}"])]


@pytest.mark.graph
@pytest.mark.parametrize("module, name, args", NODES, ids=[module for module, _, _ in NODES])
def test_sigterm_ends_an_idle_node_promptly(module, name, args, tmp_path):
    """Issue 21: a node without timers outlived SIGTERM (its Python handler could not run inside the wait)."""
    import time

    import rclpy

    from waiting import wait_until
    domain = 150 + os.getpid() % 40
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
               ROS_LOG_DIR=str(tmp_path))
    process = subprocess.Popen([sys.executable, "-m", module, *args], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain)
    observer = rclpy.create_node("sigterm_observer", context=context)
    try:
        wait_until(lambda: name in observer.get_node_names() or process.poll() is not None, f"{name} to appear", 60)
        assert process.poll() is None, process.communicate()[0][-2000:]
        terminated = time.monotonic()
        process.terminate()
        code = process.wait(timeout=30)
        print(f"{module}: exited {code} {time.monotonic() - terminated:.2f} s after SIGTERM")
        assert code == 0 and time.monotonic() - terminated < 10, process.communicate()[0][-2000:]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        observer.destroy_node()
        context.try_shutdown()
