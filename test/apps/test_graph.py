"""The node graph description shared by the launch file and the runner."""
import ast
from pathlib import Path

import pytest
import yaml

from hamster_apps.graph import CONFIG_DIR, describe_graph

ROOT = Path(__file__).resolve().parents[2]


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
    nodes = {"sim_node", "hamster_vlm_node", "perception_node", "policy_node", "franka_bridge", "camera_cloud"}
    for name in ("runtime.yaml", "sim.yaml", "franka.yaml", "franka_sim.yaml"):
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
    from hamster_apps.runner import add_graph_arguments
    parser = argparse.ArgumentParser()
    add_graph_arguments(parser)
    runner_options = {action.dest for action in parser._actions} - {"help", "config_dir"}
    assert set(arguments) == runner_options
    # Launch-only tools (rviz) sit beside the graph: declared in LAUNCH_ONLY, never a graph option.
    launch_only = ast.literal_eval(next(node.value for node in tree.body if isinstance(node, ast.Assign)
                                        and node.targets[0].id == "LAUNCH_ONLY"))
    assert set(launch_only) == {"rviz"} and not set(launch_only) & runner_options


def _register_test_backends():
    from hamster_core.vlm import VLM_BACKENDS, VlmBackend
    from hamster_core.perception.backend import PERCEPTION_BACKENDS, PerceptionBackend
    if "graph_test_vlm" not in VLM_BACKENDS.names():
        VLM_BACKENDS.register("graph_test_vlm")(type("GraphTestVlm", (VlmBackend,), {"query": lambda self, r: ""}))
        PERCEPTION_BACKENDS.register("graph_test_perception")(
            type("GraphTestPerception", (PerceptionBackend,), {"process": lambda self, f: []}))


def test_franka_graph_adds_the_adapter_and_camera_cloud_and_uses_wall_time(tmp_path):
    """robot:=franka on a real robot, with backends that need no simulator (stand-ins registered here)."""
    _register_test_backends()
    calibration = tmp_path / "calibration.yaml"
    calibration.write_text("translation: [1, 0, 1]\nrotation: [0, 0, 0, 1]\n")
    nodes = by_name(describe_graph(robot="franka", vlm_backend="graph_test_vlm",
                                   perception_backend="graph_test_perception", calibration=str(calibration)))
    assert list(nodes) == ["franka_bridge", "camera_cloud", "hamster_vlm_node", "perception_node", "policy_node"]
    policy = nodes["policy_node"]
    assert [Path(p).name for p in policy.parameter_files] == ["runtime.yaml", "franka.yaml"]
    assert all(spec.parameters["use_sim_time"] is False for spec in nodes.values())
    assert nodes["camera_cloud"].parameters["calibration_file"] == str(calibration.resolve())
    remaps = dict(policy.remappings)
    # the adapter owns the Cartesian target and the measured pose: neither may be remapped past it
    assert "/robot/cartesian_target" not in remaps and "/robot/ee_pose" not in remaps
    assert remaps["/camera/depth/image_raw"] == "/camera/camera/aligned_depth_to_color/image_raw"
    assert all(dict(spec.remappings) == remaps for spec in nodes.values())
    setup_text = (ROOT / "setup.py").read_text()
    for spec in nodes.values():
        assert f"{spec.executable} = {spec.module}:main" in setup_text


def test_franka_graph_without_a_calibration_file_says_how_to_make_one(tmp_path):
    _register_test_backends()
    with pytest.raises(ValueError, match="hamster_core.calibration write"):
        describe_graph(robot="franka", vlm_backend="graph_test_vlm", perception_backend="graph_test_perception",
                       calibration=str(tmp_path / "missing.yaml"))


