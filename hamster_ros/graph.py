"""The one description of the runtime's node graph.

`describe_graph(...)` says which executables run, with which parameter files, overrides and remaps, for a
choice of launch arguments. `launch/hamster.launch.py` turns it into launch_ros Nodes for ROS users; the
project's own runner (`hamster_ros.runner`) starts the same graph as processes where `ros2 launch` is not
installed. Plain Python: no rclpy, so it is tested without a ROS graph.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

PACKAGE = "hamster_runtime"


def default_config_dir() -> Path:
    """The repository's config/ in a source or editable install, else the installed share folder."""
    source = Path(__file__).resolve().parent.parent / "config"
    if source.is_dir():
        return source
    from ament_index_python.packages import get_package_share_directory
    return Path(get_package_share_directory(PACKAGE)) / "config"


CONFIG_DIR = default_config_dir()
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
        raise ValueError(f"unknown {kind} {value!r}; known: {', '.join(known)}")
    return value


def describe_graph(policy: str = "path_follower", vlm_backend: str = "oracle",
                   perception_backend: str = "sim_ground_truth", robot: str = "sim",
                   config_dir: Path | str | None = None, use_sim_time: bool | None = None,
                   seed: int | None = None, params_files: tuple[str, ...] = ()) -> list[NodeSpec]:
    """Nodes, parameters and remaps for one set of launch arguments. Raises ValueError on a bad choice.

    `params_files` are the user's own ROS parameter files (e.g. a VLM server's address), loaded after the
    project's files so they win; each node reads its own section."""
    from hamster_core.policies.base import POLICIES
    from hamster_vlm_node.backends.base import VLM_BACKENDS
    from perception_node.backends.base import PERCEPTION_BACKENDS

    _choices("robot", robot, list(ROBOTS))
    _choices("policy", policy, POLICIES.names())
    _choices("VLM backend", vlm_backend, VLM_BACKENDS.names())
    _choices("perception backend", perception_backend, PERCEPTION_BACKENDS.names())
    if robot != "sim" and (vlm_backend == "oracle" or perception_backend == "sim_ground_truth"):
        raise ValueError(f"vlm_backend:={vlm_backend} perception_backend:={perception_backend} read the "
                         f"simulator's ground truth: use real backends with robot:={robot}")

    config = Path(config_dir) if config_dir else CONFIG_DIR
    files = {name: str(config / f"{name}.yaml") for name in ("runtime", robot)}
    user_files = tuple(str(Path(path).resolve()) for path in params_files)
    for path in (*files.values(), *user_files):
        if not Path(path).is_file():
            raise ValueError(f"parameter file {path} does not exist")
    sim_time = robot == "sim" if use_sim_time is None else use_sim_time
    common = {"use_sim_time": sim_time}
    robot_remaps = ()
    if robot == "franka":
        robot_remaps = _remappings(config / "franka_remappings.yaml")

    nodes = []
    if robot == "sim":
        sim_parameters = {} if seed is None else {"seed": int(seed)}
        nodes.append(NodeSpec("sim_node", "sim_node", "hamster_sim.sim_node", (files["sim"], *user_files),
                              sim_parameters))
    nodes += [
        NodeSpec("hamster_vlm_node", "hamster_vlm_node", "hamster_vlm_node.node", (files["runtime"], *user_files),
                 {**common, "backend": vlm_backend}, robot_remaps),
        NodeSpec("perception_node", "perception_node", "perception_node.node", (files["runtime"], *user_files),
                 {**common, "backend": perception_backend}, robot_remaps),
        NodeSpec("policy_node", "policy_node", "policy_node.node", (files["runtime"], files[robot], *user_files),
                 {**common, "policy": policy}, robot_remaps),
    ]
    return nodes


def _remappings(path: Path) -> tuple[tuple[str, str], ...]:
    import yaml
    remaps = yaml.safe_load(path.read_text()) or {}
    if not isinstance(remaps, dict):
        raise ValueError(f"{path} must map runtime topics to robot topics")
    return tuple((str(k), str(v)) for k, v in remaps.items())
