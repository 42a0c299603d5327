"""Messages -> the policies' Observation, in one place: policy_node calls it on the messages it receives and
the demonstration loader (hamster_bag.demonstration_dataset) on the same messages read back from a bag, so training
samples and live inputs go through identical conversions (test/bag/test_demonstrations.py pins the parity).

Works on rclpy messages and on the dataclasses rosbags deserializes alike (the conversions read attributes).
"""
from __future__ import annotations

from hamster_core.franka import gripper_opening
from hamster_core.geometry import Pose
from hamster_core.policies.base import Observation
from hamster_ros.conversions import (camera_from_msg, masks_from_msg, path_from_msg, pointcloud2_to_numpy,
                                     pose_from_msg, stamp_to_seconds)


def gripper_width_from_joints(msg, joint_names) -> float | None:
    """The gripper opening from a JointState (hamster_core.franka.gripper_opening: one finger joint counts twice),
    None when it has none of the named joints."""
    return gripper_opening(dict(zip(msg.name, [float(p) for p in msg.position])), joint_names)


def observation_from_messages(*, instruction: str, cloud, tcp_pose, gripper_width: float, camera_info=None,
                              camera_pose=None, path=None, masks=None) -> Observation:
    """cloud: PointCloud2 (base frame); tcp_pose: core Pose or PoseStamped; camera_info + camera_pose
    (PoseStamped, optical frame in base): the camera, else None; path: Path2D message or None; masks:
    GroundingMasks message or None. Stamped with the cloud. Raises ConversionError / PathError / ValueError
    on malformed messages."""
    points, colors = pointcloud2_to_numpy(cloud)
    camera = None
    if camera_info is not None and camera_pose is not None:
        camera = camera_from_msg(camera_info, pose_from_msg(camera_pose).matrix())
    if not isinstance(tcp_pose, Pose):
        tcp_pose = pose_from_msg(tcp_pose)
    return Observation(stamp=stamp_to_seconds(cloud.header.stamp), instruction=instruction, tcp_pose=tcp_pose,
                       gripper_width=float(gripper_width), points=points, colors=colors, camera=camera,
                       path=path_from_msg(path) if path is not None else None,
                       masks=masks_from_msg(masks) if masks is not None else {})
