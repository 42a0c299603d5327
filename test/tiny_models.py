"""The policy tests' tiny model configurations: small enough to build, train a few steps and plan in seconds on
two cores (also the checkpoints the graph tests drive episodes with)."""
TINY_DDA = dict(num_points=128, dim=48, heads=2, scene_layers=1, denoiser_layers=2)
TINY_RVT2 = dict(num_points=256, image_size=16, patch_size=4, dim=32, depth=1, heads=2, rotation_bins=12)
