"""The node graph description shared by the launch file and the runner."""
import ast
from pathlib import Path

import pytest

from hamster_ros.graph import CONFIG_DIR, describe_graph

ROOT = Path(__file__).resolve().parent.parent


def by_name(specs):
    return {spec.name: spec for spec in specs}


def test_default_graph_is_the_simulator_and_three_nodes():
    nodes = by_name(describe_graph())
    assert list(nodes) == ["sim_node", "hamster_vlm_node", "perception_node", "policy_node"]
    assert nodes["policy_node"].parameters["policy"] == "path_follower"
    assert nodes["hamster_vlm_node"].parameters["backend"] == "oracle"
    assert nodes["perception_node"].parameters["backend"] == "sim_ground_truth"
    assert all(spec.parameters.get("use_sim_time") for name, spec in nodes.items() if name != "sim_node")
    # Robot-specific limits are loaded after the shared file so they win.
    assert [Path(p).name for p in nodes["policy_node"].parameter_files] == ["runtime.yaml", "sim.yaml"]


def test_every_node_module_and_console_script_exists():
    setup_text = (ROOT / "setup.py").read_text()
    for spec in describe_graph():
        assert (ROOT / (spec.module.replace(".", "/") + ".py")).is_file()
        assert f"{spec.executable} = {spec.module}:main" in setup_text


@pytest.mark.parametrize("policy", ["rvt2", "3dda"])
def test_learned_policies_are_launch_choices(policy):
    spec = by_name(describe_graph(policy=policy))["policy_node"]
    assert spec.parameters["policy"] == policy and f"policy:='{policy}'" in spec.ros_arguments()


def test_seed_reaches_the_simulator():
    assert by_name(describe_graph(seed=7))["sim_node"].parameters == {"seed": 7}


def test_franka_refuses_backends_that_read_simulator_ground_truth():
    with pytest.raises(ValueError, match="ground truth"):
        describe_graph(robot="franka")  # the oracle and ground-truth masks need the simulator


@pytest.mark.parametrize("kwargs,message", [
    (dict(policy="rvt9"), "unknown policy 'rvt9'; known: 3dda, path_follower, rvt2"),
    (dict(vlm_backend="gpt"), "unknown VLM backend 'gpt'"),
    (dict(perception_backend="sam"), "unknown perception backend 'sam'"),
    (dict(robot="ur5"), "unknown robot 'ur5'; known: sim, franka"),
    (dict(config_dir="/nonexistent"), "does not exist"),
])
def test_bad_choices_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        describe_graph(**kwargs)


def test_ros_arguments_carry_name_parameters_and_remaps():
    spec = by_name(describe_graph())["policy_node"]
    args = spec.ros_arguments()
    assert args[:3] == ["--ros-args", "-r", "__node:=policy_node"]
    assert args.count("--params-file") == 2
    assert "use_sim_time:=true" in args and "policy:='path_follower'" in args


def test_parameter_files_name_only_declared_nodes():
    import yaml
    nodes = {"sim_node", "hamster_vlm_node", "perception_node", "policy_node"}
    for name in ("runtime.yaml", "sim.yaml", "franka.yaml"):
        sections = yaml.safe_load((CONFIG_DIR / name).read_text())
        assert set(sections) <= nodes, name
        assert all("ros__parameters" in section for section in sections.values()), name


def test_runtime_yaml_documents_every_path_follower_setting():
    """Regression guard: a config field added without its YAML entry would be undocumented."""
    import dataclasses
    import yaml
    from hamster_core.policies.path_follower import PathFollowerConfig
    documented = yaml.safe_load((CONFIG_DIR / "runtime.yaml").read_text())["policy_node"]["ros__parameters"]
    assert set(documented["path_follower"]) == {f.name for f in dataclasses.fields(PathFollowerConfig)}


