"""policy_node and the in-process rollout run one episode loop (hamster_core.episode): the same scripted policy,
on the same simulated scene, gets the same keyframes executed and the same end reason through both, for an
episode that succeeds, one whose policy refuses to plan, and one that times out while executing.

The scripted policy is a lab's plug-in as a lab would ship it: a module plus an entry point in the
`hamster_runtime.policies` group, on PYTHONPATH for the node process and on sys.path here. It writes every plan
it makes to a JSON-lines file, so the test compares what each loop asked for and executed, not log lines.
"""
from __future__ import annotations

import json
import sys
import textwrap
import time

import pytest

from hamster_apps.graph import CONFIG_DIR, NodeSpec
from waiting import wait_until

pytestmark = [pytest.mark.graph, pytest.mark.slow]  # three episodes through the graph and in-process (~20 s)

PLUGIN = textwrap.dedent('''
    """A scripted policy whose keyframes depend only on the plan number and the instruction."""
    import json
    from dataclasses import dataclass

    import numpy as np

    from hamster_core.executor import Keyframe
    from hamster_core.geometry import Pose
    from hamster_core.path2d import GripperState
    from hamster_core.policies.base import POLICIES, Policy, PolicyError, PolicyOutput

    DOWN = np.array([0.7071, 0.7071, 0.0, 0.0]) / np.linalg.norm([0.7071, 0.7071, 0.0, 0.0])
    SCRIPTS = {   # instruction -> per plan: (position, gripper) keyframes
        "scripted: pick": [[((0.55, 0.05, 0.45), None)], [((0.55, 0.05, 0.40), "closed")],
                           [((0.50, -0.05, 0.45), "open")]],
        "scripted: refuse": [[((0.55, 0.0, 0.48), None)], "refuse"],
        "scripted: far": [[((0.30, 0.30, 0.25), None)], [((0.30, 0.30, 0.30), None)]],
    }


    @dataclass
    class ScriptedConfig:
        record_file: str = ""


    @POLICIES.register("scripted")
    class ScriptedPolicy(Policy):
        config_class = ScriptedConfig
        required_inputs = frozenset({"points"})

        def __init__(self, record_file=""):
            self.record_file = record_file
            self.plans = 0

        def reset(self):
            self.plans = 0

        def select_action(self, observation):
            script = SCRIPTS[observation.instruction]
            step = script[self.plans]
            self.plans += 1
            if step == "refuse":
                raise PolicyError(f"scripted refusal at plan {self.plans}")
            keyframes = [Keyframe(Pose(np.array(position), DOWN),
                                  None if gripper is None else GripperState[gripper.upper()])
                         for position, gripper in step]
            with open(self.record_file, "a") as out:
                out.write(json.dumps({"instruction": observation.instruction, "plan": self.plans,
                                      "keyframes": [[list(position), gripper] for position, gripper in step]}) + "\\n")
            return PolicyOutput(keyframes, done=self.plans == len(script))
    ''')

EPISODES = [  # instruction, timeout (s), expected end reason
    ("scripted: pick", 30.0, "executed 3 keyframes from 3 plans"),
    ("scripted: refuse", 30.0, "cannot plan: scripted refusal at plan 2"),
    ("scripted: far", 1.0, "timed out after 1 s while executing"),
]


def install_plugin(root):
    (root / "scripted_policy.py").write_text(PLUGIN)
    info = root / "scripted_policy-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: scripted-policy\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[hamster_runtime.policies]\nscripted = scripted_policy\n")


def read_plans(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def run_in_graph(tmp_path, plugin_root, record) -> list[str]:
    """The episodes through sim_node + policy_node processes, over DDS; returns each end reason."""
    import os

    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    from hamster_apps.episode_client import EpisodeClient
    from hamster_apps.runner import GraphRunner, ros_environment
    from hamster_ros.node_main import RuntimeNode
    from hamster_ros.spinner import BackgroundSpinner

    sim = str(CONFIG_DIR / "sim.yaml")
    specs = [NodeSpec("sim_node", "sim_node", "hamster_sim.sim_node", (sim,), {"seed": 0}),
             NodeSpec("policy_node", "policy_node", "policy_node.node", (str(CONFIG_DIR / "runtime.yaml"), sim),
                      {"use_sim_time": True, "policy": "scripted", "scripted.record_file": str(record),
                       "mask_wait_sec": 0.0})]
    env = ros_environment()
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(plugin_root), env.get("PYTHONPATH")]))
    runner = GraphRunner(specs, tmp_path / "logs", env)
    context = rclpy.Context()
    rclpy.init(context=context)
    node = RuntimeNode("parity_client", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    spinner = BackgroundSpinner(executor)
    messages = []
    try:
        runner.start()

        def alive():
            assert not runner.exited(), {name: runner.log_tail(name) for name in runner.exited()}

        client = EpisodeClient(node, alive)
        client.wait_until_ready(120)
        for instruction, timeout, _ in EPISODES:
            client.reset(0)
            messages.append(client.run(instruction, timeout).message)
        alive()
    finally:
        spinner.stop()
        node.destroy_node()
        context.try_shutdown()
        runner.stop()
    return messages


def run_in_process(plugin_root, record) -> list[str]:
    from hamster_core.policies.base import POLICIES
    from hamster_sim.rollout import RolloutSettings, run_episode
    from hamster_sim.scene import SceneConfig, sample_scene
    from hamster_sim.world import FrankaWorld

    sys.path.insert(0, str(plugin_root))
    try:
        policy = POLICIES.create("scripted", record_file=str(record))
        messages = []
        with FrankaWorld(sample_scene(0, SceneConfig())) as world:
            for instruction, timeout, _ in EPISODES:
                world.reset()
                result = run_episode(world, policy, instruction=instruction,
                                     settings=RolloutSettings(timeout_sec=timeout, settle_sec=0.0))
                messages.append(result.message.split("; ")[0])   # without the rollout's own success check
        return messages
    finally:
        sys.path.remove(str(plugin_root))
        sys.modules.pop("scripted_policy", None)


def test_policy_node_and_the_rollout_run_the_same_episode_loop(tmp_path):
    plugin_root = tmp_path / "plugin"
    plugin_root.mkdir()
    install_plugin(plugin_root)
    started = time.monotonic()
    graph_messages = run_in_graph(tmp_path, plugin_root, tmp_path / "graph_plans.jsonl")
    process_messages = run_in_process(plugin_root, tmp_path / "rollout_plans.jsonl")
    expected = [reason for _, _, reason in EPISODES]
    assert graph_messages == expected, graph_messages
    assert process_messages == expected, process_messages
    graph_plans = wait_until(lambda: read_plans(tmp_path / "graph_plans.jsonl"), "the node's plan record", 10)
    assert graph_plans == read_plans(tmp_path / "rollout_plans.jsonl")
    assert [plan["plan"] for plan in graph_plans] == [1, 2, 3, 1, 1], graph_plans
    print(f"parity of 3 episodes in {time.monotonic() - started:.1f} s")
