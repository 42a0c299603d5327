"""The node graph description shared by the launch file and the runner."""
import importlib
from pathlib import Path

import pytest
import yaml

from hamster_apps.graph import CONFIG_DIR, describe_graph
from launch_files import console_scripts, load_launch_file, run_launch

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


def assert_console_scripts_run_the_modules(specs):
    """ros2 launch starts a node by its console script (spec.executable), the runner by `python -m spec.module`:
    the console script an install of setup.py creates must call that module's main."""
    scripts = console_scripts()
    for spec in specs:
        assert spec.executable in scripts, f"no console script {spec.executable!r} in setup.py"
        assert scripts[spec.executable].load() is importlib.import_module(spec.module).main, spec.name


def test_every_node_module_and_console_script_exists():
    assert_console_scripts_run_the_modules(describe_graph())


@pytest.mark.parametrize("policy", ["rvt2", "3dda"])
def test_learned_policies_are_launch_choices(policy):
    spec = by_name(describe_graph(policy=policy))["policy_node"]
    assert spec.parameters["policy"] == policy and f"policy:='{policy}'" in spec.ros_arguments()


def test_random_weights_only_in_the_simulator():
    """Without a checkpoint a learned policy runs only with the explicit flag, which the robot never accepts."""
    assert "allow_random_weights" not in by_name(describe_graph(policy="rvt2"))["policy_node"].parameters
    spec = by_name(describe_graph(policy="rvt2", random_weights=True))["policy_node"]
    assert spec.parameters["allow_random_weights"] is True and "allow_random_weights:=true" in spec.ros_arguments()
    assert by_name(describe_graph(policy="3dda", robot="franka", franka_sim=True, random_weights=True))[
        "policy_node"].parameters["allow_random_weights"] is True
    with pytest.raises(ValueError, match="only in the simulator, never with robot:=franka"):
        describe_graph(policy="rvt2", robot="franka", vlm_backend="openai", perception_backend="pipeline",
                       random_weights=True)


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
    """The file's values must equal the defaults, in the same ROS type (2 is not 2.0 to a declared parameter),
    except the checkpoint: the file names the one shipped in the repository (the dataclass has none)."""
    import dataclasses
    import yaml
    from hamster_core.policies.base import POLICIES
    documented = yaml.safe_load((CONFIG_DIR / "runtime.yaml").read_text())["policy_node"]["ros__parameters"][policy]
    defaults = {f.name: f.default for f in dataclasses.fields(POLICIES.get(policy).config_class)}
    assert set(documented) == set(defaults)
    assert documented.pop("checkpoint") == f"checkpoints/{policy}" and defaults.pop("checkpoint") == ""
    for name, default in defaults.items():
        value = tuple(documented[name]) if isinstance(documented[name], list) else documented[name]
        assert value == default and type(value) is type(default), name


@pytest.mark.parametrize("launch_arguments, run_arguments", [
    ({}, []),
    ({"policy": "rvt2", "seed": "5", "vlm_backend": "oracle"}, ["--policy", "rvt2", "--seed", "5"]),
    ({"robot": "franka", "franka_sim": "true", "seed": "2"}, ["--robot", "franka", "--franka-sim", "--seed", "2"]),
])
def test_launch_file_starts_the_graph_hamster_run_starts(monkeypatch, launch_arguments, run_arguments):
    """The launch file is a thin layer over describe_graph: for the same choices it starts the nodes hamster-run
    starts (whose --config-dir is the installed share folder in a launch), with the same parameters and remaps."""
    import argparse

    from hamster_apps.runner import add_graph_arguments, graph_from_arguments
    module = load_launch_file(ROOT / "launch" / "hamster.launch.py", monkeypatch, {"hamster_runtime": ROOT})
    declared, entities, _ = run_launch(module, **launch_arguments)
    parser = argparse.ArgumentParser()
    add_graph_arguments(parser)
    runner_options = {action.dest for action in parser._actions} - {"help", "config_dir"}
    # The same choices as hamster-run; launch-only tools (rviz) sit beside the graph, never a graph option.
    assert set(declared) - {"rviz"} == runner_options and "rviz" not in runner_options
    specs = graph_from_arguments(parser.parse_args([*run_arguments, "--config-dir", str(ROOT / "config")]))
    nodes = [entity for entity in entities if entity.package == "hamster_runtime"]
    assert [(node.executable, node.name, node.parameters, node.remappings) for node in nodes] == \
        [(spec.executable, spec.name, [*spec.parameter_files, spec.parameters], list(spec.remappings))
         for spec in specs]
    assert all(node.condition is None for node in nodes)       # the graph itself is always started


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
    assert_console_scripts_run_the_modules(nodes.values())


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


@pytest.mark.graph  # starts the simulator node in this process (its thread publishes over DDS)
def test_franka_bridge_and_simulator_agree_on_franka_ros2_names():
    """The adapter's defaults (config/franka.yaml) are the names the simulator's franka interface serves: the
    simulator node's own parameter defaults, as it declares them (config/franka_sim.yaml leaves them alone)."""
    import rclpy

    from hamster_sim.sim_node import SimNode
    bridge = yaml.safe_load((CONFIG_DIR / "franka.yaml").read_text())["franka_bridge"]["ros__parameters"]
    franka_sim = yaml.safe_load((CONFIG_DIR / "franka_sim.yaml").read_text())["sim_node"]["ros__parameters"]
    names = {"robot_state_topic": "franka.robot_state_topic", "gripper_namespace": "franka.gripper_namespace",
             "recovery.error_recovery_action": "franka.error_recovery_action",
             "recovery.switch_controller_service": "franka.switch_controller_service",
             "recovery.controllers": "franka.controllers"}

    def flat(section: dict, prefix: str = "") -> dict:
        return {key: value for name, item in section.items() for key, value in
                (flat(item, f"{prefix}{name}.").items() if isinstance(item, dict) else [(f"{prefix}{name}", item)])}
    assert not {"franka.target_topic", *names.values()} & set(flat(franka_sim))
    rclpy.init()
    try:
        node = SimNode()
        try:
            served = {key: node.get_parameter(name).value for key, name in names.items()}
            served_target = node.get_parameter("franka.target_topic").value
        finally:
            node.close()
            node.destroy_node()
    finally:
        rclpy.try_shutdown()
    assert served == {key: flat(bridge)[key] for key in names}
    from hamster_core.franka import controller_target_topic
    assert served_target == controller_target_topic(bridge["controller"], bridge["target_topic"]) == "/target_pose"


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


def test_realsense_launch_file_includes_the_driver_with_those_arguments(monkeypatch, tmp_path):
    from hamster_apps.graph import realsense_launch_arguments
    driver_share = tmp_path / "share" / "realsense2_camera"
    module = load_launch_file(ROOT / "launch" / "realsense.launch.py", monkeypatch,
                              {"realsense2_camera": driver_share})
    for arguments, expected in (({}, realsense_launch_arguments()),
                                (dict(camera_namespace="lab", camera_name="wrist", width="848", fps="15",
                                      serial_no="123456789"),
                                 realsense_launch_arguments("lab", "wrist", 848, 480, 15, "123456789"))):
        _, entities, _ = run_launch(module, **arguments)
        [include] = entities
        assert include.source.path == str(driver_share / "launch" / "rs_launch.py")
        assert dict(include.launch_arguments) == expected


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


def test_a_python_without_the_package_installed_is_told_so():
    from hamster_apps.graph import _choices
    with pytest.raises(ValueError, match="no policy is registered for this Python"):
        _choices("policy", "path_follower", [])
