"""Named variation sets for training and closed-loop evaluation, in the spirit of Colosseum's perturbation
axes and HAMSTER's real-robot generalisation axes. Training uses `base` only; every other set changes one
thing the policy never saw.

A set is a scene generator config (`hamster_sim.scene.SceneConfig`), an optional rule on the
(object colour, container colour) pair, and world options (camera pose, table colour, lighting). Scenes
are a pure function of (set, seed): `scene_for(name, seed)`.

Sets:
- base            the default scene distribution, minus the held-out colour combinations
- unseen_combos   only the held-out (object colour, container colour) combinations: every colour was seen in
                  training, never together in that role
- colors          object and container colours outside the training palette (new words for the instruction)
- sizes           smaller objects and larger containers than in training
- distractors     four distractor objects instead of two
- table_lighting  a different table colour and dimmer, warmer light
- camera_shift    the camera moved 15 cm sideways and 5 cm down, looking at a shifted point

Not supported by this scene generator (so not named): novel object shapes (the expert grasps cubes and
upright cylinders only, both seen in training) and spatial instructions (left / middle / right).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from hamster_sim.scene import DEFAULT_PALETTE, SceneConfig, SceneDescription, sample_scene

#: Colours never used in `base`; new instruction words too.
NOVEL_PALETTE = {
    "pink": (0.95, 0.45, 0.7, 1.0),
    "cyan": (0.1, 0.8, 0.85, 1.0),
    "brown": (0.45, 0.27, 0.1, 1.0),
    "grey": (0.5, 0.5, 0.5, 1.0),
    "lime": (0.6, 0.95, 0.2, 1.0),
    "navy": (0.05, 0.08, 0.4, 1.0),
    "maroon": (0.45, 0.05, 0.12, 1.0),
    "teal": (0.0, 0.45, 0.45, 1.0),
}
SUBSEEDS_PER_SEED = 1000   # scene seeds tried per episode seed when a set restricts colour combinations


def held_out_combination(object_color: str, container_color: str) -> bool:
    """About a fifth of the (object colour, container colour) pairs of the default palette: never in `base`."""
    names = list(DEFAULT_PALETTE)
    if object_color not in names or container_color not in names:
        return False
    return (names.index(object_color) + 2 * names.index(container_color)) % 5 == 0


@dataclass(frozen=True)
class Variation:
    name: str
    description: str
    scene: SceneConfig = field(default_factory=SceneConfig)
    combinations: str = "any"          # any | seen (no held-out pair) | held_out (only held-out pairs)
    world: dict = field(default_factory=dict)   # FrankaWorld keyword arguments

    def __post_init__(self):
        if self.combinations not in ("any", "seen", "held_out"):
            raise ValueError(f"combinations must be any, seen or held_out, got {self.combinations!r}")


CAMERA_SHIFT = dict(camera_position=(1.30, 0.15, 0.90), camera_target=(0.45, 0.05, 0.10))

VARIATIONS: dict[str, Variation] = {v.name: v for v in (
    Variation("base", "training distribution (held-out colour pairs excluded)", combinations="seen"),
    Variation("unseen_combos", "held-out (object colour, container colour) pairs", combinations="held_out"),
    Variation("colors", "object and container colours outside the training palette",
              scene=SceneConfig(palette=dict(NOVEL_PALETTE))),
    Variation("sizes", "smaller objects, larger containers",
              scene=SceneConfig(cube_half_extent_range=(0.015, 0.019), cylinder_radius_range=(0.015, 0.019),
                                cylinder_half_height_range=(0.018, 0.024),
                                container_inner_half_extent_range=(0.075, 0.085)),
              combinations="seen"),
    Variation("distractors", "four distractor objects", combinations="seen",
              scene=SceneConfig(num_distractors=4, min_separation=0.025, workspace_y=(-0.3, 0.3))),
    Variation("table_lighting", "another table colour, dimmer and warmer light", combinations="seen",
              world=dict(table_rgba=(0.35, 0.42, 0.5, 1.0), light_rgb=(0.75, 0.6, 0.45))),
    Variation("camera_shift", "camera 15 cm sideways, 5 cm lower", combinations="seen", world=dict(CAMERA_SHIFT)),
)}


def variation(name: str) -> Variation:
    if name not in VARIATIONS:
        raise ValueError(f"unknown variation set {name!r}; known: {', '.join(VARIATIONS)}")
    return VARIATIONS[name]


def scene_for(name: str, seed: int) -> SceneDescription:
    """The scene of episode `seed` in set `name`. With a colour-pair rule, scene seeds seed * 1000 + k are
    tried in order until one fits (the scene's own `seed` field records which)."""
    spec = variation(name)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if spec.combinations == "any":
        return sample_scene(seed, spec.scene)
    for k in range(SUBSEEDS_PER_SEED):
        scene = sample_scene(seed * SUBSEEDS_PER_SEED + k, spec.scene)
        held = held_out_combination(scene.target_object.color, scene.target_container.color)
        if held == (spec.combinations == "held_out"):
            return scene
    raise ValueError(f"no scene of set {name!r} for seed {seed} in {SUBSEEDS_PER_SEED} tries")


def with_scene(spec: Variation, **changes) -> Variation:
    """A copy with SceneConfig fields changed (e.g. fewer distractors in a test)."""
    return replace(spec, scene=replace(spec.scene, **changes))
