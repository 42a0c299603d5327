"""hamster_core.transforms: static and dynamic links, chains through a common ancestor, interpolation at a
time, and errors that name the frames."""
import math

import numpy as np
import pytest

from hamster_core.geometry import quaternion_to_matrix
from hamster_core.transforms import TransformBuffer, TransformError, transform_matrix

IDENTITY_Q = [0.0, 0.0, 0.0, 1.0]


def yaw(degrees: float) -> list[float]:
    half = math.radians(degrees) / 2
    return [0.0, 0.0, math.sin(half), math.cos(half)]


def test_a_static_chain_composes_and_inverts():
    buffer = TransformBuffer()
    buffer.add_static("base", "camera_link", [1.0, 0.0, 0.5], yaw(90))
    buffer.add_static("camera_link", "camera_color_frame", [0.0, 0.015, 0.0], IDENTITY_Q)
    buffer.add_static("base", "table", [0.5, 0.0, 0.0], IDENTITY_Q)
    matrix, dynamic = buffer.lookup("base", "camera_color_frame")
    assert not dynamic
    # (0, 0.015, 0) in camera_link, rotated 90 degrees about z: (-0.015, 0, 0), then + (1, 0, 0.5).
    assert matrix[:3, 3] == pytest.approx([0.985, 0.0, 0.5])
    # Through the common ancestor "base": table <- camera_color_frame.
    table_from_color, _ = buffer.lookup("table", "camera_color_frame")
    assert table_from_color[:3, 3] == pytest.approx([0.485, 0.0, 0.5])
    inverse, _ = buffer.lookup("camera_color_frame", "base")
    assert inverse @ matrix == pytest.approx(np.eye(4))
    assert buffer.lookup("base", "base")[0] == pytest.approx(np.eye(4))


def test_dynamic_links_interpolate_at_the_lookup_time():
    buffer = TransformBuffer(max_extrapolation_ns=10)
    buffer.add_static("world", "base", [0, 0, 0], IDENTITY_Q)
    buffer.add("base", "tool", 2_000, [1.0, 0.0, 0.0], yaw(90))
    buffer.add("base", "tool", 1_000, [0.0, 0.0, 0.0], IDENTITY_Q)          # out of order is fine
    matrix, dynamic = buffer.lookup("world", "tool", 1_500)
    assert dynamic
    assert matrix[:3, 3] == pytest.approx([0.5, 0.0, 0.0])
    assert matrix[:3, :3] == pytest.approx(quaternion_to_matrix(yaw(45)))   # slerp half way
    assert buffer.lookup("world", "tool", 2_005)[0][:3, 3] == pytest.approx([1.0, 0, 0])  # within tolerance
    with pytest.raises(TransformError, match="not at 2100 ns"):
        buffer.lookup("world", "tool", 2_100)
    with pytest.raises(TransformError, match="lookup time is needed"):
        buffer.lookup("world", "tool")


def test_missing_and_disconnected_frames_are_named():
    buffer = TransformBuffer()
    buffer.add_static("fr3_link0", "camera_link", [1, 0, 0], IDENTITY_Q)
    buffer.add_static("camera_link", "camera_color_optical_frame", [0, 0, 0], IDENTITY_Q)
    buffer.add_static("base", "fr3_hand", [0, 0, 0], IDENTITY_Q)
    with pytest.raises(TransformError, match="'world'.*known frames: base, camera_color_optical_frame"):
        buffer.lookup("world", "camera_color_optical_frame")
    with pytest.raises(TransformError, match="not connected.*camera_color_optical_frame -> camera_link -> fr3_link0"):
        buffer.lookup("base", "camera_color_optical_frame")


def test_bad_transforms_are_refused():
    buffer = TransformBuffer()
    buffer.add_static("a", "b", [0, 0, 0], IDENTITY_Q)
    with pytest.raises(ValueError, match="already has parent 'a'"):
        buffer.add_static("c", "b", [0, 0, 0], IDENTITY_Q)
    with pytest.raises(ValueError, match="is static"):
        buffer.add("a", "b", 5, [0, 0, 0], IDENTITY_Q)
    with pytest.raises(ValueError, match="unit quaternion"):
        buffer.add_static("a", "d", [0, 0, 0], [0, 0, 0, 2])
    with pytest.raises(ValueError, match="two different named frames"):
        buffer.add_static("a", "a", [0, 0, 0], IDENTITY_Q)
    with pytest.raises(ValueError, match="max_extrapolation_ns"):
        TransformBuffer(max_extrapolation_ns=-1)
    assert transform_matrix([1, 2, 3], IDENTITY_Q)[:3, 3] == pytest.approx([1, 2, 3])
