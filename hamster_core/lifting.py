"""Between the image and the point cloud: which 3D point a pixel sees, and which points a mask covers."""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from hamster_core.camera import PinholeCamera


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
