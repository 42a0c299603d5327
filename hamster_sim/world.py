"""MuJoCo world: a Franka FR3 with the Franka hand on a table, a randomized pick-and-place scene and an RGB-D
camera, with a 1 kHz Cartesian controller and a non-blocking gripper.

The FR3 model comes from the franky-sim wheel's assets (installed --no-deps, never imported); everything else is
added in code with MjSpec. The robot base frame is the MuJoCo world frame, with the FR3 base at the origin. The
table top is the plane z = scene.table_height: the default 0.0 stands the robot on the table, which keeps every
height in the scene a height above the table; another value mounts the base that far below the table top.
"""
from __future__ import annotations

import os
import sys

# Headless rendering. mujoco picks its OpenGL backend when first imported, so this only helps if nothing
# imported mujoco before this module (or MUJOCO_GL is exported).
_GL_CHOSEN_WITHOUT_US = "mujoco" in sys.modules and "MUJOCO_GL" not in os.environ
os.environ.setdefault("MUJOCO_GL", "egl")

import functools  # noqa: E402
import importlib.util  # noqa: E402

import mujoco  # noqa: E402
import numpy as np  # noqa: E402

from hamster_core.camera import PinholeCamera, look_at  # noqa: E402
from hamster_core.geometry import Pose  # noqa: E402
from hamster_sim.ik import DifferentialIK  # noqa: E402
from hamster_sim.scene import (  # noqa: E402
    CONTAINER_BASE_THICKNESS, CONTAINER_WALL_THICKNESS, MAX_GRASP_WIDTH, SceneDescription)

ARM_JOINTS = tuple(f"fr3_joint{i}" for i in range(1, 8))
FINGER_JOINTS = ("finger_joint1", "finger_joint2")
HOME_ARM_POSITIONS = np.array([0.0, 0.0, 0.0, -1.57079, 0.0, 1.57079, -0.7853])
TIMESTEP = 0.001
# Franka's default TCP: between the fingertips, along the hand's z axis from the hand (flange) frame.
TCP_OFFSET = 0.1034
# fr3.xml's "hand" actuator maps ctrl 0..255 linearly to 0..0.04 m per finger, i.e. 0..0.08 m total width.
HAND_CTRL_MAX = 255.0
HAND_STIFFNESS = 1000.0  # N/m on the finger tendon (its length is the mean finger opening)
HAND_DAMPING = 20.0  # N s/m, just over critical for the fingers' mass
MAX_GRASP_FORCE = 70.0  # N per finger, the Franka hand's continuous force

OBJECT_DENSITY = 400.0  # kg/m^3, wood-like: a 5 cm cube weighs 50 g
# Sliding, torsional, rolling friction; condim 4 adds torsional friction so a pinched object does not spin.
GRASP_FRICTION = (1.5, 0.01, 0.0001)
GRASP_CONDIM = 4
# Stiffer than MuJoCo's default (0.02 s) so a 20 N pinch sinks ~0.1 mm, not ~3 mm, into the object: deep soft
# contacts on a cylinder push it sideways out of the fingers.
OBJECT_SOLREF = (0.004, 1.0)
TABLE_RGBA = (0.62, 0.5, 0.38, 1.0)
FLOOR_RGBA = (0.3, 0.3, 0.32, 1.0)
TABLE_X = (-0.3, 1.0)  # table top extent in the base frame (m)
TABLE_Y = (-0.7, 0.7)
TABLE_THICKNESS = 0.04
FLOOR_BELOW_TABLE = 0.75

DEFAULT_CAMERA_POSITION = (1.35, 0.0, 0.95)
DEFAULT_CAMERA_TARGET = (0.45, 0.0, 0.1)
DEFAULT_FOVY = 45.0
DEFAULT_MESH_CELL = 0.004
CAMERA_NAME = "workspace_camera"

# Segmentation: objects first, then containers, numbered from 1; everything else is 0.
BACKGROUND_ID = 0


def franka_assets_dir() -> str:
    """The FR3 + hand model shipped in the franky-sim wheel, located without importing franky_sim."""
    spec = importlib.util.find_spec("franky_sim")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the FR3 model comes from franky-sim: pip install --no-deps franky-sim==1.0.4")
    return os.path.join(spec.submodule_search_locations[0], "assets")


