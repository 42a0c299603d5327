"""The scripted pick-and-place expert, computed from the scene description alone (no simulator needed)."""
from __future__ import annotations

import math

import numpy as np

from hamster_core.geometry import Pose, top_down_orientation
from hamster_core.path2d import GripperState
from hamster_sim.scene import CONTAINER_BASE_THICKNESS, ObjectSpec, SceneDescription



def grasp_yaw(obj: ObjectSpec) -> float:
    """Hand yaw about the base z axis (relative to TOP_DOWN) so the fingers close across two opposite faces.

    A cube looks the same every quarter turn, so the yaw is folded into [-pi/4, pi/4) to keep the wrist near
    its middle; a cylinder needs no yaw.
    """
    if obj.shape == "cylinder":
        return 0.0
    return (obj.yaw + math.pi / 4) % (math.pi / 2) - math.pi / 4


def grasp_height(obj: ObjectSpec, grasp_depth: float) -> float:
    """TCP height for the grasp: at the object's centre, or higher for tall objects so the palm stays clear."""
    top = obj.position[2] + obj.half_height
    return max(obj.position[2], top - grasp_depth)


def expert_keyframes(scene: SceneDescription, start: Pose, *, approach_height: float = 0.10,
                     lift_height: float = 0.15, release_height: float = 0.08,
                     grasp_depth: float = 0.025) -> list[tuple[Pose, int]]:
    """TCP keyframes of a top-down pick of scene.target and place into scene.container.

    Each entry is (pose, gripper state once the pose is reached: 0 open, 1 closed):
    start, above the target, grasp (close), lift, above the container, release (open), retreat.

    approach_height: how far above the grasp the hand comes down vertically from.
    lift_height: TCP height above the grasp height while carrying; objects must clear the container walls.
    release_height: TCP height above the container floor when opening; raised when needed so the held object's
        bottom never reaches the floor.
    grasp_depth: how far below the object's top the fingers close on tall objects.
    """
    for name, value in (("approach_height", approach_height), ("lift_height", lift_height),
                        ("release_height", release_height), ("grasp_depth", grasp_depth)):
        if not math.isfinite(value) or value <= 0:
            raise ValueError(f"{name} must be a positive number of metres, got {value!r}")
    obj = scene.target_object
    container = scene.target_container
    orientation = top_down_orientation(grasp_yaw(obj))

    x, y, _ = obj.position
    grasp_z = grasp_height(obj, grasp_depth)
    carry_z = grasp_z + lift_height
    # How far the held object's bottom hangs below the TCP, plus 1 cm so it is dropped, not pressed in.
    hang = grasp_z - (obj.position[2] - obj.half_height) + 0.01
    floor_z = scene.table_height + CONTAINER_BASE_THICKNESS
    release_z = floor_z + max(release_height, hang)
    cx, cy = container.position

    def pose(px: float, py: float, pz: float) -> Pose:
        return Pose(np.array([px, py, pz]), orientation)

    return [
        (start, GripperState.OPEN),
        (pose(x, y, grasp_z + approach_height), GripperState.OPEN),
        (pose(x, y, grasp_z), GripperState.CLOSED),
        (pose(x, y, carry_z), GripperState.CLOSED),
        (pose(cx, cy, max(carry_z, release_z)), GripperState.CLOSED),
        (pose(cx, cy, release_z), GripperState.OPEN),
        (pose(cx, cy, max(carry_z, release_z)), GripperState.OPEN),
    ]
