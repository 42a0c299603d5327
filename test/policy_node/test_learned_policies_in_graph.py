"""Each learned policy drives an episode in the real graph (simulator, VLM, perception and policy processes over
DDS) from a tiny randomly initialised checkpoint: loaded through `<policy>.checkpoint`, planned on the live
observation, executed through the safety-clipping executor, and ended with the policy's own done flag."""
import json
import os
import subprocess
import sys

from pathlib import Path

import numpy as np
import pytest
import yaml
from rosbags.highlevel import AnyReader

from hamster_core.policies.base import POLICIES
from hamster_apps.graph import CONFIG_DIR
from tiny_models import TINY_DDA, TINY_RVT2

pytestmark = [pytest.mark.graph, pytest.mark.slow]  # a demo run per policy

# The policy tests' tiny models with their shipped checkpoints' inputs; 3dda with two denoising steps per prediction,
# enough for a graph episode. rvt2 on the VLM's path (channels, and lifted in policy_node), 3dda on perception_node's
# masks (the policy waits for them, so a plan proves they arrived): both graph inputs are driven.
TINY = {"rvt2": {**TINY_RVT2, "conditioning": "path_channels_points", "step_input": True},
        "3dda": {**TINY_DDA, "inference_steps": 2, "conditioning": "masks", "step_input": True}}


@pytest.mark.parametrize("policy", ["rvt2", "3dda"])
def test_a_learned_policy_checkpoint_drives_an_episode_in_the_graph(policy, tmp_path):
    checkpoint = POLICIES.create(policy, **TINY[policy]).save_pretrained(
        tmp_path / "checkpoint")
    params = tmp_path / "params.yaml"
    # always_done: the first prediction ends the episode (random weights would otherwise wander to the limit).
    # Random weights may also ask for an orientation the arm cannot track: the executor then re-seeds onto the
    # measured pose and, after too many re-seeds, halts; or it holds until the timeout. Each ends with a reason.
    params.write_text(f"policy_node:\n  ros__parameters:\n    {policy}:\n      checkpoint: {checkpoint}\n"
                      f"      always_done: true\n")
    # The session's domain (conftest), so a run given one stays near it; each policy its own: the second graph on
    # the first one's domain right after it failed once here (a result without policy_message).
    domain = int(os.environ["ROS_DOMAIN_ID"]) + (0 if policy == "rvt2" else 1)
    process = subprocess.run([sys.executable, "-m", "hamster_apps.demo", "--policy", policy, "--params-file",
                              str(params), "--seed", "2", "--timeout", "30", "--domain-id", str(domain),
                              "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=400)
    lines = process.stdout.strip().splitlines()
    assert lines, f"demo printed nothing; stderr:\n{process.stderr[-3000:]}"
    result = json.loads(lines[-1])
    assert "policy_message" in result, result   # else the demo failed before the episode ended: its "error" says why
    message = result["policy_message"]
    assert (result["policy_success"] and message == "executed 1 keyframes") or \
        message == "timed out after 30 s while executing" or \
        message.startswith("executor halted: 3 re-seeds within 10 s"), result
    log = (tmp_path / "out").glob("episode-*/logs/policy_node.log")
    text = next(log).read_text()
    assert f"'checkpoint': '{checkpoint}'" in text and "plan 1: 1 keyframes" in text
    # The arm moved under the executor's limits: targets were sent, every one inside its workspace box.
    with AnyReader([Path(result["bag"])]) as reader:
        positions = np.array([[p.x, p.y, p.z] for p in (
            reader.deserialize(raw, c.msgtype).pose.position
            for c, _, raw in reader.messages([c for c in reader.connections if c.topic == "/robot/cartesian_target"]))])
    limits = yaml.safe_load((CONFIG_DIR / "sim.yaml").read_text())["policy_node"]["ros__parameters"]
    assert len(positions) > 50
    assert np.all(positions >= np.array(limits["workspace_min"]) - 1e-6)
    assert np.all(positions <= np.array(limits["workspace_max"]) + 1e-6)
    assert set(result["pids"]) == {"sim_node", "hamster_vlm_node", "perception_node", "policy_node"}


@pytest.mark.parametrize("policy", ["rvt2", "3dda"])
def test_policy_node_refuses_a_learned_policy_without_a_checkpoint(policy, tmp_path):
    """No checkpoint and no allow_random_weights (what hamster-demo --random-weights sets, in the simulator
    only): one FATAL line that says what to do, exit 2, before any topic is touched."""
    from hamster_apps.runner import ros_environment
    params = tmp_path / "params.yaml"    # a file: rcl's -p cannot name a parameter that starts with a digit (3dda)
    params.write_text(f"policy_node:\n  ros__parameters:\n    policy: {policy}\n    {policy}:\n      checkpoint: ''\n")
    process = subprocess.run([sys.executable, "-m", "policy_node.node", "--ros-args", "--params-file", str(params)],
                             env=ros_environment(int(os.environ.get("ROS_DOMAIN_ID", "0"))), capture_output=True,
                             text=True, timeout=120)
    assert process.returncode == 2, process.stderr[-2000:]
    assert (f"{policy} has no checkpoint ({policy}.checkpoint is empty): refusing to run randomly initialised "
            f"weights (allow_random_weights is false)") in process.stderr
    assert f"checkpoints/{policy} ships one" in process.stderr and "Traceback" not in process.stderr