def _load_fr3_spec() -> mujoco.MjSpec:
    assets = franka_assets_dir()
    spec = mujoco.MjSpec.from_file(os.path.join(assets, "fr3.xml"))
    spec.meshdir = os.path.join(assets, "meshes")  # fr3.xml says "assets", relative to a layout we do not have
    return spec


def _cluster_vertices(vertices: np.ndarray, faces: np.ndarray, cell: float) -> tuple[np.ndarray, np.ndarray]:
    """Vertex-clustering decimation: merge the vertices in each cubic cell into their mean, drop the triangles
    that collapse, keep one copy of duplicated triangles."""
    _, cluster, counts = np.unique(np.floor(vertices / cell).astype(np.int64), axis=0, return_inverse=True,
                                   return_counts=True)
    cluster = cluster.ravel()
    centroids = np.stack([np.bincount(cluster, vertices[:, k], counts.size) for k in range(3)], axis=1)
    centroids /= counts[:, None]
    merged = cluster[faces]
    keep = (merged[:, 0] != merged[:, 1]) & (merged[:, 1] != merged[:, 2]) & (merged[:, 0] != merged[:, 2])
    merged = merged[keep]
    _, first = np.unique(np.sort(merged, axis=1), axis=0, return_index=True)
    merged = merged[np.sort(first)]
    used, compact = np.unique(merged, return_inverse=True)
    return centroids[used], compact.reshape(-1, 3)


@functools.lru_cache(maxsize=4)
def _decimated_visual_meshes(cell: float) -> tuple[dict, dict]:
    """Decimated copies of the robot meshes that are only drawn (never collide), and the placement of every geom
    that draws them.

    Software OpenGL (llvmpipe) spends most of a frame on the ~240k triangles of the full meshes. Vertices are
    taken from the compiled model, which re-centres each mesh and moves its geom to compensate; giving the geoms
    those compiled placements keeps every surface exactly where it was. Returns ({mesh name: (vertices,
    faces)}, {geom index: (mesh name, pos, quat)}), geom indices in fr3.xml order.
    """
    model = _load_fr3_spec().compile()
    is_mesh = model.geom_type == int(mujoco.mjtGeom.mjGEOM_MESH)
    collides = (model.geom_contype != 0) | (model.geom_conaffinity != 0)
    collision_meshes = set(model.geom_dataid[is_mesh & collides].tolist())
    meshes = {}
    for mesh_id in range(model.nmesh):
        if mesh_id in collision_meshes:
            continue
        vertex_start, face_start = model.mesh_vertadr[mesh_id], model.mesh_faceadr[mesh_id]
        vertices = model.mesh_vert[vertex_start:vertex_start + model.mesh_vertnum[mesh_id]].astype(float)
        faces = model.mesh_face[face_start:face_start + model.mesh_facenum[mesh_id]]
        small_vertices, small_faces = _cluster_vertices(vertices, faces, cell)
        if len(small_vertices) >= 20:  # tiny meshes (buttons) would collapse; they cost nothing anyway
            meshes[model.mesh(mesh_id).name] = (small_vertices, small_faces)
    placements = {}
    for geom_id in np.flatnonzero(is_mesh & ~collides):
        name = model.mesh(model.geom_dataid[geom_id]).name
        if name in meshes:
            placements[int(geom_id)] = (name, model.geom_pos[geom_id].copy(), model.geom_quat[geom_id].copy())
    return meshes, placements


def _use_decimated_meshes(spec: mujoco.MjSpec, cell: float) -> None:
    """Swap the visual-only meshes of a freshly loaded fr3.xml spec for decimated ones."""
    meshes, placements = _decimated_visual_meshes(cell)
    for name, (vertices, faces) in meshes.items():
        mesh = spec.mesh(name)
        mesh.file = ""
        mesh.uservert = vertices.ravel().tolist()
        mesh.userface = faces.ravel().tolist()
    for index, geom in enumerate(spec.geoms):
        if index in placements:
            name, pos, quat = placements[index]
            if geom.meshname != name:
                raise RuntimeError(f"fr3.xml geom {index} draws {geom.meshname!r}, expected {name!r}")
            geom.pos = pos.tolist()
            geom.quat = quat.tolist()


