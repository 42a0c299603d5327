"""Randomized pick-and-place scenes, as plain data.

A `SceneDescription` is everything needed to build the simulated world and to score an episode: the objects on
the table, the containers, which object goes into which container, and the instruction. It round-trips through
JSON, so recorders, evaluators and the expert can work from the scene file alone. Pure Python and numpy: no
MuJoCo here.

All positions are in the robot base frame (x forward, y left, z up) in metres; the table top is the plane
z = table_height.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field

import numpy as np

SHAPES = ("box", "cylinder")
# Word used for a shape in object names and instructions; boxes are sampled as cubes.
SHAPE_NOUNS = {"box": "cube", "cylinder": "cylinder"}
CONTAINER_NOUN = "bowl"

# Container geometry not carried per scene: every tray has the same plate and wall thickness.
CONTAINER_WALL_THICKNESS = 0.01
CONTAINER_BASE_THICKNESS = 0.006

# The Franka hand opens to 0.08 m in total.
MAX_GRASP_WIDTH = 0.08

DEFAULT_PALETTE = {
    "red": (0.85, 0.1, 0.1, 1.0),
    "green": (0.1, 0.65, 0.15, 1.0),
    "blue": (0.1, 0.25, 0.85, 1.0),
    "yellow": (0.95, 0.85, 0.1, 1.0),
    "orange": (0.95, 0.5, 0.05, 1.0),
    "purple": (0.5, 0.15, 0.65, 1.0),
    "black": (0.05, 0.05, 0.05, 1.0),
    "white": (0.95, 0.95, 0.95, 1.0),
}


def _finite_tuple(value, length: int, field_name: str) -> tuple[float, ...]:
    try:
        numbers = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{field_name} must be {length} numbers, got {value!r}") from None
    if len(numbers) != length or not all(math.isfinite(v) for v in numbers):
        raise ValueError(f"{field_name} must be {length} finite numbers, got {value!r}")
    return numbers


def _rgba(value, field_name: str) -> tuple[float, ...]:
    rgba = _finite_tuple(value, 4, field_name)
    if not all(0.0 <= c <= 1.0 for c in rgba):
        raise ValueError(f"{field_name} components must be in [0, 1], got {value!r}")
    return rgba


def _name(value, field_name: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{field_name} must be a non-empty string, got {value!r}")
    return value


def _finite_float(value, field_name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{field_name} must be a finite number, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class ObjectSpec:
    """A graspable rigid object resting on the table.

    size: half extents (x, y, z) for a box; (radius, half_height) for an upright cylinder.
    position: centre in the base frame. yaw: rotation about the base z axis in radians.
    """

    name: str
    shape: str
    color: str
    rgba: tuple
    size: tuple
    position: tuple
    yaw: float

    def __post_init__(self):
        _name(self.name, "ObjectSpec.name")
        _name(self.color, "ObjectSpec.color")
        if self.shape not in SHAPES:
            raise ValueError(f"ObjectSpec.shape must be one of {SHAPES}, got {self.shape!r}")
        size = _finite_tuple(self.size, 3 if self.shape == "box" else 2, "ObjectSpec.size")
        if min(size) <= 0:
            raise ValueError(f"ObjectSpec.size must be positive, got {self.size!r}")
        object.__setattr__(self, "size", size)
        object.__setattr__(self, "rgba", _rgba(self.rgba, "ObjectSpec.rgba"))
        object.__setattr__(self, "position", _finite_tuple(self.position, 3, "ObjectSpec.position"))
        object.__setattr__(self, "yaw", _finite_float(self.yaw, "ObjectSpec.yaw"))

    @property
    def half_height(self) -> float:
        return self.size[2] if self.shape == "box" else self.size[1]

    @property
    def footprint_radius(self) -> float:
        """Radius of the circle that covers the object seen from above, whatever its yaw."""
        return math.hypot(self.size[0], self.size[1]) if self.shape == "box" else self.size[0]


@dataclass(frozen=True)
class ContainerSpec:
    """An open-top square tray ("bowl") standing on the table, axis-aligned with the base frame.

    inner_half_extent: half side of the square floor inside the walls. wall_height: height of the walls above
    the tray floor. position: (x, y) of the centre on the table.
    """

    name: str
    color: str
    rgba: tuple
    inner_half_extent: float
    wall_height: float
    position: tuple

    def __post_init__(self):
        _name(self.name, "ContainerSpec.name")
        _name(self.color, "ContainerSpec.color")
        object.__setattr__(self, "rgba", _rgba(self.rgba, "ContainerSpec.rgba"))
        for field_name in ("inner_half_extent", "wall_height"):
            value = _finite_float(getattr(self, field_name), f"ContainerSpec.{field_name}")
            if value <= 0:
                raise ValueError(f"ContainerSpec.{field_name} must be positive, got {value!r}")
            object.__setattr__(self, field_name, value)
        object.__setattr__(self, "position", _finite_tuple(self.position, 2, "ContainerSpec.position"))

    @property
    def outer_half_extent(self) -> float:
        return self.inner_half_extent + CONTAINER_WALL_THICKNESS


@dataclass(frozen=True)
class SceneDescription:
    seed: int
    objects: list
    containers: list
    target: str
    container: str
    instruction: str
    table_height: float

    def __post_init__(self):
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"seed must be an integer, got {self.seed!r}")
        object.__setattr__(self, "table_height", _finite_float(self.table_height, "table_height"))
        object.__setattr__(self, "objects", list(self.objects))
        object.__setattr__(self, "containers", list(self.containers))
        for field_name, kind in (("objects", ObjectSpec), ("containers", ContainerSpec)):
            items = getattr(self, field_name)
            if not items:
                raise ValueError(f"{field_name} must not be empty")
            for i, item in enumerate(items):
                if not isinstance(item, kind):
                    raise ValueError(f"{field_name}[{i}] must be a {kind.__name__}, got {type(item).__name__}")
        names = [item.name for item in self.objects + self.containers]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"objects and containers need unique names, repeated: {duplicates}")
        if self.target not in [o.name for o in self.objects]:
            raise ValueError(f"target {self.target!r} is not one of the objects")
        if self.container not in [c.name for c in self.containers]:
            raise ValueError(f"container {self.container!r} is not one of the containers")
        _name(self.instruction, "instruction")

    def object(self, name: str) -> ObjectSpec:
        for item in self.objects:
            if item.name == name:
                return item
        raise KeyError(f"no object named {name!r}")

    def container_spec(self, name: str) -> ContainerSpec:
        for item in self.containers:
            if item.name == name:
                return item
        raise KeyError(f"no container named {name!r}")

    @property
    def target_object(self) -> ObjectSpec:
        return self.object(self.target)

    @property
    def target_container(self) -> ContainerSpec:
        return self.container_spec(self.container)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> "SceneDescription":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"scene is not valid JSON: {error}") from None
        if not isinstance(data, dict):
            raise ValueError(f"scene JSON must be an object, got {type(data).__name__}")
        fields = {k: data[k] for k in _exact_keys(data, _SCENE_KEYS, "scene")}
        for field_name, kind, keys in (("objects", ObjectSpec, _OBJECT_KEYS),
                                       ("containers", ContainerSpec, _CONTAINER_KEYS)):
            entries = fields[field_name]
            if not isinstance(entries, list):
                raise ValueError(f"{field_name} must be a list, got {type(entries).__name__}")
            items = []
            for i, entry in enumerate(entries):
                where = f"{field_name}[{i}]"
                if not isinstance(entry, dict):
                    raise ValueError(f"{where} must be an object, got {type(entry).__name__}")
                _exact_keys(entry, keys, where)
                try:
                    items.append(kind(**entry))
                except ValueError as error:
                    raise ValueError(f"{where}: {error}") from None
            fields[field_name] = items
        for field_name in ("target", "container", "instruction"):
            _name(fields[field_name], field_name)
        return cls(**fields)


_SCENE_KEYS = ("seed", "objects", "containers", "target", "container", "instruction", "table_height")
_OBJECT_KEYS = ("name", "shape", "color", "rgba", "size", "position", "yaw")
_CONTAINER_KEYS = ("name", "color", "rgba", "inner_half_extent", "wall_height", "position")


def _exact_keys(data: dict, expected: tuple, where: str) -> tuple:
    missing = [k for k in expected if k not in data]
    unknown = sorted(set(data) - set(expected))
    if missing:
        raise ValueError(f"{where} is missing field(s) {missing}")
    if unknown:
        raise ValueError(f"{where} has unknown field(s) {unknown}")
    return expected


def _check_range(name: str, value, low_bound: float, high_bound: float) -> tuple[float, float]:
    low, high = _finite_tuple(value, 2, name)
    if not low_bound <= low <= high <= high_bound:
        raise ValueError(f"{name} must satisfy {low_bound} <= low <= high <= {high_bound}, got {value!r}")
    return low, high


@dataclass(frozen=True)
class SceneConfig:
    """What `sample_scene` randomizes, and within which bounds.

    num_distractors: objects besides the target (default 2).
    num_containers: containers, the target one plus distractors (default 2).
    palette: colour name -> rgba; every object and container gets a different colour, so the palette must have at
        least num_distractors + 1 + num_containers entries.
    shapes: object shapes to draw from ("box" is sampled as a cube).
    cube_half_extent_range: cube half side (m). 2-3 cm keeps the cube inside the hand's 8 cm opening.
    cylinder_radius_range, cylinder_half_height_range: upright cylinders (m).
    container_inner_half_extent_range: half side of the tray floor (m).
    container_wall_height_range: wall height above the tray floor (m). Walls are taller than any object's half
        height, so an object resting inside has its centre below the rim (what success checks), and low enough
        to carry objects over.
    workspace_x, workspace_y: where item centres are placed on the table (base frame, m), in front of the robot
        and well inside the FR3's reach.
    min_separation: gap kept between the footprints of any two items (m); leaves room for the open fingers.
    table_height: z of the table top (m). The robot base stands on the table, so 0.0 by default.
    placement_attempts: rejection-sampling tries per scene before giving up on a crowded configuration.
    """

    num_distractors: int = 2
    num_containers: int = 2
    palette: dict = field(default_factory=lambda: dict(DEFAULT_PALETTE))
    shapes: tuple = SHAPES
    cube_half_extent_range: tuple = (0.02, 0.03)
    cylinder_radius_range: tuple = (0.02, 0.03)
    cylinder_half_height_range: tuple = (0.025, 0.04)
    container_inner_half_extent_range: tuple = (0.06, 0.07)
    container_wall_height_range: tuple = (0.045, 0.055)
    workspace_x: tuple = (0.35, 0.65)
    workspace_y: tuple = (-0.25, 0.25)
    min_separation: float = 0.04
    table_height: float = 0.0
    placement_attempts: int = 2000

    def __post_init__(self):
        for name in ("num_distractors", "num_containers", "placement_attempts"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{name} must be an integer, got {value!r}")
        if self.num_distractors < 0:
            raise ValueError(f"num_distractors must be >= 0, got {self.num_distractors}")
        if self.num_containers < 1:
            raise ValueError(f"num_containers must be >= 1, got {self.num_containers}")
        if self.placement_attempts < 1:
            raise ValueError(f"placement_attempts must be >= 1, got {self.placement_attempts}")
        if not isinstance(self.palette, dict) or not self.palette:
            raise ValueError(f"palette must be a non-empty dict of colour name -> rgba, got {self.palette!r}")
        palette = {_name(k, "palette key"): _rgba(v, f"palette[{k!r}]") for k, v in self.palette.items()}
        object.__setattr__(self, "palette", palette)
        needed = self.num_distractors + 1 + self.num_containers
        if len(palette) < needed:
            raise ValueError(f"palette has {len(palette)} colours, the scene needs {needed} distinct ones")
        shapes = tuple(self.shapes)
        if not shapes or any(s not in SHAPES for s in shapes):
            raise ValueError(f"shapes must be a non-empty subset of {SHAPES}, got {self.shapes!r}")
        object.__setattr__(self, "shapes", shapes)
        # Fingers close across two faces (the expert yaws the hand to the cube): keep 5 mm clearance a side.
        graspable_half = MAX_GRASP_WIDTH / 2 - 0.005
        for name, low_bound, high_bound in (
                ("cube_half_extent_range", 0.005, graspable_half),
                ("cylinder_radius_range", 0.005, graspable_half),
                ("cylinder_half_height_range", 0.01, 0.1),
                ("container_inner_half_extent_range", 0.02, 0.2),
                ("container_wall_height_range", 0.005, 0.1),
                ("workspace_x", 0.2, 0.8),
                ("workspace_y", -0.6, 0.6)):
            object.__setattr__(self, name, _check_range(name, getattr(self, name), low_bound, high_bound))
        tallest = max(self.cube_half_extent_range[1] if "box" in shapes else 0.0,
                      self.cylinder_half_height_range[1] if "cylinder" in shapes else 0.0)
        if self.container_wall_height_range[0] <= tallest:
            raise ValueError(f"container_wall_height_range {self.container_wall_height_range} must start above the "
                             f"tallest object half height {tallest}, or objects inside would stick out of the rim")
        separation = _finite_float(self.min_separation, "min_separation")
        if separation < 0:
            raise ValueError(f"min_separation must be >= 0, got {self.min_separation}")
        object.__setattr__(self, "min_separation", separation)
        object.__setattr__(self, "table_height", _finite_float(self.table_height, "table_height"))


def _uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    return float(rng.uniform(bounds[0], bounds[1]))


def _place(rng: np.random.Generator, config: SceneConfig, half_sizes: list[float]) -> list[tuple[float, float]]:
    """Centres for square footprints of the given half sizes, pairwise apart by at least min_separation.

    Items are placed one by one; when one does not fit, the whole layout is drawn again so the result depends
    on the seed only.
    """
    for _ in range(config.placement_attempts):
        centres: list[tuple[float, float]] = []
        for half in half_sizes:
            x, y = _uniform(rng, config.workspace_x), _uniform(rng, config.workspace_y)
            clear = all(max(abs(x - cx), abs(y - cy)) >= half + other + config.min_separation
                        for (cx, cy), other in zip(centres, half_sizes))
            if not clear:
                break
            centres.append((x, y))
        if len(centres) == len(half_sizes):
            return centres
    raise ValueError(f"could not place {len(half_sizes)} items apart by {config.min_separation} m in "
                     f"x {config.workspace_x} y {config.workspace_y}: the SceneConfig is too crowded")


def sample_scene(seed: int, config: SceneConfig = SceneConfig()) -> SceneDescription:
    """A random scene, the same for the same seed and config."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    rng = np.random.default_rng(int(seed))
    num_objects = config.num_distractors + 1
    color_names = list(config.palette)
    chosen = [color_names[i] for i in rng.permutation(len(color_names))[:num_objects + config.num_containers]]

    containers_unplaced = []
    for color in chosen[num_objects:]:
        containers_unplaced.append(dict(
            name=f"{color} {CONTAINER_NOUN}", color=color, rgba=config.palette[color],
            inner_half_extent=_uniform(rng, config.container_inner_half_extent_range),
            wall_height=_uniform(rng, config.container_wall_height_range)))
    objects_unplaced = []
    for color in chosen[:num_objects]:
        shape = config.shapes[int(rng.integers(len(config.shapes)))]
        if shape == "box":
            half = _uniform(rng, config.cube_half_extent_range)
            size = (half, half, half)
        else:
            size = (_uniform(rng, config.cylinder_radius_range), _uniform(rng, config.cylinder_half_height_range))
        objects_unplaced.append(dict(name=f"{color} {SHAPE_NOUNS[shape]}", shape=shape, color=color,
                                     rgba=config.palette[color], size=size, yaw=_uniform(rng, (-math.pi, math.pi))))

    footprints = [c["inner_half_extent"] + CONTAINER_WALL_THICKNESS for c in containers_unplaced]
    footprints += [math.hypot(o["size"][0], o["size"][1]) if o["shape"] == "box" else o["size"][0]
                   for o in objects_unplaced]
    centres = _place(rng, config, footprints)

    containers = [ContainerSpec(position=centre, **c) for centre, c in zip(centres, containers_unplaced)]
    objects = []
    for (x, y), o in zip(centres[len(containers):], objects_unplaced):
        half_height = o["size"][2] if o["shape"] == "box" else o["size"][1]
        objects.append(ObjectSpec(position=(x, y, config.table_height + half_height), **o))

    target = objects[int(rng.integers(len(objects)))].name
    container = containers[int(rng.integers(len(containers)))].name
    return SceneDescription(seed=int(seed), objects=objects, containers=containers, target=target,
                            container=container, instruction=f"pick up the {target} and put it in the {container}",
                            table_height=config.table_height)
