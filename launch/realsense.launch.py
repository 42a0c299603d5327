"""ros2 launch hamster_runtime realsense.launch.py [camera_namespace:=camera] [camera_name:=camera]
[width:=640] [height:=480] [fps:=30] [serial_no:=...]

Starts realsense2_camera's rs_launch.py the way the runtime reads the camera (hamster_apps.graph.
realsense_launch_arguments: aligned depth, synced frames, no driver cloud). The topics land under
/<camera_namespace>/<camera_name>/...; with other names than camera/camera, change config/franka_remappings.yaml
to match (hamster_apps.graph.realsense_topics gives the mapping).
"""
from pathlib import Path

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription, OpaqueFunction
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration

from hamster_apps.graph import realsense_launch_arguments

ARGUMENTS = {"camera_namespace": "camera", "camera_name": "camera", "width": "640", "height": "480", "fps": "30",
             "serial_no": ""}


def _include(context):
    value = {name: LaunchConfiguration(name).perform(context) for name in ARGUMENTS}
    arguments = realsense_launch_arguments(value["camera_namespace"], value["camera_name"], int(value["width"]),
                                           int(value["height"]), int(value["fps"]), value["serial_no"])
    rs_launch = Path(get_package_share_directory("realsense2_camera")) / "launch" / "rs_launch.py"
    return [IncludeLaunchDescription(PythonLaunchDescriptionSource(str(rs_launch)),
                                     launch_arguments=list(arguments.items()))]


def generate_launch_description():
    return LaunchDescription([DeclareLaunchArgument(name, default_value=default) for name, default in ARGUMENTS.items()]
                             + [OpaqueFunction(function=_include)])