def _vector3(value, name: str) -> np.ndarray:
    vector = np.asarray(value, dtype=float).reshape(-1)
    if vector.shape != (3,) or not np.all(np.isfinite(vector)):
        raise ValueError(f"{name} must be 3 finite numbers, got {value!r}")
    return vector


def _box_corners(box) -> tuple[np.ndarray, np.ndarray]:
    try:
        low, high = (np.asarray(corner, dtype=float).reshape(3) for corner in box)
    except (TypeError, ValueError):
        raise ValueError(f"workspace_box must be ((x, y, z) min, (x, y, z) max), got {box!r}") from None
    if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high)) and np.all(low < high)):
        raise ValueError(f"workspace_box needs finite corners with min < max, got {box!r}")
    return low, high


# MuJoCo cameras have y up and look along -z; the ROS optical frame has y down and looks along +z.
OPTICAL_FROM_MUJOCO_CAMERA = np.diag([1.0, -1.0, -1.0])


def _yaw_quaternion_wxyz(yaw: float) -> list[float]:
    return [np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)]  # MuJoCo order (w, x, y, z)


class _Gripper:
    """Franka-hand-like gripper commands over the tendon position actuator plus a squeeze motor.

    A move ramps the commanded width toward the goal at the commanded speed. A grasp does the same but stops
    ramping once the fingers are held open by something (measured width lagging the command by more than
    BLOCKED_LAG), then squeezes with the commanded force per finger for as long as something is held. If the
    object slips out (the fingers close past where they were blocked), the squeeze stops and the ramp goes on:
    squeezing on nothing would slam the light fingers through their joint limits.
    """

    BLOCKED_LAG = 0.006  # m of width; a free finger pair tracks the ramp much closer than this
    # m of width the fingers must close past where they were blocked before the object counts as lost: more
    # than a squeezed object's give and its shifting in the fingers, less than any graspable object's width.
    LOST_MARGIN = 0.012
    STOPPED_SPEED = 0.005  # m/s summed over both fingers

    def __init__(self, width: float):
        self.commanded_width = width
        self.goal_width = width
        self.speed = 0.1
        self.force = 0.0
        self.grasp = False
        self.blocked = False
        self.blocked_width = 0.0

    def command(self, width: float, speed: float, force: float, grasp: bool) -> None:
        self.goal_width = width
        self.speed = speed
        self.force = force
        self.grasp = grasp
        self.blocked = False

    def ramping(self) -> bool:
        return not self.blocked and self.commanded_width != self.goal_width

    def stop(self) -> None:
        """libfranka's Gripper::stop: whatever command runs ends where the fingers are, the squeeze released."""
        self.goal_width = self.commanded_width
        self.force = 0.0
        self.grasp = self.blocked = False

    def update(self, dt: float, measured_width: float) -> tuple[float, float]:
        """Advance one control period; returns (width for the position actuator, squeeze force per finger)."""
        if self.blocked and measured_width < self.blocked_width - self.LOST_MARGIN:
            self.blocked = False  # lost the object
        if self.ramping():
            step = self.speed * dt
            self.commanded_width += min(max(self.goal_width - self.commanded_width, -step), step)
            if self.grasp and measured_width - self.commanded_width > self.BLOCKED_LAG:
                self.blocked = True
                self.blocked_width = measured_width
                self.commanded_width = measured_width  # hold here; the squeeze motor provides the force
        return self.commanded_width, (self.force if self.blocked else 0.0)


