"""hamster_vlm_node and policy_node as real processes (no simulator), the VLM behind a real local HTTP server:
failed attempts end the episode with the VLM's message, nothing invalid reaches /hamster/path, replanning
works, and every output carries the model id."""
import os

import numpy as np
import pytest

from hamster_core.chat_server import ChatServer
from vlm_harness import Harness
from waiting import wait_until

pytestmark = pytest.mark.graph

MODEL = "hamster-node-test"
GOOD = "<ans>[(0.20, 0.30), <action>Close Gripper</action>, (0.60, 0.40), <action>Open Gripper</action>]</ans>"
INSTRUCTION = "pick up the red cube and put it in the blue bowl"


@pytest.fixture(scope="module")
def graph(tmp_path_factory):
    from hamster_apps.graph import CONFIG_DIR, NodeSpec
    from hamster_apps.runner import GraphRunner, ros_environment

    replies = {"answer": "Sorry, I cannot help with that."}
    server = ChatServer(lambda chat: replies["answer"], model=MODEL).start()
    runtime = str(CONFIG_DIR / "runtime.yaml")
    specs = [
        NodeSpec("hamster_vlm_node", "hamster_vlm_node", "hamster_vlm_node.node", (runtime,),
                 {"use_sim_time": False, "backend": "openai", "openai.base_url": server.base_url,
                  "openai.model": MODEL, "openai.retries": 0, "max_attempts": 2, "rdp_epsilon": 0.0}),
        NodeSpec("policy_node", "policy_node", "policy_node.node", (runtime, str(CONFIG_DIR / "sim.yaml")),
                 {"use_sim_time": False}),
    ]
    runner = GraphRunner(specs, tmp_path_factory.mktemp("vlm_node_logs"), ros_environment())
    runner.start()
    harness = Harness()
    try:
        yield harness, server, replies, runner
    finally:
        harness.close()
        runner.stop()
        server.stop()


def test_failed_attempts_abort_the_episode_with_the_vlms_message(graph):
    harness, server, replies, runner = graph
    wait_until(lambda: harness.episode.server_is_ready() or runner.exited(), "the policy node's action server")
    assert not runner.exited(), {name: runner.log_tail(name) for name in runner.exited()}
    goal = harness.start_episode(INSTRUCTION, 60.0)
    assert goal.accepted
    result = harness.result(goal.get_result_async(), "the episode result").result
    assert not result.success
    assert result.message.startswith(f"VLM failed: no path for {INSTRUCTION!r} after 2 attempts: parse failed: "
                                     f"the answer is not a valid path: no <ans> block"), result.message
    assert len([s for s in server.served if s.model == MODEL]) == 2
    states = [(s["state"], s["attempt"]) for s in harness.statuses if s["instruction"] == INSTRUCTION]
    # The status topic is latched with depth 1: a reader that falls behind under load gets only the newer of two
    # quick statuses, so an earlier one may be missing, never out of order; the last one says it failed.
    expected = [("planning", 1), ("planning", 2), ("failed", 2)]
    assert states[-1] == ("failed", 2) and states == [s for s in expected if s in states], states
    assert all(s["model_id"] == f"openai:{MODEL}@{server.base_url}" for s in harness.statuses)
    assert harness.paths == []  # nothing invalid was published


def test_replan_queries_again_and_publishes_a_path_with_the_model_id(graph):
    harness, server, replies, _ = graph
    replies["answer"] = GOOD
    wait_until(harness.replan.service_is_ready, "the replan service")
    before = len(server.served)
    response = harness.result(harness.replan.call_async(harness.Trigger.Request()), "the replan response")
    assert response.success and INSTRUCTION in response.message
    path = wait_until(lambda: harness.paths[-1] if harness.paths else None, "a path")
    assert path.instruction == INSTRUCTION and path.model_id == f"openai:{MODEL}@{server.base_url}"
    assert path.raw_answer == GOOD and list(path.gripper) == [1, 0]
    np.testing.assert_allclose(np.stack([path.x, path.y], axis=1), [[0.2, 0.3], [0.6, 0.4]], atol=1e-6)
    assert (path.image_width, path.image_height) == (80, 60) and path.header.frame_id == "camera"
    status = wait_until(lambda: harness.statuses[-1] if harness.statuses[-1]["state"] == "ok" else None, "ok")
    assert status["message"] == "path with 2 points (2 in the answer)" and status["attempt"] == 1
    assert {"query_sec", "parse_sec", "total_sec", "backend_requests"} <= set(status["timing"])
    assert len(server.served) == before + 1


