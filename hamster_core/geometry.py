"""Poses and quaternions. Quaternions are (x, y, z, w), the ROS order; MuJoCo's (w, x, y, z) is converted
at the simulator boundary only."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def normalize_quaternion(q) -> np.ndarray:
    q = np.asarray(q, dtype=float)
    if q.shape != (4,) or not np.all(np.isfinite(q)):
        raise ValueError(f"quaternion must be 4 finite numbers (x, y, z, w), got {q!r}")
    norm = np.linalg.norm(q)
    if norm < 1e-9:
        raise ValueError(f"quaternion has zero norm: {q!r}")
    q = q / norm
    return q if q[3] >= 0 else -q  # one representative of the double cover


def quaternion_multiply(a, b) -> np.ndarray:
    ax, ay, az, aw = a
    bx, by, bz, bw = b
    return np.array([
        aw * bx + ax * bw + ay * bz - az * by,
        aw * by - ax * bz + ay * bw + az * bx,
        aw * bz + ax * by - ay * bx + az * bw,
        aw * bw - ax * bx - ay * by - az * bz,
    ])


def quaternion_angle(a, b) -> float:
    """Rotation angle in radians between two orientations."""
    dot = abs(float(np.dot(normalize_quaternion(a), normalize_quaternion(b))))
    return 2.0 * float(np.arccos(min(1.0, dot)))


def slerp(a, b, t: float) -> np.ndarray:
    a = normalize_quaternion(a)
    b = normalize_quaternion(b)
    dot = float(np.dot(a, b))
    if dot < 0.0:
        b, dot = -b, -dot
    if dot > 0.9995:  # nearly parallel: linear interpolation is exact enough and stable
        return normalize_quaternion(a + t * (b - a))
    theta = np.arccos(dot)
    return normalize_quaternion((np.sin((1 - t) * theta) * a + np.sin(t * theta) * b) / np.sin(theta))


def quaternion_to_matrix(q) -> np.ndarray:
    x, y, z, w = normalize_quaternion(q)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def matrix_to_quaternion(m) -> np.ndarray:
    m = np.asarray(m, dtype=float)
    trace = m[0, 0] + m[1, 1] + m[2, 2]
    if trace > 0:
        s = 2.0 * np.sqrt(trace + 1.0)
        q = [(m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s, 0.25 * s]
    elif m[0, 0] > m[1, 1] and m[0, 0] > m[2, 2]:
        s = 2.0 * np.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2])
        q = [0.25 * s, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s, (m[2, 1] - m[1, 2]) / s]
    elif m[1, 1] > m[2, 2]:
        s = 2.0 * np.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2])
        q = [(m[0, 1] + m[1, 0]) / s, 0.25 * s, (m[1, 2] + m[2, 1]) / s, (m[0, 2] - m[2, 0]) / s]
    else:
        s = 2.0 * np.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1])
        q = [(m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, 0.25 * s, (m[1, 0] - m[0, 1]) / s]
    return normalize_quaternion(q)


@dataclass(frozen=True)
class Pose:
    """A pose in the robot base frame: position in metres, orientation as (x, y, z, w)."""

    position: np.ndarray
    orientation: np.ndarray

    def __post_init__(self):
        position = np.asarray(self.position, dtype=float).reshape(-1)
        if position.shape != (3,) or not np.all(np.isfinite(position)):
            raise ValueError(f"position must be 3 finite numbers, got {self.position!r}")
        object.__setattr__(self, "position", position)
        object.__setattr__(self, "orientation", normalize_quaternion(self.orientation))

    def matrix(self) -> np.ndarray:
        m = np.eye(4)
        m[:3, :3] = quaternion_to_matrix(self.orientation)
        m[:3, 3] = self.position
        return m

    @classmethod
    def from_matrix(cls, m) -> "Pose":
        m = np.asarray(m, dtype=float)
        return cls(m[:3, 3], matrix_to_quaternion(m[:3, :3]))


# The Franka hand pointing straight down (its z axis along the base's -z), fingers along the base y axis.
TOP_DOWN = np.array([1.0, 0.0, 0.0, 0.0])


def top_down_orientation(yaw: float) -> np.ndarray:
    """TOP_DOWN turned by `yaw` radians about the base z axis (x, y, z, w)."""
    return quaternion_multiply(np.array([0.0, 0.0, np.sin(yaw / 2), np.cos(yaw / 2)]), TOP_DOWN)


def distances_to_segment(points, a, b) -> np.ndarray:
    """Distance of each point (N, D) to the segment from a to b."""
    points = np.asarray(points, dtype=float)
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    direction = b - a
    length_squared = float(direction @ direction)
    if length_squared == 0.0:
        return np.linalg.norm(points - a, axis=1)
    t = np.clip((points - a) @ direction / length_squared, 0.0, 1.0)
    return np.linalg.norm(points - (a + t[:, None] * direction), axis=1)
