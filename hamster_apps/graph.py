"""The one description of the runtime's node graph.

`describe_graph(...)` says which executables run, with which parameter files, overrides and remaps, for a
choice of launch arguments. `launch/hamster.launch.py` turns it into launch_ros Nodes for ROS users; the
project's own runner (`hamster_apps.runner`) starts the same graph as processes where `ros2 launch` is not
installed. Plain Python: no rclpy, so it is tested without a ROS graph.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from hamster_ros.package_files import CONFIG_DIR

ROBOTS = ("sim", "franka")


@dataclass(frozen=True)
class NodeSpec:
    name: str                       # node name (also the key of its section in the YAML files)
    executable: str                 # console script installed by setup.py
    module: str                     # `python -m` entry point, for the runner
    parameter_files: tuple[str, ...] = ()
    parameters: dict = field(default_factory=dict)
    remappings: tuple[tuple[str, str], ...] = ()

    def ros_arguments(self) -> list[str]:
        """Command-line arguments that give a node this spec's name, parameters and remaps."""
        args = ["--ros-args", "-r", f"__node:={self.name}"]
        for path in self.parameter_files:
            args += ["--params-file", path]
        for key, value in self.parameters.items():
            args += ["-p", f"{key}:={_parameter_text(value)}"]
        for source, target in self.remappings:
            args += ["-r", f"{source}:={target}"]
        return args


def _parameter_text(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_parameter_text(v) for v in value) + "]"
    if isinstance(value, str):
        return f"'{value}'"
    return repr(value)


def _choices(kind: str, value: str, known: list[str]) -> str:
    if value not in known:
        if not known:  # the registries are filled from this package's entry points
            raise ValueError(f"unknown {kind} {value!r}: no {kind} is registered for this Python, so hamster_runtime "
                             "is not installed in it (run from the project's venv: .venv/bin/...)")
        raise ValueError(f"unknown {kind} {value!r}; known: {', '.join(known)}")
    return value


def describe_graph(policy: str = "path_follower", vlm_backend: str = "oracle",
                   perception_backend: str = "sim_ground_truth", robot: str = "sim",
                   config_dir: Path | str | None = None, use_sim_time: bool | None = None,
                   seed: int | None = None, params_files: tuple[str, ...] = (), franka_sim: bool = False,
                   calibration: str | None = None, random_weights: bool = False) -> list[NodeSpec]:
    """Nodes, parameters and remaps for one set of launch arguments. Raises ValueError on a bad choice.

    `params_files` are the user's own ROS parameter files (e.g. a VLM server's address), loaded after the
    project's files so they win; each node reads its own section.

    robot:=franka adds the franka_ros2 adapter (franka_bridge) and camera_cloud (depth + `calibration`, a
    calibration YAML, default config/calibration.yaml -> base-frame points). `franka_sim` points it at the
    simulator's franka-shaped interface instead of a robot: the simulator runs with `interface: franka`
    (config/franka_sim.yaml) behind the same remaps, its clock is used, and the simulator's ground-truth
    backends are allowed because the simulator is there."""
    from hamster_core.policies.base import POLICIES
    from hamster_core.vlm import VLM_BACKENDS
    from hamster_core.perception.backend import PERCEPTION_BACKENDS

    _choices("robot", robot, list(ROBOTS))
    _choices("policy", policy, POLICIES.names())
    _choices("VLM backend", vlm_backend, VLM_BACKENDS.names())
    _choices("perception backend", perception_backend, PERCEPTION_BACKENDS.names())
    if franka_sim and robot != "franka":
        raise ValueError(f"franka_sim points robot:=franka at the simulator; it means nothing with robot:={robot}")
    simulated = robot == "sim" or franka_sim
    if not simulated and (vlm_backend == "oracle" or perception_backend == "sim_ground_truth"):
        raise ValueError(f"vlm_backend:={vlm_backend} perception_backend:={perception_backend} read the "
                         f"simulator's ground truth: use real backends with robot:={robot}")

    if random_weights and not simulated:
        raise ValueError(f"random_weights runs a policy without a checkpoint, whose actions are meaningless: only in "
                         f"the simulator, never with robot:={robot}")

    config = Path(config_dir) if config_dir else CONFIG_DIR
    names = ("runtime", robot, "sim", "franka_sim") if franka_sim else ("runtime", robot)
    files = {name: str(config / f"{name}.yaml") for name in names}
    user_files = tuple(str(Path(path).resolve()) for path in params_files)
    for path in (*files.values(), *user_files):
        if not Path(path).is_file():
            raise ValueError(f"parameter file {path} does not exist")
    sim_time = simulated if use_sim_time is None else use_sim_time
    common = {"use_sim_time": sim_time}
    robot_remaps = ()
    robot_files = (files[robot],)
    if robot == "franka":
        robot_remaps = _remappings(config / "franka_remappings.yaml")
        robot_files = (files["franka"], files["franka_sim"]) if franka_sim else (files["franka"],)
        if calibration is None:
            calibration = str(config / ("calibration_sim.yaml" if franka_sim else "calibration.yaml"))
        calibration = str(Path(calibration).resolve())
        if not Path(calibration).is_file():
            raise ValueError(f"calibration file {calibration} does not exist: write it from your hand-eye "
                             "calibration with `python -m hamster_core.calibration write ...` (README: Real robot)")

    nodes = []
    if simulated:
        sim_parameters = {} if seed is None else {"seed": int(seed)}
        sim_files = (files["sim"], files["franka_sim"]) if franka_sim else (files["sim"],)
        nodes.append(NodeSpec("sim_node", "sim_node", "hamster_sim.sim_node", (*sim_files, *user_files),
                              sim_parameters, robot_remaps))
    if robot == "franka":
        nodes += [
            NodeSpec("franka_bridge", "franka_bridge", "hamster_franka.franka_bridge", (*robot_files, *user_files),
                     dict(common), robot_remaps),
            NodeSpec("camera_cloud", "camera_cloud", "hamster_franka.camera_cloud", (*robot_files, *user_files),
                     {**common, "calibration_file": calibration}, robot_remaps),
        ]
    nodes += [
        NodeSpec("hamster_vlm_node", "hamster_vlm_node", "hamster_vlm_node.node", (files["runtime"], *user_files),
                 {**common, "backend": vlm_backend}, robot_remaps),
        NodeSpec("perception_node", "perception_node", "perception_node.node", (files["runtime"], *user_files),
                 {**common, "backend": perception_backend}, robot_remaps),
        NodeSpec("policy_node", "policy_node", "policy_node.node", (files["runtime"], *robot_files, *user_files),
                 {**common, "policy": policy, **({"allow_random_weights": True} if random_weights else {})},
                 robot_remaps),
    ]
    return nodes


