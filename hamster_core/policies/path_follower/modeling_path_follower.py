"""Training-free low-level policy: follow the VLM's 2D path in 3D.

The path says *where* (grasp at its close-gripper point, release at its open-gripper point, pass near its
points in between); the point cloud says *how high*; the grounding masks, when present, sharpen the grasp
and release points to the object's and container's actual extent.
"""
from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np

from hamster_core.executor import Keyframe
from hamster_core.geometry import Pose, distances_to_segment, top_down_orientation
from hamster_core.lifting import ProjectedCloud
from hamster_core.path2d import GripperState
from hamster_core.policies.base import POLICIES, Observation, Policy, PolicyError, PolicyOutput
from hamster_core.policies.path_follower.configuration_path_follower import PathFollowerConfig

SUPPORT_RADIUS = 0.10        # m around the grasp point in which the support surface is estimated
OPEN_WIDTH_FRACTION = 0.9    # a gripper wider than this fraction of fully open counts as open
TOP_FACE_THICKNESS = 0.005   # m below the object's top that still counts as its top face


def grasp_yaw(points_xy: np.ndarray) -> float:
    """Yaw that lines the hand's x axis up with the object's long side, so the fingers close across the short
    one. The footprint's minimum-area rectangle gives the sides (a square's point covariance is isotropic, so
    principal axes cannot). A near-square footprint has two equally good yaws: take the smaller rotation."""
    if len(points_xy) < 3:
        return 0.0
    (_, _), (width, height), angle_deg = cv2.minAreaRect(np.asarray(points_xy, dtype=np.float32) * 1000.0)
    yaw = np.radians(angle_deg) + (0.0 if width >= height else np.pi / 2)
    period = np.pi / 2 if max(width, height) < 1.3 * max(min(width, height), 1e-6) else np.pi
    return float((yaw + period / 2) % period - period / 2)


@POLICIES.register("path_follower")
class PathFollowerPolicy(Policy):
    required_inputs = frozenset({"points", "camera", "path"})
    config_class = PathFollowerConfig

    def __init__(self, config: PathFollowerConfig | None = None, **overrides):
        self.config = replace(config or PathFollowerConfig(), **overrides)

    def reset(self) -> None:
        pass  # stateless: the whole plan comes from one observation

    def select_action(self, observation: Observation) -> PolicyOutput:
        missing = self.missing_inputs(observation)
        if missing:
            raise PolicyError(f"path_follower needs {', '.join(missing)}")
        config, path, camera = self.config, observation.path, observation.camera
        cloud = ProjectedCloud(observation.points, camera)
        if cloud.empty:
            raise PolicyError("no point of the cloud is visible in the camera image")

        changes = path.gripper_change_indices()
        closes = [i for i in changes if path.gripper[i] == GripperState.CLOSED]
        if not closes:
            raise PolicyError("the path has no close-gripper point, so there is nothing to grasp")
        close_index = closes[0]
        opens = [i for i in changes if i > close_index and path.gripper[i] == GripperState.OPEN]
        open_index = opens[0] if opens else len(path) - 1

        lifted, found = cloud.lift(path.to_pixels(camera.width, camera.height), config.max_hole_radius_px)
        for name, index in (("close-gripper", close_index), ("open-gripper", open_index)):
            if not found[index]:
                raise PolicyError(f"no 3D point within {config.max_hole_radius_px} px of the path's {name} point "
                                  f"({path.points[index].round(3).tolist()})")
        info = {"close_index": close_index, "open_index": open_index, "refined_with": []}

        grasp_xy, top_z, yaw = lifted[close_index, :2], lifted[close_index, 2], 0.0
        target = self._mask_points(cloud, observation, config.target_label)
        if target is not None:
            top_z = float(np.percentile(target[:, 2], 95))
            # The camera sees the object's top and its near side; the top face alone is centred on the object.
            top_face = target[target[:, 2] >= top_z - TOP_FACE_THICKNESS]
            grasp_xy = np.median(top_face[:, :2], axis=0)
            yaw = grasp_yaw(top_face[:, :2])
            info["refined_with"].append(config.target_label)
        support_z = self._support_height(observation.points, grasp_xy)
        grasp_z = max(top_z - config.grasp_depth, support_z + config.min_grasp_height)

        place_xy, place_top_z = lifted[open_index, :2], lifted[open_index, 2]
        placement = self._mask_points(cloud, observation, config.placement_label)
        if placement is not None:
            # A container shows its far walls and floor more than its near side: take the middle of its
            # extent, not the mean of what is visible.
            low, high = np.percentile(placement[:, :2], [2, 98], axis=0)
            place_xy = (low + high) / 2
            place_top_z = float(np.percentile(placement[:, 2], 98))
            info["refined_with"].append(config.placement_label)
        release_z = max(place_top_z + config.release_height, grasp_z + config.approach_height)
        travel_z = max(grasp_z + config.lift_height, release_z)

        orientation = top_down_orientation(yaw)

        def at(xy, z, gripper=None) -> Keyframe:
            return Keyframe(Pose(np.array([xy[0], xy[1], z]), orientation), gripper)

        gripper_open = observation.gripper_width >= OPEN_WIDTH_FRACTION * 0.08
        keyframes = [at(grasp_xy, grasp_z + config.approach_height, None if gripper_open else GripperState.OPEN),
                     at(grasp_xy, grasp_z, GripperState.CLOSED),
                     at(grasp_xy, travel_z)]
        keyframes += [at(xy, travel_z) for xy in self._via_points(lifted, found, close_index, open_index,
                                                                  grasp_xy, place_xy)]
        keyframes += [at(place_xy, release_z, GripperState.OPEN),
                      at(place_xy, release_z + config.retreat_height)]
        info.update(grasp=[*grasp_xy, grasp_z], release=[*place_xy, release_z], yaw=yaw)
        return PolicyOutput(keyframes, done=True, info=info)

    def _mask_points(self, cloud: ProjectedCloud, observation: Observation, label: str) -> np.ndarray | None:
        mask = observation.masks.get(label) if self.config.use_masks else None
        if mask is None or mask.shape != cloud.index.shape:
            return None
        points = cloud.points_in_mask(mask)
        return points if len(points) >= self.config.min_mask_points else None

    @staticmethod
    def _support_height(points: np.ndarray, xy: np.ndarray) -> float:
        near = points[np.linalg.norm(points[:, :2] - xy, axis=1) < SUPPORT_RADIUS]
        return float(np.percentile(near[:, 2], 5)) if len(near) else -np.inf

    def _via_points(self, lifted, found, close_index: int, open_index: int, grasp_xy, place_xy) -> list[np.ndarray]:
        """Path points between grasp and release whose lifted position stays near the way from one to the
        other. A point the arm passes in mid-air lifts onto whatever surface lies behind it in the image,
        often far away; such points say nothing about the route and are left out."""
        between = [i for i in range(close_index + 1, open_index)
                   if found[i] and distances_to_segment(lifted[i:i + 1, :2], grasp_xy, place_xy)[0]
                   <= self.config.via_max_deviation]
        if len(between) > self.config.max_via_points:
            picks = np.linspace(0, len(between) - 1, self.config.max_via_points).round().astype(int)
            between = [between[i] for i in picks]
        return [lifted[i, :2] for i in between]