class FrankaWorld:
    """The simulated FR3 pick-and-place world.

    Not thread-safe, and its OpenGL context belongs to the thread that built it: drive it from one thread.
    `model` and `data` are the MuJoCo structures, for inspection; change the world through the methods.
    """

    def __init__(self, scene: SceneDescription, *, image_width: int = 320, image_height: int = 240,
                 fovy: float = DEFAULT_FOVY, camera_position=DEFAULT_CAMERA_POSITION,
                 camera_target=DEFAULT_CAMERA_TARGET, workspace_box=None, mesh_cell: float = DEFAULT_MESH_CELL,
                 table_rgba=TABLE_RGBA, light_rgb=(1.0, 1.0, 1.0)):
        """workspace_box: ((x, y, z) min, (x, y, z) max) the TCP target is clipped to; by default the region in
        front of the robot from 1 cm above the table (the fingertips reach ~9 mm below the TCP) to 0.8 m up.
        mesh_cell: the robot's visual meshes are decimated by merging vertices within cells of this size (m) for
        faster rendering; 0 draws the full meshes. Physics never uses them.
        table_rgba: the table top's colour; light_rgb: per-channel scale of every light (appearance variations)."""
        if not isinstance(scene, SceneDescription):
            raise ValueError(f"scene must be a SceneDescription, got {type(scene).__name__}")
        for name, value in (("image_width", image_width), ("image_height", image_height)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 < value <= 4096:
                raise ValueError(f"{name} must be an integer in 1..4096, got {value!r}")
        if not np.isfinite(fovy) or not 0 < fovy < 180:
            raise ValueError(f"fovy must be in (0, 180) degrees, got {fovy!r}")
        self._image_size = (int(image_width), int(image_height))
        self._fovy = float(fovy)
        if not np.isfinite(mesh_cell) or not 0 <= mesh_cell <= 0.02:
            raise ValueError(f"mesh_cell must be in [0, 0.02] m, got {mesh_cell!r}")
        self._mesh_cell = float(mesh_cell)
        self._camera_position = _vector3(camera_position, "camera_position")
        self._camera_rotation = look_at(self._camera_position, _vector3(camera_target, "camera_target"))[:3, :3] \
            @ OPTICAL_FROM_MUJOCO_CAMERA
        self._workspace_box_option = None if workspace_box is None else _box_corners(workspace_box)
        self._table_rgba = tuple(float(v) for v in np.asarray(table_rgba, dtype=float).reshape(-1))
        self._light_rgb = np.asarray(light_rgb, dtype=float).reshape(-1)
        if len(self._table_rgba) != 4 or not all(0 <= v <= 1 for v in self._table_rgba):
            raise ValueError(f"table_rgba must be 4 numbers in [0, 1], got {table_rgba!r}")
        if self._light_rgb.shape != (3,) or not np.all((self._light_rgb >= 0) & (self._light_rgb <= 2)):
            raise ValueError(f"light_rgb must be 3 numbers in [0, 2], got {light_rgb!r}")
        self._renderer = None
        self._build(scene)
        self.reset()

    # ----------------------------------------------------------------------------------------------- lifecycle

    def reset(self, scene: SceneDescription | None = None) -> None:
        """Back to the initial state: arm at home, gripper open, objects where the scene puts them, TCP target at
        the current TCP pose. A different scene rebuilds the model."""
        if scene is not None and not isinstance(scene, SceneDescription):
            raise ValueError(f"scene must be a SceneDescription, got {type(scene).__name__}")
        if scene is not None and scene != self._scene:
            self._build(scene)
        mujoco.mj_resetDataKeyframe(self.model, self.data, self._home_key)
        mujoco.mj_forward(self.model, self.data)
        self._ik.reset(self.data.qpos[self._arm_qpos])
        self._gripper = _Gripper(MAX_GRASP_WIDTH)
        self._target = self.tcp_pose()

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

    def __enter__(self) -> "FrankaWorld":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    @property
    def scene(self) -> SceneDescription:
        return self._scene

    @property
    def time(self) -> float:
        """Simulated time in seconds since the last reset."""
        return float(self.data.time)

    @property
    def workspace_box(self) -> tuple[np.ndarray, np.ndarray]:
        return self._workspace_min.copy(), self._workspace_max.copy()

    # ------------------------------------------------------------------------------------------------- control

    def set_cartesian_target(self, pose: Pose) -> None:
        """New TCP target; the controller moves toward it from the next step. The position is clipped to the
        workspace box (the last line of defence behind the executor's own safety checks)."""
        if not isinstance(pose, Pose):
            raise ValueError(f"pose must be a Pose, got {type(pose).__name__}")
        if not (np.all(np.isfinite(pose.position)) and np.all(np.isfinite(pose.orientation))):
            raise ValueError(f"pose must be finite, got {pose!r}")
        self._target = Pose(np.clip(pose.position, self._workspace_min, self._workspace_max), pose.orientation)

    def cartesian_target(self) -> Pose:
        """The TCP target in use, after clipping."""
        return self._target

    def command_gripper(self, width: float, speed: float = 0.1, force: float = 20.0, grasp: bool = False) -> None:
        """Non-blocking. Move the fingers to `width` (m, total opening) at `speed` (m/s); with grasp=True close
        until blocked by an object (or `width` is reached) and then squeeze with `force` (N per finger)."""
        if not np.isfinite(width) or not 0.0 <= width <= MAX_GRASP_WIDTH:
            raise ValueError(f"width must be in [0, {MAX_GRASP_WIDTH}] m, got {width!r}")
        if not np.isfinite(speed) or not 0.0 < speed <= 0.2:
            raise ValueError(f"speed must be in (0, 0.2] m/s, got {speed!r}")
        if not np.isfinite(force) or not 0.0 <= force <= MAX_GRASP_FORCE:
            raise ValueError(f"force must be in [0, {MAX_GRASP_FORCE}] N, got {force!r}")
        self._gripper.command(float(width), float(speed), float(force), bool(grasp))

    def stop_gripper(self) -> None:
        """Stop the running gripper command, whichever goal sent it (as franka_gripper does on a cancel)."""
        self._gripper.stop()

    def gripper_width(self) -> float:
        """Measured opening between the fingers (m)."""
        return float(self.data.qpos[self._finger_qpos].sum())

    def gripper_moving(self) -> bool:
        """True while a gripper command is in progress: the command still ramping or the fingers still moving
        (a move blocked by an object ends when the fingers stop, as on the real hand)."""
        finger_speed = float(np.abs(self.data.qvel[self._finger_dof]).sum())
        return self._gripper.ramping() or finger_speed > _Gripper.STOPPED_SPEED

    def step(self, n_steps: int = 1) -> None:
        """Advance the physics by n_steps of 1 ms, running the controller and the gripper every step."""
        if isinstance(n_steps, bool) or not isinstance(n_steps, (int, np.integer)) or n_steps < 0:
            raise ValueError(f"n_steps must be a non-negative integer, got {n_steps!r}")
        model, data = self.model, self.data
        for _ in range(n_steps):
            data.ctrl[self._arm_actuators] = self._ik.step(self._target, TIMESTEP)
            width, squeeze = self._gripper.update(TIMESTEP, self.gripper_width())
            data.ctrl[self._hand_actuator] = width / MAX_GRASP_WIDTH * HAND_CTRL_MAX
            data.ctrl[self._squeeze_actuator] = -2.0 * squeeze  # the tendon splits its force over two fingers
            mujoco.mj_step(model, data)

    # --------------------------------------------------------------------------------------------------- state

    def tcp_pose(self) -> Pose:
        """Measured TCP pose in the base frame."""
        quaternion = np.empty(4)
        mujoco.mju_mat2Quat(quaternion, self.data.site_xmat[self._tcp_site])
        return Pose(self.data.site_xpos[self._tcp_site].copy(), np.roll(quaternion, -1))

    def joint_names(self) -> list[str]:
        return list(ARM_JOINTS + FINGER_JOINTS)

    def joint_positions(self) -> np.ndarray:
        return self.data.qpos[self._joint_qpos].copy()

    def joint_velocities(self) -> np.ndarray:
        return self.data.qvel[self._joint_dof].copy()

    def object_position(self, name: str) -> np.ndarray:
        """Centre of a scene object in the base frame (for a container: the centre of its base on the table)."""
        if name not in self._item_bodies:
            raise KeyError(f"no object or container named {name!r}; have {sorted(self._item_bodies)}")
        return self.data.xpos[self._item_bodies[name]].copy()

    def object_velocity(self, name: str) -> np.ndarray:
        """Linear velocity of a scene object's centre in the base frame."""
        if name not in self._object_dofs:
            raise KeyError(f"no movable object named {name!r}; have {sorted(self._object_dofs)}")
        return self.data.qvel[self._object_dofs[name]:self._object_dofs[name] + 3].copy()

    def check_success(self, max_speed: float = 0.05) -> bool:
        """The target object rests inside the target container: centre within the floor's footprint and below
        the wall top, not held by the hand, and nearly still (speed below max_speed m/s)."""
        obj = self._scene.target_object
        container = self._scene.target_container
        position = self.object_position(obj.name)
        offset = np.abs(position[:2] - np.asarray(container.position))
        inside = bool(np.all(offset < container.inner_half_extent))
        wall_top = self._scene.table_height + CONTAINER_BASE_THICKNESS + container.wall_height
        below_rim = position[2] < wall_top
        near_hand = np.linalg.norm(self.tcp_pose().position - position) < 0.05
        closed_on_it = self.gripper_width() < 2 * obj.footprint_radius + 0.005  # narrower than its widest span
        held = near_hand and closed_on_it
        still = np.linalg.norm(self.object_velocity(obj.name)) < max_speed
        return inside and below_rim and not held and still

    # ----------------------------------------------------------------------------------------------- rendering

    def segmentation_ids(self) -> dict[str, int]:
        """Segmentation id of every scene object and container (others are 0)."""
        return dict(self._segmentation_ids)

    def camera(self) -> PinholeCamera:
        """Intrinsics and ROS optical-frame pose (x right, y down, z forward) of the rendered images."""
        base_from_camera = np.eye(4)
        base_from_camera[:3, :3] = self.data.cam_xmat[self._camera_id].reshape(3, 3) @ OPTICAL_FROM_MUJOCO_CAMERA
        base_from_camera[:3, 3] = self.data.cam_xpos[self._camera_id]
        width, height = self._image_size
        return PinholeCamera.from_fovy(width, height, self._fovy, base_from_camera)

    def render(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """RGB uint8 (H, W, 3), depth float32 (H, W) in metres along the optical axis, segmentation int32 (H, W)
        with segmentation_ids() values. Rows run top to bottom."""
        renderer = self._renderer
        renderer.update_scene(self.data, camera=self._camera_id)
        # mujoco.Renderer flips the OpenGL rows and converts the depth buffer to metres itself.
        renderer.disable_depth_rendering()
        renderer.disable_segmentation_rendering()
        rgb = renderer.render()
        renderer.enable_depth_rendering()
        depth = renderer.render()
        renderer.enable_segmentation_rendering()
        raw = renderer.render()
        renderer.disable_segmentation_rendering()
        is_geom = raw[..., 1] == int(mujoco.mjtObj.mjOBJ_GEOM)  # an enum object would compare per element
        segmentation = np.where(is_geom, self._geom_segmentation[raw[..., 0] + 1], BACKGROUND_ID).astype(np.int32)
        return rgb, depth, segmentation

    # ------------------------------------------------------------------------------------------------ building

    def _build(self, scene: SceneDescription) -> None:
        self.close()
        self._scene = scene
        spec = self._make_spec(scene)
        self.model = spec.compile()
        self.data = mujoco.MjData(self.model)
        model = self.model

        def ids(kind, names):
            return np.array([mujoco.mj_name2id(model, kind, n) for n in names])

        arm_joints = ids(mujoco.mjtObj.mjOBJ_JOINT, ARM_JOINTS)
        finger_joints = ids(mujoco.mjtObj.mjOBJ_JOINT, FINGER_JOINTS)
        self._arm_qpos = model.jnt_qposadr[arm_joints]
        self._finger_qpos = model.jnt_qposadr[finger_joints]
        self._finger_dof = model.jnt_dofadr[finger_joints]
        self._joint_qpos = np.concatenate([self._arm_qpos, self._finger_qpos])
        self._joint_dof = np.concatenate([model.jnt_dofadr[arm_joints], self._finger_dof])
        self._arm_actuators = ids(mujoco.mjtObj.mjOBJ_ACTUATOR, ARM_JOINTS)
        self._hand_actuator = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_ACTUATOR, "hand")
        self._squeeze_actuator = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_ACTUATOR, "hand_squeeze")
        self._tcp_site = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, "tcp")
        self._camera_id = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, CAMERA_NAME)
        self._home_key = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_KEY, "home")

        items = [o.name for o in scene.objects] + [c.name for c in scene.containers]
        self._item_bodies = {name: mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, _body_name(name))
                             for name in items}
        self._object_dofs = {o.name: int(model.jnt_dofadr[model.body_jntadr[self._item_bodies[o.name]]])
                             for o in scene.objects}
        self._segmentation_ids = {name: i + 1 for i, name in enumerate(items)}
        # Lookup from (geom id + 1) to segmentation id; index 0 is MuJoCo's "no geom" (-1).
        self._geom_segmentation = np.full(model.ngeom + 1, BACKGROUND_ID, dtype=np.int32)
        for name, body in self._item_bodies.items():
            self._geom_segmentation[1 + np.flatnonzero(model.geom_bodyid == body)] = self._segmentation_ids[name]

        if self._workspace_box_option is None:
            table = scene.table_height
            self._workspace_min = np.array([0.15, -0.6, table + 0.01])
            self._workspace_max = np.array([0.85, 0.6, table + 0.8])
        else:
            self._workspace_min, self._workspace_max = self._workspace_box_option

        self._ik = DifferentialIK(model, "tcp", list(ARM_JOINTS), HOME_ARM_POSITIONS)
        width, height = self._image_size
        try:
            self._renderer = mujoco.Renderer(model, height=height, width=width)
        except mujoco.FatalError as error:
            hint = (" mujoco was imported before hamster_sim.world with MUJOCO_GL unset: export MUJOCO_GL=egl or "
                    "import hamster_sim.world first." if _GL_CHOSEN_WITHOUT_US else "")
            raise RuntimeError(f"cannot create an OpenGL context for rendering: {error}.{hint}") from error

    def _make_spec(self, scene: SceneDescription) -> mujoco.MjSpec:
        spec = _load_fr3_spec()
        if self._mesh_cell > 0:
            _use_decimated_meshes(spec, self._mesh_cell)
        spec.option.timestep = TIMESTEP
        spec.option.cone = mujoco.mjtCone.mjCONE_ELLIPTIC  # more faithful friction for pinch grasps
        spec.option.impratio = 10.0  # stiffer friction than normal force: less creep of held objects
        width, height = self._image_size
        spec.visual.global_.offwidth = max(width, 640)
        spec.visual.global_.offheight = max(height, 480)
        spec.visual.quality.shadowsize = 0
        spec.visual.headlight.ambient = (0.35 * self._light_rgb).tolist()
        spec.visual.headlight.diffuse = (0.45 * self._light_rgb).tolist()
        spec.visual.headlight.specular = [0.0, 0.0, 0.0]

        self._configure_robot(spec)
        world = spec.worldbody
        table = scene.table_height
        world.add_light(name="overhead", type=mujoco.mjtLightType.mjLIGHT_DIRECTIONAL, pos=[0.4, 0.0, 2.0],
                        dir=[-0.2, 0.0, -1.0], diffuse=(0.5 * self._light_rgb).tolist(), specular=[0.1, 0.1, 0.1],
                        castshadow=False)
        floor_z = table - FLOOR_BELOW_TABLE
        world.add_geom(name="floor", type=mujoco.mjtGeom.mjGEOM_PLANE, pos=[0, 0, floor_z], size=[10, 10, 0.05],
                       rgba=FLOOR_RGBA)
        world.add_geom(name="table", type=mujoco.mjtGeom.mjGEOM_BOX,
                       pos=[sum(TABLE_X) / 2, sum(TABLE_Y) / 2, table - TABLE_THICKNESS / 2],
                       size=[(TABLE_X[1] - TABLE_X[0]) / 2, (TABLE_Y[1] - TABLE_Y[0]) / 2, TABLE_THICKNESS / 2],
                       rgba=list(self._table_rgba))
        camera_quaternion = np.empty(4)
        mujoco.mju_mat2Quat(camera_quaternion, self._camera_rotation.ravel())
        world.add_camera(name=CAMERA_NAME, pos=self._camera_position.tolist(), quat=camera_quaternion.tolist(),
                         fovy=self._fovy)

        for container in scene.containers:
            self._add_container(world, container, table)
        object_qpos = []
        for obj in scene.objects:
            body = world.add_body(name=_body_name(obj.name), pos=list(obj.position),
                                  quat=_yaw_quaternion_wxyz(obj.yaw))
            body.add_freejoint()
            geom_type = mujoco.mjtGeom.mjGEOM_BOX if obj.shape == "box" else mujoco.mjtGeom.mjGEOM_CYLINDER
            body.add_geom(type=geom_type, size=list(obj.size) + [0.0] * (3 - len(obj.size)), rgba=list(obj.rgba),
                          density=OBJECT_DENSITY, friction=list(GRASP_FRICTION), condim=GRASP_CONDIM,
                          solref=list(OBJECT_SOLREF))
            object_qpos += list(obj.position) + _yaw_quaternion_wxyz(obj.yaw)

        # The home keyframe must cover every qpos/ctrl: arm at home, fingers open, objects where the scene says.
        home = spec.key("home")
        home.qpos = list(HOME_ARM_POSITIONS) + [MAX_GRASP_WIDTH / 2] * 2 + object_qpos
        home.ctrl = list(HOME_ARM_POSITIONS) + [HAND_CTRL_MAX, 0.0]
        return spec

    @staticmethod
    def _configure_robot(spec: mujoco.MjSpec) -> None:
        # Gravity compensation on the moving robot bodies, as the real arm's controller does; the position
        # actuators then settle on their commands without a gravity sag.
        for body in spec.bodies:
            moving_link = body.name.startswith("fr3_link") and body.name != "fr3_link0"
            if moving_link or body.name in ("hand", "left_finger", "right_finger"):
                body.gravcomp = 1.0
        spec.body("hand").add_site(name="tcp", pos=[0.0, 0.0, TCP_OFFSET], size=[0.002, 0.0, 0.0], group=4)
        # fr3.xml gives the fingers the arm joints' armature and friction and a soft 100 N/m tendon servo, so they
        # lag centimetres behind commands; a stiffer servo over light fingers tracks within ~1 mm (same ctrl map).
        for joint in FINGER_JOINTS:
            spec.joint(joint).armature = 0.005
            spec.joint(joint).frictionloss = 0.0
        hand = spec.actuator("hand")
        hand.gainprm[0] = HAND_STIFFNESS * (MAX_GRASP_WIDTH / 2) / HAND_CTRL_MAX
        hand.biasprm[1] = -HAND_STIFFNESS
        hand.biasprm[2] = -HAND_DAMPING
        for finger in ("left_finger", "right_finger"):
            body = spec.body(finger)
            for geom in body.geoms:
                if geom.contype or geom.conaffinity:
                    geom.friction = list(GRASP_FRICTION)
                    geom.condim = GRASP_CONDIM
            # fr3.xml's fingertip is two 6 mm columns of small boxes with a gap between them; a cylinder held on
            # one column creeps to its edge and squirts out. One flat pad over both columns, flush with their
            # inner faces, is the rubber pad of the real fingertip.
            body.add_geom(name=f"{finger}_pad", type=mujoco.mjtGeom.mjGEOM_BOX, pos=[0.0, 0.002, 0.0445],
                          size=[0.0085, 0.002, 0.0095], friction=list(GRASP_FRICTION), condim=GRASP_CONDIM,
                          group=3, density=0.0)
        squeeze = spec.add_actuator(name="hand_squeeze", target="split")
        squeeze.trntype = mujoco.mjtTrn.mjTRN_TENDON
        squeeze.set_to_motor()
        squeeze.ctrllimited = True
        squeeze.ctrlrange = [-2.0 * MAX_GRASP_FORCE, 0.0]

    @staticmethod
    def _add_container(world, container, table: float) -> None:
        """An open square tray: a floor plate and four walls, fixed to the world."""
        cx, cy = container.position
        body = world.add_body(name=_body_name(container.name), pos=[cx, cy, table])
        outer = container.outer_half_extent
        rgba = list(container.rgba)
        body.add_geom(type=mujoco.mjtGeom.mjGEOM_BOX, pos=[0, 0, CONTAINER_BASE_THICKNESS / 2],
                      size=[outer, outer, CONTAINER_BASE_THICKNESS / 2], rgba=rgba)
        wall_half_height = (CONTAINER_BASE_THICKNESS + container.wall_height) / 2
        half_thickness = CONTAINER_WALL_THICKNESS / 2
        along = outer - half_thickness  # wall centre distance from the tray centre
        for x, y, half_x, half_y in ((along, 0, half_thickness, outer), (-along, 0, half_thickness, outer),
                                     (0, along, outer, half_thickness), (0, -along, outer, half_thickness)):
            body.add_geom(type=mujoco.mjtGeom.mjGEOM_BOX, pos=[x, y, wall_half_height],
                          size=[half_x, half_y, wall_half_height], rgba=rgba)


def _body_name(item_name: str) -> str:
    return "item:" + item_name