def _remappings(path: Path) -> tuple[tuple[str, str], ...]:
    import yaml
    remaps = yaml.safe_load(path.read_text()) or {}
    if not isinstance(remaps, dict):
        raise ValueError(f"{path} must map runtime topics to robot topics")
    return tuple((str(k), str(v)) for k, v in remaps.items())


def realsense_launch_arguments(camera_namespace: str = "camera", camera_name: str = "camera", width: int = 640,
                               height: int = 480, fps: int = 30, serial_no: str = "") -> dict[str, str]:
    """realsense2_camera's rs_launch.py arguments (realsense-ros 4.54+) for the runtime: colour and depth at
    the same profile, depth aligned to colour (so the colour camera_info is the depth's), frames synced, and no
    driver point cloud (camera_cloud makes the base-frame cloud). Older 4.51 names the profiles
    rgb_camera.profile / depth_module.profile."""
    for name, value in (("width", width), ("height", height), ("fps", fps)):
        if not (isinstance(value, int) and value > 0):
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    profile = f"{width}x{height}x{fps}"
    arguments = {"camera_namespace": camera_namespace, "camera_name": camera_name, "enable_color": "true",
                 "enable_depth": "true", "rgb_camera.color_profile": profile, "depth_module.depth_profile": profile,
                 "align_depth.enable": "true", "enable_sync": "true", "pointcloud.enable": "false"}
    if serial_no:
        arguments["serial_no"] = f"'{serial_no}'"  # quoted: serial numbers look like integers to the launch parser
    return arguments


def realsense_topics(camera_namespace: str = "camera", camera_name: str = "camera") -> dict[str, str]:
    """Runtime camera topic -> the topic rs_launch.py publishes it on (the camera part of franka_remappings)."""
    prefix = "/" + "/".join(part.strip("/") for part in (camera_namespace, camera_name) if part.strip("/"))
    return {"/camera/color/image_raw": f"{prefix}/color/image_raw",
            "/camera/color/camera_info": f"{prefix}/color/camera_info",
            "/camera/depth/image_raw": f"{prefix}/aligned_depth_to_color/image_raw"}


SIM_VLM_SERVER = "sim_vlm_server"  # hamster_sim.vlm_server's node name


def sim_vlm_server_spec(vlm_parameter_files):
    """The NodeSpec that runs this server where the VLM node's `openai.base_url` and `openai.model` (from its
    parameter files, later files winning) say the server is."""
    import inspect

    import yaml

    from hamster_vlm_node.backends.openai_compatible import OpenAICompatibleBackend

    defaults = inspect.signature(OpenAICompatibleBackend).parameters
    base_url, model = defaults["base_url"].default, defaults["model"].default
    for path in vlm_parameter_files:
        document = yaml.safe_load(Path(path).read_text()) or {}
        section = ((document.get("hamster_vlm_node") or {}).get("ros__parameters") or {})
        openai = section.get("openai") or {}
        base_url = openai.get("base_url", section.get("openai.base_url", base_url))
        model = openai.get("model", section.get("openai.model", model))
    url = urlsplit(base_url)
    if url.scheme != "http" or url.hostname not in ("127.0.0.1", "localhost") or url.path.strip("/"):
        raise ValueError(f"the simulator's VLM server runs on this machine, plain http, without a path prefix; "
                         f"openai.base_url is {base_url!r}")
    port = url.port or 80
    return NodeSpec(SIM_VLM_SERVER, SIM_VLM_SERVER, "hamster_sim.vlm_server",
                    parameters={"host": "127.0.0.1", "port": port, "model": model})
