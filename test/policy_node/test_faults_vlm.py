"""The VLM behind an OpenAI-compatible server that is down (connection refused) or hangs past the client's
timeout, with hamster_vlm_node and policy_node as real processes (no simulator: the test sends the camera
images). The episode must end with "VLM failed: ..." naming the cause, and nothing reaches /hamster/path.
Shares the harness of test_faults.py (graph_harness.py)."""
import time

import numpy as np
import pytest

from graph_harness import Graph, Injector, Monitor
from waiting import wait_until
from hamster_apps.graph import CONFIG_DIR

pytestmark = pytest.mark.graph

MODEL = "fault-test-model"


@pytest.fixture(scope="module")
def openai_graph(tmp_path_factory):
    from hamster_ros.conversions import numpy_to_image
    from hamster_apps.graph import NodeSpec
    from hamster_apps.runner import GraphRunner, ros_environment
    from hamster_core.chat_server import ChatServer

    def answer(chat):
        time.sleep(3.0)  # a hung model: it answers long after the client's 1 s timeout
        return "<ans>[(0.2, 0.3), (0.6, 0.4)]</ans>"
    server = ChatServer(answer, model=MODEL).start()
    runtime = str(CONFIG_DIR / "runtime.yaml")
    specs = [
        NodeSpec("hamster_vlm_node", "hamster_vlm_node", "hamster_vlm_node.node", (runtime,),
                 {"use_sim_time": False, "backend": "openai", "openai.base_url": server.base_url,
                  "openai.model": MODEL, "openai.retries": 0, "openai.timeout_sec": 1.0, "max_attempts": 1}),
        NodeSpec("policy_node", "policy_node", "policy_node.node", (runtime, str(CONFIG_DIR / "sim.yaml")),
                 {"use_sim_time": False}),
    ]
    runner = GraphRunner(specs, tmp_path_factory.mktemp("vlm_faults"), ros_environment())
    runner.start()
    monitor = None
    injector = None
    try:
        monitor = Monitor(use_sim_time=False)
        monitor.latest["image"] = numpy_to_image(np.full((60, 80, 3), 120, np.uint8), "rgb8")
        monitor.latest["image"].header.frame_id = "camera"
        injector = Injector(monitor, lambda i, stamp: [])  # the camera: a plain image at 10 Hz
        graph = Graph(runner, monitor)
        yield graph, server
        graph.alive()
    finally:
        if injector is not None:
            injector.close()
        if monitor is not None:
            monitor.close()
        runner.stop()
        server.stop()


def vlm_errors_since(monitor: Monitor, since: float, words: str) -> list:
    """The VLM node's ERROR diagnostics since `since` that say `words` (it repeats its last status once a second, so a
    monitor that matched its publisher after the change still gets it)."""
    return [d for d in monitor.diagnostics_since(since, "hamster_vlm_node") if d[2] == 2 and words in d[3]]


def test_vlm_server_hanging_fails_the_episode_with_the_timeout(openai_graph):
    graph, server = openai_graph
    m = graph.monitor
    instruction = "pick up the red cube and put it in the blue bowl"
    start = time.monotonic()
    outcome = m.result(m.start_episode(instruction, 30, graph.alive), 60, graph.alive)
    assert not outcome.success
    assert outcome.message.startswith(f"VLM failed: no path for {instruction!r} after 1 attempt: query failed: "), \
        outcome.message
    assert "timed out after 1 s" in outcome.message, outcome.message
    wait_until(lambda: vlm_errors_since(m, start, "timed out after 1 s"), "the VLM node's error on /diagnostics", 10,
               graph.alive)
    assert m.paths == []
    assert "timed out after 1 s" in graph.log("hamster_vlm_node")


def test_vlm_server_down_fails_the_episode_with_connection_refused(openai_graph):
    graph, server = openai_graph
    m = graph.monitor
    server.stop()  # nothing listens on its port any more
    instruction = "pick up the green cube and put it in the red bowl"
    start = time.monotonic()
    outcome = m.result(m.start_episode(instruction, 30, graph.alive), 60, graph.alive)
    assert not outcome.success
    assert outcome.message.startswith(f"VLM failed: no path for {instruction!r} after 1 attempt: query failed: "), \
        outcome.message
    assert f"cannot reach {server.base_url}" in outcome.message and "Connection refused" in outcome.message, \
        outcome.message
    wait_until(lambda: vlm_errors_since(m, start, "Connection refused"), "the VLM node's error on /diagnostics", 10,
               graph.alive)
    assert m.paths == []
