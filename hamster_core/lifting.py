"""Between the image and the point cloud: which 3D point a pixel sees, which points a mask covers, and a 2D path
lifted into 3D."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from hamster_core.camera import PinholeCamera
from hamster_core.path2d import GripperState, Path2D, resample


class ProjectedCloud:
    """A base-frame point cloud z-buffered into a camera's image: each pixel keeps its nearest point.

    Built once per observation (vectorized), then answers pixel and mask queries in O(query size).
    """

    def __init__(self, points: np.ndarray, camera: PinholeCamera):
        points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        self.points = points
        self.camera = camera
        height, width = camera.height, camera.width
        pixels, depth = camera.project(points)
        with np.errstate(invalid="ignore"):
            u = np.floor(pixels[:, 0])
            v = np.floor(pixels[:, 1])
            visible = np.isfinite(depth) & (depth > 0) & (u >= 0) & (u < width) & (v >= 0) & (v < height)
        ids = np.flatnonzero(visible)
        flat = v[ids].astype(np.int64) * width + u[ids].astype(np.int64)
        order = np.lexsort((depth[ids], flat))            # by pixel, nearest first
        first = np.ones(len(order), dtype=bool)
        first[1:] = flat[order][1:] != flat[order][:-1]
        self.index = np.full(height * width, -1, dtype=np.int64)
        self.index[flat[order][first]] = ids[order][first]
        self.index = self.index.reshape(height, width)

    @property
    def empty(self) -> bool:
        return not np.any(self.index >= 0)

    def lift(self, pixels, max_hole_radius_px: float) -> tuple[np.ndarray, np.ndarray]:
        """3D points seen at `pixels` (N, 2). A pixel without a point (a hole in the depth) takes the nearest
        pixel that has one, if it is within `max_hole_radius_px`. Returns (points (N, 3), found (N,))."""
        pixels = np.asarray(pixels, dtype=float).reshape(-1, 2)
        points = np.full((len(pixels), 3), np.nan)
        if self.empty or len(pixels) == 0:
            return points, np.zeros(len(pixels), dtype=bool)
        height, width = self.index.shape
        u = np.clip(np.floor(pixels[:, 0]).astype(int), 0, width - 1)
        v = np.clip(np.floor(pixels[:, 1]).astype(int), 0, height - 1)
        distance, (nearest_v, nearest_u) = ndimage.distance_transform_edt(self.index < 0, return_indices=True)
        found = distance[v, u] <= max_hole_radius_px
        ids = self.index[nearest_v[v, u], nearest_u[v, u]]
        points[found] = self.points[ids[found]]
        return points, found

    def points_in_mask(self, mask: np.ndarray) -> np.ndarray:
        """The visible 3D points whose pixels lie inside `mask` (H, W)."""
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != self.index.shape:
            raise ValueError(f"mask is {mask.shape}, camera image is {self.index.shape}")
        ids = self.index[mask]
        return self.points[ids[ids >= 0]]


LIFTED_PATH_POINTS = 64          # samples of a lifted path: fixed, so batches of observations stack
LIFT_HOLE_RADIUS_PX = 25         # px: how far a path pixel in a depth hole looks for 3D support


@dataclass(frozen=True)
class LiftedPath:
    """A 2D path lifted into 3D on one camera frame: `points` (K, 3) in the base frame, and per point the
    path channels of hamster_core.drawing.PATH_CHANNELS in `channels` (K, 3): progress along the path (0..1),
    gripper open, gripper closed."""

    points: np.ndarray
    channels: np.ndarray

    def __post_init__(self):
        points = np.asarray(self.points, dtype=np.float64)
        channels = np.asarray(self.channels, dtype=np.float32)
        if points.ndim != 2 or points.shape[1] != 3 or channels.shape != (len(points), 3) or len(points) == 0:
            raise ValueError(f"a lifted path needs points (K, 3) and channels (K, 3), K >= 1; got "
                             f"{points.shape} and {channels.shape}")
        if not np.all(np.isfinite(points)):
            raise ValueError("lifted path points must be finite")
        object.__setattr__(self, "points", points)
        object.__setattr__(self, "channels", channels)


def lift_path(path: Path2D, points: np.ndarray, camera: PinholeCamera, count: int = LIFTED_PATH_POINTS,
              max_hole_radius_px: float = LIFT_HOLE_RADIUS_PX) -> LiftedPath:
    """`path` resampled to `count` points by arc length, each lifted to the 3D point the camera sees at its
    pixel in this frame's cloud. Meant for the frame the path was drawn on, before the arm moves into its way:
    on later frames the hand covers the pixels of the path's end, and a per-pixel lookup puts the path on the
    hand. Pixels without 3D support are dropped and the rest repeated to `count`; raises ValueError when no
    pixel has support."""
    forced = len(path.gripper_change_indices()) + 2
    samples = resample(path, max(count, forced)) if len(path) > 1 else path
    arc = samples.arc_length()
    progress = arc / arc[-1] if arc[-1] > 0 else np.zeros(len(samples))
    channels = np.stack([progress, samples.gripper == GripperState.OPEN, samples.gripper == GripperState.CLOSED],
                        axis=1).astype(np.float32)
    lifted, found = ProjectedCloud(points, camera).lift(samples.to_pixels(camera.width, camera.height),
                                                        max_hole_radius_px)
    if not np.any(found):
        raise ValueError("no pixel of the path has a 3D point in this frame's cloud")
    keep = np.flatnonzero(found)
    keep = keep[np.round(np.linspace(0, len(keep) - 1, count)).astype(int)]   # even over what was found
    return LiftedPath(lifted[keep], channels[keep])
