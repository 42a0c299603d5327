"""rviz markers of a plan, built as plain messages (no node): the 2D path lifted to 3D, the grasp and place
targets, the executor's current target and the workspace box. policy_node only publishes them.

Gripper colours are the path overlay's (hamster_core.drawing.GRIPPER_RING_COLORS, HAMSTER's drawing), lightened to
stand out on rviz's dark background: red where the gripper is open (and the place arrow, where it opens), blue
where it is closed (and the grasp arrow, where it closes)."""
from __future__ import annotations

import numpy as np
from geometry_msgs.msg import Point
from std_msgs.msg import ColorRGBA, Header
from visualization_msgs.msg import Marker, MarkerArray

from hamster_core.camera import PinholeCamera
from hamster_core.drawing import GRIPPER_RING_COLORS
from hamster_core.executor import Keyframe
from hamster_core.geometry import Pose
from hamster_core.lifting import LIFT_HOLE_RADIUS_PX, ProjectedCloud
from hamster_core.path2d import GripperState, Path2D

NAMESPACE = "hamster"
PATH_ID, GRASP_ID, PLACE_ID, KEYFRAMES_ID, WORKSPACE_ID, TARGET_ID = range(6)


def _colour(r, g, b, a=1.0) -> ColorRGBA:
    return ColorRGBA(r=float(r), g=float(g), b=float(b), a=float(a))


def gripper_colour(state: GripperState) -> ColorRGBA:
    """The overlay's ring colour for `state` (red open, blue closed), lightened: 0.2 + 0.8 * rgb."""
    r, g, b = (0.2 + 0.8 * channel / 255.0 for channel in GRIPPER_RING_COLORS[GripperState(state)])
    return _colour(r, g, b)


def _point(xyz) -> Point:
    return Point(x=float(xyz[0]), y=float(xyz[1]), z=float(xyz[2]))


def _marker(header: Header, marker_id: int, kind: int, scale, colour: ColorRGBA) -> Marker:
    marker = Marker(header=header, ns=NAMESPACE, id=marker_id, type=kind, action=Marker.ADD, color=colour)
    marker.scale.x, marker.scale.y, marker.scale.z = (float(v) for v in scale)
    marker.pose.orientation.w = 1.0
    return marker


def lift_path(path: Path2D, camera: PinholeCamera, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """3D points of the path's pixels in the cloud (holes filled from nearby pixels); (points, found)."""
    return ProjectedCloud(points, camera).lift(path.to_pixels(camera.width, camera.height), LIFT_HOLE_RADIUS_PX)


def path_marker(header: Header, lifted: np.ndarray, gripper: np.ndarray) -> Marker:
    """LINE_STRIP through the lifted path points in the gripper's colour: red where it is open, blue where closed."""
    marker = _marker(header, PATH_ID, Marker.LINE_STRIP, (0.006, 0.0, 0.0), _colour(1, 1, 1))
    found = np.all(np.isfinite(lifted), axis=1)
    marker.points = [_point(p) for p in lifted[found]]
    marker.colors = [gripper_colour(g) for g in np.asarray(gripper)[found]]
    return marker


def target_marker(header: Header, marker_id: int, pose: Pose, colour: ColorRGBA, length: float = 0.08) -> Marker:
    """An ARROW along the gripper's approach axis (its z axis), ending at the pose."""
    marker = _marker(header, marker_id, Marker.ARROW, (0.008, 0.016, 0.02), colour)
    approach = pose.matrix()[:3, 2]
    marker.points = [_point(pose.position - length * approach), _point(pose.position)]
    return marker


def workspace_marker(header: Header, workspace_min, workspace_max) -> Marker:
    """A translucent CUBE covering the executor's workspace box."""
    low, high = np.asarray(workspace_min, float), np.asarray(workspace_max, float)
    if low.shape != (3,) or high.shape != (3,) or np.any(low >= high):
        raise ValueError(f"workspace box must be 3 + 3 numbers with min < max, got {workspace_min}, {workspace_max}")
    marker = _marker(header, WORKSPACE_ID, Marker.CUBE, high - low, _colour(0.3, 0.5, 1.0, 0.12))
    marker.pose.position = _point((low + high) / 2)
    return marker


def plan_markers(header: Header, keyframes: list[Keyframe], workspace_min, workspace_max,
                 lifted_path: np.ndarray | None = None, path_gripper: np.ndarray | None = None) -> MarkerArray:
    """Everything about a new plan: path (when lifted), grasp (first CLOSED keyframe, blue) and place (first OPEN
    after it, red) arrows, all keyframes as spheres, the workspace box. DELETEALL first clears the previous plan."""
    markers = [Marker(header=header, ns=NAMESPACE, action=Marker.DELETEALL)]
    if lifted_path is not None and path_gripper is not None:
        markers.append(path_marker(header, lifted_path, path_gripper))
    closes = [i for i, k in enumerate(keyframes) if k.gripper == GripperState.CLOSED]
    if closes:
        markers.append(target_marker(header, GRASP_ID, keyframes[closes[0]].pose,
                                       gripper_colour(GripperState.CLOSED)))
        place = next((k for k in keyframes[closes[0] + 1:] if k.gripper == GripperState.OPEN), None)
        if place is not None:
            markers.append(target_marker(header, PLACE_ID, place.pose, gripper_colour(GripperState.OPEN)))
    spheres = _marker(header, KEYFRAMES_ID, Marker.SPHERE_LIST, (0.015, 0.015, 0.015), _colour(1, 0.8, 0.1))
    spheres.points = [_point(k.pose.position) for k in keyframes]
    markers += [spheres, workspace_marker(header, workspace_min, workspace_max)]
    return MarkerArray(markers=markers)


def current_target_markers(header: Header, target: Pose) -> MarkerArray:
    """The executor's current commanded pose (refreshed at 1-2 Hz)."""
    return MarkerArray(markers=[target_marker(header, TARGET_ID, target, _colour(1, 1, 0.1), length=0.05)])
