"""`hamster-demo --vlm-backend openai`: the simulator, the three runtime nodes and the simulator's stand-in for
HAMSTER's VLM server as separate processes; the VLM node gets its path over HTTP. One seeded episode."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from rosbags.highlevel import AnyReader

pytestmark = [pytest.mark.graph, pytest.mark.slow]  # a whole demo run


@pytest.fixture(scope="module")
def openai_demo(tmp_path_factory):
    import socket
    out = tmp_path_factory.mktemp("demo_openai")
    with socket.socket() as probe:  # a free port for the server
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    params = out / "vlm.yaml"
    params.write_text("hamster_vlm_node:\n  ros__parameters:\n    openai:\n"
                      f"      base_url: http://127.0.0.1:{port}\n      model: hamster-sim-oracle\n")
    env = dict(os.environ, ROS_DOMAIN_ID=str(200 + os.getpid() % 30))
    process = subprocess.run([sys.executable, "-m", "hamster_apps.demo", "--vlm-backend", "openai", "--params-file",
                              str(params), "--sim-vlm-server", "--seed", "2", "--out", str(out), "--timeout", "120"],
                             env=env, capture_output=True, text=True, timeout=400)
    lines = process.stdout.strip().splitlines()
    assert lines, f"demo printed nothing; stderr:\n{process.stderr[-3000:]}"
    return json.loads(lines[-1]), process, port


def test_episode_succeeds_with_the_path_from_the_http_server(openai_demo):
    result, process, port = openai_demo
    assert result["success"], json.dumps(result, indent=1)
    assert process.returncode == 0
    assert set(result["pids"]) == {"sim_node", "hamster_vlm_node", "perception_node", "policy_node", "sim_vlm_server"}
    for pid in result["pids"].values():  # every process, the server included, was stopped
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    from hamster_bag.recorder import project_typestore
    with AnyReader([Path(result["bag"])], default_typestore=project_typestore()) as reader:
        connection = next(c for c in reader.connections if c.topic == "/hamster/path")
        _, _, raw = next(reader.messages(connections=[connection]))
        path = reader.deserialize(raw, connection.msgtype)
    assert path.model_id == f"openai:hamster-sim-oracle@http://127.0.0.1:{port}"
    assert path.raw_answer.startswith("<ans>[") and 1 in path.gripper.tolist()
    log = Path(result["logs"], "hamster_vlm_node.log").read_text()
    assert "path for 'pick up" in log and "'backend_requests'" in log
