"""rviz markers built without a graph."""
import numpy as np
import pytest
from std_msgs.msg import Header
from visualization_msgs.msg import Marker

from hamster_core.camera import PinholeCamera, look_at
from hamster_core.executor import Keyframe
from hamster_core.geometry import Pose, top_down_orientation
from hamster_core.path2d import GripperState, Path2D
from hamster_ros import markers


def test_plan_markers_hold_path_targets_keyframes_and_workspace():
    header = Header(frame_id="base")
    keyframes = [Keyframe(Pose([0.5, 0, 0.2], top_down_orientation(0))),
                 Keyframe(Pose([0.5, 0, 0.05], top_down_orientation(0)), GripperState.CLOSED),
                 Keyframe(Pose([0.4, 0.2, 0.15], top_down_orientation(0)), GripperState.OPEN)]
    lifted = np.array([[0.5, 0, 0.05], [np.nan] * 3, [0.4, 0.2, 0.1]])
    array = markers.plan_markers(header, keyframes, (0.2, -0.45, 0.02), (0.8, 0.45, 0.6), lifted, np.array([0, 1, 0]))
    by_id = {m.id: m for m in array.markers if m.action == Marker.ADD}
    assert array.markers[0].action == Marker.DELETEALL
    path = by_id[markers.PATH_ID]
    assert path.type == Marker.LINE_STRIP and len(path.points) == 2 and len(path.colors) == 2  # NaN point dropped
    grasp, place = by_id[markers.GRASP_ID], by_id[markers.PLACE_ID]
    assert (grasp.points[1].x, grasp.points[1].z) == pytest.approx((0.5, 0.05))
    assert grasp.points[0].z == pytest.approx(0.05 + 0.08)  # top-down: the arrow comes from above
    assert (place.points[1].x, place.points[1].y) == pytest.approx((0.4, 0.2))
    assert len(by_id[markers.KEYFRAMES_ID].points) == 3
    box = by_id[markers.WORKSPACE_ID]
    assert (box.scale.x, box.scale.y, box.scale.z) == pytest.approx((0.6, 0.9, 0.58))
    assert (box.pose.position.x, box.pose.position.z) == pytest.approx((0.5, 0.31))
    assert all(m.header.frame_id == "base" for m in array.markers)
    with pytest.raises(ValueError, match="min < max"):
        markers.workspace_marker(header, (1, 0, 0), (0, 1, 1))


def test_lift_path_and_current_target():
    camera = PinholeCamera.from_fovy(64, 48, 60, look_at([0.5, 0, 1.0], [0.5, 0, 0], up=(1, 0, 0)))
    xs, ys = np.meshgrid(np.linspace(0.2, 0.8, 60), np.linspace(-0.3, 0.3, 60))
    table = np.stack([xs.ravel(), ys.ravel(), np.full(xs.size, 0.02)], axis=1)
    path = Path2D([[0.5, 0.5], [0.25, 0.5]], [0, 1])
    lifted, found = markers.lift_path(path, camera, table)
    assert found.all() and lifted[:, 2] == pytest.approx([0.02, 0.02])
    assert lifted[0, :2] == pytest.approx([0.5, 0.0], abs=0.02)
    array = markers.current_target_markers(Header(frame_id="base"), Pose([0.5, 0, 0.3], [1, 0, 0, 0]))
    assert array.markers[0].id == markers.TARGET_ID and array.markers[0].points[1].z == pytest.approx(0.3)


def test_marker_gripper_colours_agree_with_the_overlay_rings():
    from hamster_core.drawing import GRIPPER_RING_COLORS

    def dominant(rgb):
        return int(np.argmax(rgb))
    assert dominant(GRIPPER_RING_COLORS[GripperState.OPEN]) == 0 and dominant(GRIPPER_RING_COLORS[GripperState.CLOSED]) == 2
    header = Header(frame_id="base")
    keyframes = [Keyframe(Pose([0.5, 0, 0.05], top_down_orientation(0)), GripperState.CLOSED),
                 Keyframe(Pose([0.4, 0.2, 0.15], top_down_orientation(0)), GripperState.OPEN)]
    lifted = np.array([[0.5, 0, 0.05], [0.45, 0.1, 0.15], [0.4, 0.2, 0.1]])
    gripper = np.array([GripperState.OPEN, GripperState.CLOSED, GripperState.OPEN])
    array = markers.plan_markers(header, keyframes, (0.2, -0.45, 0.02), (0.8, 0.45, 0.6), lifted, gripper)
    by_id = {m.id: m for m in array.markers if m.action == Marker.ADD}
    assert [dominant((c.r, c.g, c.b)) for c in by_id[markers.PATH_ID].colors] == \
        [dominant(GRIPPER_RING_COLORS[GripperState(g)]) for g in gripper]
    grasp, place = by_id[markers.GRASP_ID].color, by_id[markers.PLACE_ID].color
    assert dominant((grasp.r, grasp.g, grasp.b)) == 2 and dominant((place.r, place.g, place.b)) == 0
