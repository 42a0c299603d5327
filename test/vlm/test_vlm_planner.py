"""The node's core without ROS (planner) and the `hamster-plan` CLI, against a real local chat server."""
import json
import re

import cv2
import numpy as np
import pytest

from hamster_core.drawing import PATH_CHANNELS
from hamster_core.path2d import GripperState, format_hamster_answer, parse_hamster_answer
from hamster_apps import plan as plan_cli
from hamster_core.vlm import VlmRequest
from hamster_core.chat_server import ChatServer
from hamster_vlm_node.planner import (PLANNER_PARAMETERS, PlanError, backend_parameters, create_backend,
                                      planner_from_config)

# A dense answer (as a model that over-samples would give): a straight reach, a grasp, a move, a release.
DENSE = "<ans>[" + ", ".join(f"({0.1 + 0.04 * i:.2f}, 0.50)" for i in range(11)) + \
        ", <action>Close Gripper</action>, (0.50, 0.30), (0.80, 0.30), <action>Open Gripper</action>]</ans>"
IMAGE = np.full((120, 160, 3), 90, np.uint8)
MODEL = "HAMSTER_dev"


@pytest.fixture(scope="module")
def server():
    answers = {"good": DENSE, "pixels": "<ans>[(80, 60), (160, 0)]</ans>",
               "bad": "I cannot see a robot. <ans>[(0.2, 1.7)]</ans>", "empty": "<ans>[]</ans>",
               "huge": "<ans>[" + "(0.5, 0.5), " * 24_000 + "]</ans>",
               "echo": lambda chat: "<ans>[(0.1, 0.1)]</ans> " + chat.prompt.replace("\n", "|")}

    def answer(chat):
        reply = answers[chat.instruction.split()[0]]
        return reply(chat) if callable(reply) else reply
    with ChatServer(answer, model=MODEL) as running:
        yield running


def config(server, **extra):
    return {"backend": "openai", "openai.base_url": server.base_url, "openai.model": MODEL,
            "openai.retries": 0, **extra}


def request(instruction):
    return VlmRequest(image=IMAGE, instruction=instruction)


def test_plan_parses_simplifies_and_resamples_keeping_gripper_changes(server):
    raw = planner_from_config(config(server)).plan(request("good"))
    assert len(raw.path) == 13 and raw.path == raw.parsed == parse_hamster_answer(DENSE)
    assert set(raw.timing) >= {"query_sec", "parse_sec", "process_sec", "backend_requests", "backend_request_sec"}

    simplified = planner_from_config(config(server, rdp_epsilon=0.01)).plan(request("good"))
    assert len(simplified.parsed) == 13
    np.testing.assert_allclose(simplified.path.points, [[0.1, 0.5], [0.5, 0.5], [0.5, 0.3], [0.8, 0.3]])
    np.testing.assert_array_equal(simplified.path.gripper, [0, 1, 1, 0])

    resampled = planner_from_config(config(server, rdp_epsilon=0.01, resample_points=20)).plan(request("good"))
    assert len(resampled.path) == 20
    changes = resampled.path.gripper_change_indices()
    np.testing.assert_allclose(resampled.path.points[changes], [[0.5, 0.5], [0.8, 0.3]])
    assert [GripperState(resampled.path.gripper[i]) for i in changes] == [GripperState.CLOSED, GripperState.OPEN]


def test_pixel_answers_use_the_image_size(server):
    result = planner_from_config(config(server)).plan(request("pixels"))
    np.testing.assert_allclose(result.path.points, [[0.5, 0.5], [1.0, 0.0]])


@pytest.mark.parametrize("instruction, reason", [
    ("bad", "not a valid path: coordinate 1.7 is outside \\[0, 1\\]; pixel coordinates must all be written as "
            "integers"),
    ("empty", "not a valid path: the path has no points"),
])
def test_rejected_answers_are_parse_errors_with_the_answer(server, instruction, reason):
    with pytest.raises(PlanError, match=reason) as error:
        planner_from_config(config(server)).plan(request(instruction))
    assert error.value.stage == "parse" and error.value.answer.startswith(("I cannot", "<ans>"))


def test_query_failures_are_query_errors():
    planner = planner_from_config({"backend": "openai", "openai.base_url": "http://127.0.0.1:9", "openai.retries": 0})
    with pytest.raises(PlanError, match="cannot reach") as error:
        planner.plan(request("good"))
    assert error.value.stage == "query" and error.value.answer is None
    assert error.value.timing["backend_requests"] == 1


