"""ros2 launch hamster_runtime hamster.launch.py [policy:=...] [vlm_backend:=...] [perception_backend:=...]
[robot:=sim|franka] [seed:=N] [params_file:=YAML] [rviz:=true] [franka_sim:=true] [calibration:=YAML]
[random_weights:=true]

policy:=rvt2 / policy:=3dda load the checkpoints shipped in checkpoints/<policy> (config/runtime.yaml); without a
checkpoint they refuse to start unless random_weights:=true, which only the simulator accepts.

A thin layer over hamster_apps.graph.describe_graph, the same description the project's runner starts.
`rviz:=true` also opens rviz2 with config/hamster.rviz (monitoring only; not part of the graph).
"""
from pathlib import Path

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from hamster_apps.graph import describe_graph
from hamster_ros.package_files import PACKAGE

ARGUMENTS = {
    "policy": ("path_follower", "low-level policy"),
    "vlm_backend": ("oracle", "VLM backend for the 2D path"),
    "perception_backend": ("sim_ground_truth", "detection/tracking/segmentation backend"),
    "robot": ("sim", "sim (MuJoCo FR3) or franka (franka_ros2)"),
    "seed": ("0", "first simulated scene"),
    "params_file": ("", "your own ROS parameter file, loaded after the project's (optional)"),
    "franka_sim": ("false", "robot:=franka against the simulator's franka interface instead of a robot"),
    "calibration": ("", "robot:=franka: camera-to-base calibration YAML (default config/calibration.yaml)"),
    "random_weights": ("false", "simulator only: run a learned policy without a checkpoint (meaningless actions)"),
}
# Launch-only arguments: tools beside the graph, not options of describe_graph / hamster-run.
LAUNCH_ONLY = {
    "rviz": ("false", "also start rviz2 with config/hamster.rviz"),
}


def _nodes(context):
    value = {name: LaunchConfiguration(name).perform(context) for name in ARGUMENTS}
    specs = describe_graph(value["policy"], value["vlm_backend"], value["perception_backend"], value["robot"],
                           config_dir=Path(get_package_share_directory(PACKAGE)) / "config",
                           seed=int(value["seed"]),
                           params_files=(value["params_file"],) if value["params_file"] else (),
                           franka_sim=value["franka_sim"].lower() in ("true", "1", "yes"),
                           calibration=value["calibration"] or None,
                           random_weights=value["random_weights"].lower() in ("true", "1", "yes"))
    nodes = [Node(package=PACKAGE, executable=spec.executable, name=spec.name, output="screen",
                  parameters=[*spec.parameter_files, spec.parameters], remappings=list(spec.remappings))
             for spec in specs]
    rviz_config = Path(get_package_share_directory(PACKAGE)) / "config" / "hamster.rviz"
    nodes.append(Node(package="rviz2", executable="rviz2", name="rviz2", output="screen",
                      arguments=["-d", str(rviz_config)],
                      parameters=[{"use_sim_time": any(spec.parameters.get("use_sim_time") for spec in specs)}],
                      condition=IfCondition(LaunchConfiguration("rviz"))))
    return nodes


def generate_launch_description():
    return LaunchDescription(
        [DeclareLaunchArgument(name, default_value=default, description=text)
         for name, (default, text) in {**ARGUMENTS, **LAUNCH_ONLY}.items()] + [OpaqueFunction(function=_nodes)])
