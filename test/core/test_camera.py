"""Pinhole camera: projection and back-projection are inverses; bad intrinsics/extrinsics are refused."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from hamster_core.camera import PinholeCamera, look_at

CAMERA = PinholeCamera.from_fovy(640, 480, 45, look_at([1.2, 0.3, 0.8], [0.5, 0.0, 0.0]))


@settings(max_examples=300, deadline=None)
@given(st.floats(0.2, 0.8), st.floats(-0.4, 0.4), st.floats(0.0, 0.4))
def test_project_then_backproject_returns_the_point(x, y, z):
    point = np.array([[x, y, z]])
    pixels, depth = CAMERA.project(point)
    assert depth[0] > 0
    np.testing.assert_allclose(CAMERA.backproject(pixels, depth), point, atol=1e-9)


def test_depth_image_backprojects_onto_a_plane():
    """A synthetic depth image of the z = 0 plane lifts back onto z = 0 (pixel centres at +0.5)."""
    v, u = np.mgrid[0:480, 0:640]
    rays = np.stack([(u + 0.5 - CAMERA.cx) / CAMERA.fx, (v + 0.5 - CAMERA.cy) / CAMERA.fy, np.ones_like(u, float)],
                    axis=-1) @ CAMERA.base_from_camera[:3, :3].T
    depth = -CAMERA.base_from_camera[2, 3] / rays[..., 2]
    depth[:10] = 0.0                          # invalid pixels
    points = CAMERA.depth_to_points(depth)
    assert np.all(np.isnan(points[:10]))
    np.testing.assert_allclose(points[10:, :, 2], 0.0, atol=1e-9)


def test_look_at_points_the_optical_axis_at_the_target():
    pixels, depth = CAMERA.project(np.array([[0.5, 0.0, 0.0]]))
    np.testing.assert_allclose(pixels[0], [CAMERA.cx, CAMERA.cy], atol=1e-9)
    # Image "up" is world up: a point above the target appears higher in the image (smaller v).
    above, _ = CAMERA.project(np.array([[0.5, 0.0, 0.2]]))
    assert above[0, 1] < pixels[0, 1]


def test_normalize_and_to_pixels_are_inverse():
    pixels = np.array([[0.0, 0.0], [320.0, 240.0], [640.0, 480.0]])
    np.testing.assert_allclose(CAMERA.normalize(pixels), [[0, 0], [0.5, 0.5], [1, 1]])
    np.testing.assert_allclose(CAMERA.to_pixels(CAMERA.normalize(pixels)), pixels)


@pytest.mark.parametrize("kwargs,message", [
    (dict(width=0), "image size"), (dict(fx=-1.0), "fx"), (dict(cy=float("nan")), "principal point"),
    (dict(base_from_camera=np.diag([1.0, 1.0, -1.0, 1.0])), "rotation"),
    (dict(base_from_camera=np.eye(3)), "4x4"),
])
def test_invalid_camera_raises(kwargs, message):
    values = dict(width=640, height=480, fx=500.0, fy=500.0, cx=320.0, cy=240.0, base_from_camera=np.eye(4))
    values.update(kwargs)
    with pytest.raises(ValueError, match=message):
        PinholeCamera(**values)


def test_look_at_rejects_degenerate_views():
    with pytest.raises(ValueError, match="coincide"):
        look_at([1, 0, 0], [1, 0, 0])
    with pytest.raises(ValueError, match="parallel"):
        look_at([0, 0, 1], [0, 0, 0])