def test_resampling_below_the_gripper_changes_is_refused_per_answer(server):
    with pytest.raises(PlanError, match="cannot resample"):
        planner_from_config(config(server, resample_points=2)).plan(request("good"))


def test_config_validation_names_the_bad_value(server):
    with pytest.raises(ValueError, match="unknown option\\(s\\) for the openai backend: modle"):
        create_backend("openai", {"openai.modle": "x"})
    with pytest.raises(ValueError, match="unknown VLM backend 'gpt'"):
        planner_from_config({"backend": "gpt"})
    for key, value in (("max_points", 0), ("rdp_epsilon", -0.1), ("resample_points", 1), ("rdp_epsilon", float("inf"))):
        with pytest.raises(ValueError, match=key):
            planner_from_config(config(server, **{key: value}))
    # Other backends' keys are ignored: one parameter file can configure all of them.
    assert planner_from_config(config(server, **{"transformers.checkpoint": "x"})).model_id.startswith("openai:")


def test_backend_parameters_come_from_the_constructors_with_descriptions():
    openai = {p.name: p for p in backend_parameters("openai")}
    assert openai["base_url"].default == "http://127.0.0.1:8000" and openai["retries"].default == 2
    assert "verbatim" in openai["base_url"].description
    for name in ("oracle", "openai", "transformers"):
        for parameter in backend_parameters(name):
            assert parameter.description != parameter.name, (name, parameter.name)  # every option documented
    assert set(PLANNER_PARAMETERS) == {"max_points", "rdp_epsilon", "resample_points"}


def test_runtime_yaml_documents_every_backend_option():
    import yaml

    from hamster_apps.graph import CONFIG_DIR
    section = yaml.safe_load((CONFIG_DIR / "runtime.yaml").read_text())["hamster_vlm_node"]["ros__parameters"]
    for name in ("oracle", "openai", "transformers"):
        assert set(section[name]) == {p.name for p in backend_parameters(name)}, name
        for parameter in backend_parameters(name):
            assert type(section[name][parameter.name]) is type(parameter.default), (name, parameter.name)
    for key, (default, _) in PLANNER_PARAMETERS.items():
        assert section[key] == default


# ------------------------------------------------------------------------------------------------- CLI

@pytest.fixture
def image_file(tmp_path):
    path = tmp_path / "scene.png"
    cv2.imwrite(str(path), IMAGE)
    return path


def run_cli(capsys, *args):
    code = plan_cli.main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_prints_the_path_and_writes_overlay_json_and_channels(server, image_file, tmp_path, capsys):
    out, js, channels = tmp_path / "overlay.png", tmp_path / "path.json", tmp_path / "channels.npy"
    code, stdout, _ = run_cli(capsys, "--image", image_file, "--instruction", "good", "--base-url", server.base_url,
                              "--model", MODEL, "--rdp-epsilon", "0.01", "--out", out, "--json", js,
                              "--channels", channels)
    assert code == 0
    result = json.loads(stdout)
    assert result == json.loads(js.read_text())
    assert result["points"] == [[0.1, 0.5], [0.5, 0.5], [0.5, 0.3], [0.8, 0.3]] and result["gripper"] == [0, 1, 1, 0]
    assert result["pixels"][0] == [16.0, 60.0] and result["image_size"] == [160, 120]
    assert result["model_id"] == f"openai:{MODEL}@{server.base_url}" and result["answer"] == DENSE
    overlay = cv2.imread(str(out))
    assert overlay.shape == IMAGE.shape and (overlay != IMAGE).any()
    assert np.load(channels).shape == (120, 160, len(PATH_CHANNELS))
    assert result["channels"]["layout"] == list(PATH_CHANNELS)


@pytest.mark.parametrize("instruction, code, reason", [
    ("bad", plan_cli.EXIT_PARSE, "parse failed: the answer is not a valid path: coordinate 1.7 is outside"),
    ("empty", plan_cli.EXIT_PARSE, "no points"),
])
def test_cli_malformed_answer_exits_nonzero_and_writes_nothing(server, image_file, tmp_path, capsys, instruction,
                                                               code, reason):
    out, js = tmp_path / "overlay.png", tmp_path / "path.json"
    result = run_cli(capsys, "--image", image_file, "--instruction", instruction, "--base-url", server.base_url,
                     "--model", MODEL, "--out", out, "--json", js)
    assert result[0] == code and reason in result[2] and result[1] == ""
    assert "the answer was:" in result[2]
    assert not out.exists() and not js.exists()


