from __future__ import annotations

from dataclasses import dataclass

from hamster_core.policies.conditioning import SceneConfig, check_int

#: Orthographic views of the workspace box: (image column axis, image row axis, depth axis) in base xyz.
#: The virtual camera sits on the box's max face along the depth axis, looking inward.
VIEW_AXES = {"top": (0, 1, 2), "front": (1, 2, 0), "side": (0, 2, 1)}


@dataclass(frozen=True)
class RVT2Config(SceneConfig):
    """RVT-2 (Goyal et al. 2024), small: the cloud re-rendered into virtual orthographic views, a transformer
    over all views' patches + instruction + proprioception, per-view translation heatmaps voting for a 3D
    point, rotation as Euler-angle bins and a gripper and done logit. The defaults fit this CPU (~0.2 M
    parameters); on a GPU scale toward RVT-2: image_size 224 with patch_size 14 (or 8), dim 256-512, depth 4-8,
    rotation_bins 72, coarse_to_fine true, num_points 4096+."""

    views: tuple = ("top", "front", "side")
    image_size: int = 32              # pixels per side of each virtual view
    patch_size: int = 4               # tokens are patch_size x patch_size patches
    dim: int = 64                     # transformer width
    depth: int = 2                    # transformer layers
    heads: int = 4
    rotation_bins: int = 36           # per Euler angle (x, y, z extrinsic) over 360 degrees; RVT uses 72
    heatmap_sigma: float = 1.5        # px, Gaussian around the target pixel in the heatmap loss
    coarse_to_fine: bool = False      # RVT-2's second stage: re-render a zoomed box around stage 1's point
    zoom_half_extent: float = 0.12    # m, half the side of the stage-2 box

    def __post_init__(self):
        super().__post_init__()
        views = (self.views,) if isinstance(self.views, str) else tuple(self.views)
        if len(views) < 2 or len(set(views)) != len(views) or not set(views) <= set(VIEW_AXES):
            raise ValueError(f"views must be 2 or 3 distinct of {', '.join(VIEW_AXES)}, got {self.views!r}")
        object.__setattr__(self, "views", views)
        check_int(self, "image_size", 8, 1024)
        check_int(self, "patch_size", 1, 64)
        if self.image_size % self.patch_size:
            raise ValueError(f"image_size {self.image_size} must be a multiple of patch_size {self.patch_size}")
        check_int(self, "dim", 8, 4096)
        check_int(self, "depth", 1, 64)
        check_int(self, "heads", 1, 64)
        if self.dim % self.heads:
            raise ValueError(f"dim {self.dim} must be a multiple of heads {self.heads}")
        check_int(self, "rotation_bins", 4, 720)
        if self.rotation_bins % 2:
            raise ValueError(f"rotation_bins must be even (so 0 and 180 degrees are bin centres), got "
                             f"{self.rotation_bins}")
        if not 0 < self.heatmap_sigma <= 20:
            raise ValueError(f"heatmap_sigma must be in (0, 20] px, got {self.heatmap_sigma}")
        if not 0.01 <= self.zoom_half_extent <= 1.0:
            raise ValueError(f"zoom_half_extent must be in [0.01, 1] m, got {self.zoom_half_extent}")