def test_an_instruction_published_mid_episode_is_counted_and_ignored(graph):
    """Anyone may publish on /hamster/instruction; while a goal runs the VLM plans for the goal's instruction only."""
    from std_msgs.msg import String

    from hamster_ros import interfaces as t

    harness, server, replies, runner = graph
    replies["answer"] = GOOD
    intruder = "put the knife in the drawer"
    wait_until(lambda: harness.episode.server_is_ready() or runner.exited(), "the policy node's action server")
    goal = harness.start_episode(INSTRUCTION, 8.0)
    assert goal.accepted
    started = len(harness.statuses)
    try:
        wait_until(lambda: any(s["state"] == "ok" and s["instruction"] == INSTRUCTION
                               for s in harness.statuses[started:]), "the episode's path")
    except AssertionError:
        raise AssertionError(f"{harness.statuses[started - 1:]}\n{runner.log_tail('hamster_vlm_node')}") from None
    publisher = harness.node.create_publisher(String, t.INSTRUCTION, t.LATCHED)
    publisher.publish(String(data=intruder))
    status = wait_until(lambda: next((s for s in harness.statuses[started:]
                                      if s["dropped"].get("instruction: mid-episode")), None), "the counted drop")
    assert status["instruction"] == INSTRUCTION and status["state"] == "ok"
    result = harness.result(goal.get_result_async(), "the episode result").result  # ends on its timeout
    assert all(s["instruction"] != intruder for s in harness.statuses)
    assert not any(intruder in str(served.body) for served in server.served)
    assert not result.success
    harness.node.destroy_publisher(publisher)


def test_an_attempt_waits_for_the_inputs_the_backend_needs_and_the_failure_names_them(tmp_path):
    """A backend that puts the gripper's image position in the prompt needs the camera model and the TCP pose. An
    attempt without them fails for certain: it burned all attempts on the first fresh images of a loaded machine
    before /robot/ee_pose arrived (test_franka_demo, issue 21). The node now waits for them, up to
    input_timeout_sec, and then fails naming the topics, without asking the model."""
    from std_msgs.msg import String

    from hamster_apps.graph import CONFIG_DIR, NodeSpec
    from hamster_apps.runner import GraphRunner, ros_environment
    from hamster_ros import interfaces as t

    server = ChatServer(lambda chat: GOOD, model=MODEL).start()
    spec = NodeSpec("hamster_vlm_node", "hamster_vlm_node", "hamster_vlm_node.node",
                    (str(CONFIG_DIR / "runtime.yaml"),),
                    {"use_sim_time": False, "backend": "openai", "openai.base_url": server.base_url,
                     "openai.model": MODEL, "openai.gripper_position": True, "input_timeout_sec": 2.0})
    domain = 60 + os.getpid() % 30   # not the module's graph: its VLM node would answer too
    runner = GraphRunner([spec], tmp_path, ros_environment(domain))
    runner.start()
    harness = Harness(domain)
    try:
        instruction_pub = harness.node.create_publisher(String, t.INSTRUCTION, t.LATCHED)
        instruction_pub.publish(String(data=INSTRUCTION))
        status = wait_until(lambda: next((s for s in harness.statuses if s["state"] == "failed"), None)
                            or runner.exited(), "the VLM's failure")
        assert not runner.exited(), {name: runner.log_tail(name) for name in runner.exited()}
        assert status["message"] == (
            f"no path for {INSTRUCTION!r}: no camera model ({t.COLOR_INFO} and {t.CAMERA_POSE}) or end-effector "
            f"pose ({t.EE_POSE}) within 2 s (the openai:{MODEL}@{server.base_url} backend needs them)"), status
        assert status["attempt"] == 0 and server.served == [] and harness.paths == []
    finally:
        harness.close()
        runner.stop()
        server.stop()