def test_cli_exit_codes_for_query_and_usage_errors(image_file, tmp_path, capsys):
    code, stdout, stderr = run_cli(capsys, "--image", image_file, "--instruction", "x",
                                   "--base-url", "http://127.0.0.1:9", "--retries", "0")
    assert code == plan_cli.EXIT_QUERY and "query failed" in stderr and stdout == ""
    code, _, stderr = run_cli(capsys, "--image", tmp_path / "missing.png", "--instruction", "x")
    assert code == plan_cli.EXIT_USAGE and "cannot read an image" in stderr
    code, _, stderr = run_cli(capsys, "--image", image_file, "--instruction", "x", "--timeout-sec", "-1")
    assert code == plan_cli.EXIT_USAGE and "timeout_sec" in stderr
    with pytest.raises(SystemExit) as exit_info:
        run_cli(capsys, "--image", image_file, "--instruction", "x", "--backend", "openai", "--checkpoint", "m")
    assert exit_info.value.code == plan_cli.EXIT_USAGE
    assert "--checkpoint is not an option of the openai backend" in capsys.readouterr().err


def test_cli_cuts_a_rejected_answer_to_a_few_hundred_characters(server, image_file, capsys):
    code, stdout, stderr = run_cli(capsys, "--image", image_file, "--instruction", "huge", "--base-url",
                                   server.base_url, "--model", MODEL)
    assert code == plan_cli.EXIT_PARSE and stdout == ""
    assert len(stderr) < 1000 and re.search(r"\(28[0-9]{4} characters\)", stderr)  # the ~280 KB answer: not echoed


def test_cli_usage_errors_exit_2(server, image_file, capsys):
    for instruction in ("", "   "):
        with pytest.raises(SystemExit) as exit_info:
            run_cli(capsys, "--image", image_file, "--instruction", instruction, "--base-url", server.base_url)
        assert exit_info.value.code == plan_cli.EXIT_USAGE
        assert "--instruction is empty" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        run_cli(capsys, "--image", image_file, "--instruction", "good", "--gripper-position", "true")
    assert exit_info.value.code == plan_cli.EXIT_USAGE and "needs --gripper-xy" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        run_cli(capsys, "--image", image_file, "--instruction", "good", "--gripper-xy", "1.5,0.2")
    assert exit_info.value.code == plan_cli.EXIT_USAGE and "normalized" in capsys.readouterr().err


def test_cli_gripper_xy_adds_the_gripper_line(server, image_file, capsys):
    code, stdout, stderr = run_cli(capsys, "--image", image_file, "--instruction", "echo", "--base-url",
                                   server.base_url, "--model", MODEL, "--gripper-xy", "0.25,0.5")
    assert code == 0, stderr
    assert json.loads(stdout)["answer"].endswith("|The current position of the robot gripper is: (0.25, 0.50).")


def test_cli_help_shows_each_backends_own_defaults(capsys):
    with pytest.raises(SystemExit):
        plan_cli.main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: openai: 0.0, transformers: 1.0)" in text       # --temperature
    assert "(default: openai: 0.95, transformers: 1.0)" in text      # --top-p


def test_oracle_answers_round_trip_through_the_planner():
    from oracle_requests import request as oracle_request
    planner = planner_from_config({"backend": "oracle", "resample_points": 30})
    result = planner.plan(oracle_request())
    assert len(result.path) == 30 and result.answer == format_hamster_answer(result.parsed)


def test_sim_server_spec_follows_the_vlm_nodes_openai_parameters(tmp_path):
    from hamster_apps.graph import CONFIG_DIR
    from hamster_apps.graph import sim_vlm_server_spec
    runtime = CONFIG_DIR / "runtime.yaml"
    assert sim_vlm_server_spec([runtime]).parameters == {"host": "127.0.0.1", "port": 8000, "model": "HAMSTER_dev"}
    user = tmp_path / "vlm.yaml"
    user.write_text("hamster_vlm_node:\n  ros__parameters:\n    openai:\n      base_url: http://localhost:9123/\n"
                    "      model: mine\n")
    spec = sim_vlm_server_spec([runtime, user])
    assert spec.parameters == {"host": "127.0.0.1", "port": 9123, "model": "mine"}
    assert spec.module == "hamster_sim.vlm_server"
    user.write_text("hamster_vlm_node:\n  ros__parameters:\n    openai:\n      base_url: http://10.1.2.3:8000/v1\n")
    with pytest.raises(ValueError, match="runs on this machine"):
        sim_vlm_server_spec([runtime, user])
