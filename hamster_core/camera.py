"""Pinhole camera model with its pose in the robot base frame.

The camera frame is the ROS optical frame: x right, y down, z forward (into the scene). Pixel (u, v) has u
along the image width and v along the height, with (0, 0) the top-left corner of the top-left pixel, so the
centre of pixel (i, j) is (j + 0.5, i + 0.5).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np



def check_rigid_transform(matrix, name: str) -> np.ndarray:
    """A finite 4x4 homogeneous transform whose rotation is proper (orthonormal, det +1); ValueError otherwise."""
    transform = np.asarray(matrix, dtype=float)
    if transform.shape != (4, 4) or not np.all(np.isfinite(transform)):
        raise ValueError(f"{name} must be a finite 4x4 matrix, got {matrix!r}")
    rotation = transform[:3, :3]
    if not np.allclose(rotation @ rotation.T, np.eye(3), atol=1e-5) or np.linalg.det(rotation) < 0:
        raise ValueError(f"{name}'s rotation is not a proper rotation")
    return transform

@dataclass(frozen=True)
class PinholeCamera:
    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float
    base_from_camera: np.ndarray = field(default_factory=lambda: np.eye(4))

    def __post_init__(self):
        if int(self.width) <= 0 or int(self.height) <= 0:
            raise ValueError(f"image size must be positive, got {self.width}x{self.height}")
        for name in ("fx", "fy"):
            value = getattr(self, name)
            if not np.isfinite(value) or value <= 0:
                raise ValueError(f"{name} must be a positive focal length in pixels, got {value}")
        if not (np.isfinite(self.cx) and np.isfinite(self.cy)):
            raise ValueError(f"principal point must be finite, got ({self.cx}, {self.cy})")
        transform = check_rigid_transform(self.base_from_camera, "base_from_camera")
        object.__setattr__(self, "width", int(self.width))
        object.__setattr__(self, "height", int(self.height))
        object.__setattr__(self, "base_from_camera", transform)

    @classmethod
    def from_fovy(cls, width: int, height: int, fovy_deg: float, base_from_camera=None) -> "PinholeCamera":
        """Square pixels with the given vertical field of view (MuJoCo's camera convention)."""
        if not 0 < fovy_deg < 180:
            raise ValueError(f"fovy_deg must be in (0, 180), got {fovy_deg}")
        f = 0.5 * height / np.tan(np.radians(fovy_deg) / 2)
        return cls(width, height, f, f, width / 2, height / 2,
                   np.eye(4) if base_from_camera is None else base_from_camera)

    @property
    def K(self) -> np.ndarray:
        return np.array([[self.fx, 0, self.cx], [0, self.fy, self.cy], [0, 0, 1.0]])

    @property
    def camera_from_base(self) -> np.ndarray:
        inverse = np.eye(4)
        rotation = self.base_from_camera[:3, :3]
        inverse[:3, :3] = rotation.T
        inverse[:3, 3] = -rotation.T @ self.base_from_camera[:3, 3]
        return inverse

    def project(self, points_base) -> tuple[np.ndarray, np.ndarray]:
        """Base-frame points (N, 3) -> pixels (N, 2) and depth along the optical axis (N,).

        Points behind the camera get depth <= 0; their pixels are meaningless and callers must mask them.
        """
        points = np.asarray(points_base, dtype=float).reshape(-1, 3)
        in_camera = points @ self.camera_from_base[:3, :3].T + self.camera_from_base[:3, 3]
        depth = in_camera[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            u = self.fx * in_camera[:, 0] / depth + self.cx
            v = self.fy * in_camera[:, 1] / depth + self.cy
        return np.stack([u, v], axis=1), depth

    def backproject(self, pixels, depth) -> np.ndarray:
        """Pixels (N, 2) with depth along the optical axis (N,) -> base-frame points (N, 3)."""
        pixels = np.asarray(pixels, dtype=float).reshape(-1, 2)
        depth = np.asarray(depth, dtype=float).reshape(-1)
        x = (pixels[:, 0] - self.cx) / self.fx * depth
        y = (pixels[:, 1] - self.cy) / self.fy * depth
        in_camera = np.stack([x, y, depth], axis=1)
        return in_camera @ self.base_from_camera[:3, :3].T + self.base_from_camera[:3, 3]

    def depth_to_points(self, depth_image) -> np.ndarray:
        """Depth image (H, W) in metres -> (H, W, 3) base-frame points; NaN where depth is 0 or not finite."""
        depth = np.asarray(depth_image, dtype=np.float64)
        if depth.shape != (self.height, self.width):
            raise ValueError(f"depth image is {depth.shape}, camera is {self.height}x{self.width}")
        v, u = np.mgrid[0:self.height, 0:self.width]
        pixels = np.stack([u.ravel() + 0.5, v.ravel() + 0.5], axis=1)
        valid = np.isfinite(depth) & (depth > 0)
        points = self.backproject(pixels, np.where(valid, depth, np.nan).ravel())
        return points.reshape(self.height, self.width, 3)

    def normalize(self, pixels) -> np.ndarray:
        """Pixels -> normalized image coordinates in [0, 1] (x along width, y along height)."""
        return np.asarray(pixels, dtype=float) / np.array([self.width, self.height])

    def to_pixels(self, normalized) -> np.ndarray:
        return np.asarray(normalized, dtype=float) * np.array([self.width, self.height])


def look_at(eye, target, up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """base_from_camera for an optical frame at `eye` looking at `target`, image "up" toward `up`."""
    eye, target = np.asarray(eye, dtype=float), np.asarray(target, dtype=float)
    forward = target - eye
    if np.linalg.norm(forward) < 1e-9:
        raise ValueError(f"eye and target coincide at {eye.tolist()}")
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, up)
    if np.linalg.norm(right) < 1e-9:
        raise ValueError(f"viewing direction {forward.tolist()} is parallel to up {list(up)}")
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    transform = np.eye(4)
    transform[:3, :3] = np.stack([right, down, forward], axis=1)
    transform[:3, 3] = eye
    return transform
