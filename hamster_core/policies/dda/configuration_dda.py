from __future__ import annotations

from dataclasses import dataclass

from hamster_core.policies.conditioning import SceneConfig, check_int


@dataclass(frozen=True)
class DDAConfig(SceneConfig):
    """3D Diffuser Actor (Ke et al. 2024), small: per-point scene tokens with relative 3D (rotary) attention,
    and a denoising diffusion head over the next keyframe(s) (position, 6D rotation, gripper) conditioned on
    proprioception, the instruction and the path/mask channels carried by the point features. The defaults fit
    this CPU (~0.6 M parameters); on a GPU scale toward the paper: dim 192, scene_layers 2-4,
    denoiser_layers 4-6, num_points 4096+, diffusion_steps 100 with inference_steps 25-100."""

    conditioning: str = "path_points"  # its best mode in closed loop, ahead of path_channels
                                      # (bench/results_learned_policies_ablation.md)
    dim: int = 96                     # token width; dim / heads must be a multiple of 6 (3D rotary pairs)
    heads: int = 4
    scene_layers: int = 1             # relative self-attention layers over the scene points
    denoiser_layers: int = 2          # layers of (query self-attention, scene cross-attention, MLP)
    horizon: int = 1                  # keyframes denoised jointly: 1 = the next keyframe
    diffusion_steps: int = 100        # training timesteps of the cosine schedule
    inference_steps: int = 10         # DDIM steps at inference (deterministic, eta = 0)
    prediction: str = "sample"        # what the denoiser outputs: sample (the clean keyframe; steadier with
                                      # little data or few steps) | epsilon (the noise, as in DDPM and the paper)
    max_wavelength: float = 2.0       # m, longest rotary wavelength (shortest is 1 cm)
    position_head: str = "pointer"    # how the clean position is read out: pointer (an attention-weighted mean
                                      # of the scene points plus a learned offset, like Act3D's ghost-point
                                      # classification; needs prediction sample) | regression (the paper's:
                                      # the denoiser's output; a larger keyframe error here: see the ablation)

    def __post_init__(self):
        super().__post_init__()
        check_int(self, "dim", 12, 4096)
        check_int(self, "heads", 1, 64)
        if self.dim % self.heads or (self.dim // self.heads) % 6:
            raise ValueError(f"dim / heads must be a multiple of 6 (3D rotary), got dim {self.dim}, heads "
                             f"{self.heads}")
        check_int(self, "scene_layers", 0, 32)
        check_int(self, "denoiser_layers", 1, 32)
        check_int(self, "horizon", 1, 64)
        check_int(self, "diffusion_steps", 2, 10_000)
        check_int(self, "inference_steps", 1, 10_000)
        if self.inference_steps > self.diffusion_steps:
            raise ValueError(f"inference_steps {self.inference_steps} must not exceed diffusion_steps "
                             f"{self.diffusion_steps}")
        if self.prediction not in ("sample", "epsilon"):
            raise ValueError(f"prediction must be sample or epsilon, got {self.prediction!r}")
        if self.position_head not in ("pointer", "regression"):
            raise ValueError(f"position_head must be pointer or regression, got {self.position_head!r}")
        if self.position_head == "pointer" and self.prediction != "sample":
            raise ValueError(f"position_head pointer predicts the clean position, so prediction must be sample, "
                             f"got {self.prediction!r} (use position_head regression for epsilon)")
        if not 0.02 <= self.max_wavelength <= 100:
            raise ValueError(f"max_wavelength must be in [0.02, 100] m, got {self.max_wavelength}")
