from __future__ import annotations

from dataclasses import dataclass

from hamster_core.lifting import LIFT_HOLE_RADIUS_PX


@dataclass(frozen=True)
class PathFollowerConfig:
    """Training-free policy: lift the VLM's 2D path into 3D and grasp/release at its gripper points.

    Heights are in metres in the robot base frame.
    """

    approach_height: float = 0.10      # above the grasp point before descending
    grasp_depth: float = 0.015         # below the target's top surface (the fingers close around its top)
    lift_height: float = 0.15          # above the grasp point after closing
    release_height: float = 0.10       # above the placement surface's highest point when opening
    retreat_height: float = 0.10       # up after releasing
    min_grasp_height: float = 0.01     # never grasp lower than this above the support surface
    max_via_points: int = 3            # path points kept between grasp and release
    via_max_deviation: float = 0.10    # m; via points farther from the grasp-release line are dropped
    max_hole_radius_px: int = LIFT_HOLE_RADIUS_PX   # how far to look for 3D support of a path pixel in a hole
    min_mask_points: int = 20          # fewer 3D points in a mask than this and the mask is ignored
    use_masks: bool = True             # refine grasp and placement with grounding masks when present
    target_label: str = "target_object"
    placement_label: str = "placement_area"

    def __post_init__(self):
        for name in ("approach_height", "lift_height", "release_height", "retreat_height"):
            value = getattr(self, name)
            if not 0.0 <= value <= 0.5:
                raise ValueError(f"{name} must be in [0, 0.5] m, got {value}")
        if not 0.0 <= self.grasp_depth <= 0.1:
            raise ValueError(f"grasp_depth must be in [0, 0.1] m, got {self.grasp_depth}")
        if not 0.0 <= self.min_grasp_height <= 0.1:
            raise ValueError(f"min_grasp_height must be in [0, 0.1] m, got {self.min_grasp_height}")
        if not 0 <= self.max_via_points <= 20:
            raise ValueError(f"max_via_points must be in [0, 20], got {self.max_via_points}")
        if not 0 <= self.via_max_deviation <= 1:
            raise ValueError(f"via_max_deviation must be in [0, 1] m, got {self.via_max_deviation}")
        if not 1 <= self.max_hole_radius_px <= 200:
            raise ValueError(f"max_hole_radius_px must be in [1, 200], got {self.max_hole_radius_px}")
        if self.min_mask_points < 1:
            raise ValueError(f"min_mask_points must be >= 1, got {self.min_mask_points}")