@pytest.mark.parametrize("policy", ["rvt2", "3dda"])
def test_runtime_yaml_documents_every_learned_policy_setting_with_its_default(policy):
    """The file's values must equal the defaults, in the same ROS type (2 is not 2.0 to a declared parameter)."""
    import dataclasses
    import yaml
    from hamster_core.policies.base import POLICIES
    documented = yaml.safe_load((CONFIG_DIR / "runtime.yaml").read_text())["policy_node"]["ros__parameters"][policy]
    defaults = {f.name: f.default for f in dataclasses.fields(POLICIES.get(policy).config_class)}
    assert set(documented) == set(defaults)
    for name, default in defaults.items():
        value = tuple(documented[name]) if isinstance(documented[name], list) else documented[name]
        assert value == default and type(value) is type(default), name


def test_launch_file_is_a_thin_layer_over_describe_graph():
    source = (ROOT / "launch" / "hamster.launch.py").read_text()
    tree = ast.parse(source)
    calls = {node.func.id for node in ast.walk(tree) if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)}
    assert "describe_graph" in calls
    arguments = ast.literal_eval(next(node.value for node in tree.body if isinstance(node, ast.Assign)
                                      and node.targets[0].id == "ARGUMENTS"))
    # The same choices as hamster-run (whose --config-dir is the installed share folder in a launch).
    import argparse
    from hamster_ros.runner import add_graph_arguments
    parser = argparse.ArgumentParser()
    add_graph_arguments(parser)
    runner_options = {action.dest for action in parser._actions} - {"help", "config_dir"}
    assert set(arguments) == runner_options
    # Launch-only tools (rviz) sit beside the graph: declared in LAUNCH_ONLY, never a graph option.
    launch_only = ast.literal_eval(next(node.value for node in tree.body if isinstance(node, ast.Assign)
                                        and node.targets[0].id == "LAUNCH_ONLY"))
    assert set(launch_only) == {"rviz"} and not set(launch_only) & runner_options


def test_franka_graph_drops_the_simulator_remaps_to_franka_ros2_and_uses_wall_time():
    """robot:=franka with backends that need no simulator (stand-ins registered here for the test)."""
    from hamster_vlm_node.backends.base import VLM_BACKENDS, VlmBackend
    from perception_node.backends.base import PERCEPTION_BACKENDS, PerceptionBackend
    if "graph_test_vlm" not in VLM_BACKENDS.names():
        VLM_BACKENDS.register("graph_test_vlm")(type("GraphTestVlm", (VlmBackend,), {"query": lambda self, r: ""}))
        PERCEPTION_BACKENDS.register("graph_test_perception")(
            type("GraphTestPerception", (PerceptionBackend,), {"process": lambda self, f: []}))
    nodes = by_name(describe_graph(robot="franka", vlm_backend="graph_test_vlm",
                                   perception_backend="graph_test_perception"))
    assert "sim_node" not in nodes
    policy = nodes["policy_node"]
    assert [Path(p).name for p in policy.parameter_files] == ["runtime.yaml", "franka.yaml"]
    assert policy.parameters["use_sim_time"] is False
    remaps = dict(policy.remappings)
    assert remaps["/robot/cartesian_target"] == "/cartesian_impedance_controller/equilibrium_pose"
    assert remaps["/robot/ee_pose"] == "/franka_robot_state_broadcaster/current_pose"
    assert all(dict(spec.remappings) == remaps for spec in nodes.values())


def test_user_parameter_files_load_last_in_every_node(tmp_path):
    user = tmp_path / "lab.yaml"
    user.write_text("hamster_vlm_node:\n  ros__parameters:\n    max_points: 32\n")
    nodes = by_name(describe_graph(params_files=(str(user),)))
    for spec in nodes.values():
        assert spec.parameter_files[-1] == str(user)
    assert "--params-file" in nodes["policy_node"].ros_arguments()


def test_missing_user_parameter_file_is_named(tmp_path):
    with pytest.raises(ValueError, match="nope.yaml"):
        describe_graph(params_files=(str(tmp_path / "nope.yaml"),))