def test_franka_sim_points_the_adapter_at_the_simulators_franka_interface():
    nodes = by_name(describe_graph(robot="franka", franka_sim=True, seed=2))
    assert list(nodes) == ["sim_node", "franka_bridge", "camera_cloud", "hamster_vlm_node", "perception_node",
                           "policy_node"]
    assert [Path(p).name for p in nodes["sim_node"].parameter_files] == ["sim.yaml", "franka_sim.yaml"]
    assert [Path(p).name for p in nodes["policy_node"].parameter_files] == ["runtime.yaml", "franka.yaml",
                                                                             "franka_sim.yaml"]
    assert Path(nodes["camera_cloud"].parameters["calibration_file"]).name == "calibration_sim.yaml"
    assert all(spec.parameters.get("use_sim_time") for name, spec in nodes.items() if name != "sim_node")
    # the simulator publishes under the robot PC's names, so the same remaps apply to it
    assert dict(nodes["sim_node"].remappings) == dict(nodes["policy_node"].remappings)
    import yaml
    sim = yaml.safe_load((CONFIG_DIR / "franka_sim.yaml").read_text())["sim_node"]["ros__parameters"]
    assert sim["interface"] == "franka" and sim["publish_points"] is False
    with pytest.raises(ValueError, match="franka_sim"):
        describe_graph(robot="sim", franka_sim=True)


def test_franka_bridge_and_simulator_agree_on_franka_ros2_names():
    """The adapter's defaults (config/franka.yaml) are the names the simulator's franka interface serves."""
    import yaml
    bridge = yaml.safe_load((CONFIG_DIR / "franka.yaml").read_text())["franka_bridge"]["ros__parameters"]
    source = (ROOT / "hamster_sim" / "sim_node.py").read_text()
    for key, name in (("robot_state_topic", "franka.robot_state_topic"),
                      ("equilibrium_pose_topic", "franka.equilibrium_pose_topic"),
                      ("gripper_namespace", "franka.gripper_namespace")):
        assert f'"{name}",\n' in source or f'"{name}", ' in source
        assert f'"{bridge[key]}"' in source, key


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


def test_realsense_include_publishes_where_the_franka_remaps_look():
    import yaml
    from hamster_apps.graph import realsense_launch_arguments, realsense_topics
    remaps = yaml.safe_load((CONFIG_DIR / "franka_remappings.yaml").read_text())
    assert realsense_topics() == {k: v for k, v in remaps.items() if k.startswith("/camera/")}
    assert realsense_topics("/lab/", "wrist")["/camera/color/image_raw"] == "/lab/wrist/color/image_raw"
    arguments = realsense_launch_arguments(width=848, height=480, fps=15, serial_no="123456789")
    assert arguments["align_depth.enable"] == "true" and arguments["enable_sync"] == "true"
    assert arguments["rgb_camera.color_profile"] == arguments["depth_module.depth_profile"] == "848x480x15"
    assert arguments["serial_no"] == "'123456789'"
    with pytest.raises(ValueError, match="fps"):
        realsense_launch_arguments(fps=0)
    source = (ROOT / "launch" / "realsense.launch.py").read_text()
    assert "realsense_launch_arguments(" in source and "rs_launch.py" in source


def test_hamster_run_on_a_real_franka_without_franka_msgs_says_what_to_install():
    import subprocess
    import sys
    process = subprocess.run([sys.executable, "-m", "hamster_apps.runner", "--robot", "franka", "--vlm-backend",
                              "openai", "--perception-backend", "pipeline", "--calibration",
                              str(CONFIG_DIR / "calibration_sim.yaml")], capture_output=True, text=True, timeout=60)
    assert process.returncode == 2 and "franka_msgs is not importable: install franka_ros2" in process.stderr


@pytest.mark.parametrize("files", [("franka.yaml",), ("franka.yaml", "franka_sim.yaml")])
def test_the_franka_adapter_limits_match_the_executor_limits(files):
    # Two copies of the same limits (the executor's, and the adapter's second line behind it) kept in sync by
    # hand: a looser adapter is no second line, a tighter one drops targets the executor meant and stalls the arm.
    merged = {"policy_node": {}, "franka_bridge": {}}
    for name in files:
        document = yaml.safe_load((CONFIG_DIR / name).read_text())
        for node in merged:
            merged[node].update(document.get(node, {}).get("ros__parameters", {}))
    for key in ("workspace_min", "workspace_max", "max_linear_speed", "max_angular_speed"):
        assert merged["policy_node"][key] == merged["franka_bridge"][key], (files, key)
