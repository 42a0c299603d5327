"""The synthetic table scene of the policy tests: a camera looking at a table with a cube and a tray, the points on
the surfaces it sees with their ground-truth masks, and an observation of it with a pick-and-place path
(shared by the path follower, conditioning, rvt2, 3dda and training tests)."""
import numpy as np

from hamster_core.camera import PinholeCamera, look_at
from hamster_core.geometry import TOP_DOWN, Pose
from hamster_core.lifting import ProjectedCloud
from hamster_core.path2d import Path2D
from hamster_core.policies.base import Observation

CUBE_CENTER = np.array([0.55, 0.10, 0.025])      # 5 cm cube on the table (z = 0)
CUBE_HALF = 0.025
TRAY_CENTER = np.array([0.45, -0.15])            # 14 cm tray, 4 cm walls
TRAY_HALF, TRAY_WALL = 0.07, 0.04


CAMERA = PinholeCamera.from_fovy(320, 240, 50, look_at(np.array([1.1, 0.0, 0.6]), np.array([0.5, 0.0, 0.0])))


def synthetic_scene(spacing=0.004):
    """Points on the visible surfaces of a table, a cube and a tray, and their ground-truth masks."""
    g = np.arange(-0.5, 0.5, spacing)
    xx, yy = np.meshgrid(g + 0.5, g)
    table = np.stack([xx.ravel(), yy.ravel(), np.zeros(xx.size)], axis=1)
    inside_cube = (np.abs(table[:, 0] - CUBE_CENTER[0]) < CUBE_HALF) & (np.abs(table[:, 1] - CUBE_CENTER[1]) < CUBE_HALF)
    table = table[~inside_cube]
    f = np.arange(-CUBE_HALF, CUBE_HALF, spacing / 2)
    a, b = np.meshgrid(f, f)
    a, b = a.ravel(), b.ravel()
    cube = np.concatenate([
        np.stack([CUBE_CENTER[0] + a, CUBE_CENTER[1] + b, np.full_like(a, 2 * CUBE_HALF)], axis=1),     # top
        np.stack([np.full_like(a, CUBE_CENTER[0] + CUBE_HALF), CUBE_CENTER[1] + a, CUBE_HALF + b], axis=1),  # front
    ])
    w = np.arange(-TRAY_HALF, TRAY_HALF, spacing / 2)
    h = np.arange(0, TRAY_WALL, spacing / 2)
    ww, hh = np.meshgrid(w, h)
    ww, hh = ww.ravel(), hh.ravel()
    walls = np.concatenate([np.stack([TRAY_CENTER[0] + s * TRAY_HALF + 0 * ww, TRAY_CENTER[1] + ww, hh], axis=1)
                            for s in (-1, 1)] +
                           [np.stack([TRAY_CENTER[0] + ww, TRAY_CENTER[1] + s * TRAY_HALF + 0 * ww, hh], axis=1)
                            for s in (-1, 1)])
    points = np.concatenate([table, cube, walls]).astype(np.float32)
    labels = np.concatenate([np.zeros(len(table)), np.ones(len(cube)), np.full(len(walls), 2)])
    cloud = ProjectedCloud(points, CAMERA)
    label_image = np.where(cloud.index >= 0, labels[np.maximum(cloud.index, 0)], -1)
    masks = {"target_object": label_image == 1, "placement_area": label_image == 2}
    return points, masks


def path_through(points_3d, gripper):
    pixels, _ = CAMERA.project(np.array(points_3d))
    return Path2D(CAMERA.normalize(pixels), np.array(gripper, dtype=np.uint8))


# A coarser scene with random colours and a path that grasps the cube and releases above the tray.
POINTS, MASKS = synthetic_scene(spacing=0.008)
COLORS = np.random.default_rng(1).integers(0, 256, (len(POINTS), 3)).astype(np.uint8)
PATH = path_through([[0.40, 0.0, 0.30], [*CUBE_CENTER[:2], 0.05], [*TRAY_CENTER, 0.10]], [0, 1, 0])


def scene_observation(**changes) -> Observation:
    fields = dict(stamp=0.0, instruction="Pick up the red cube, put it in the tray!",
                  tcp_pose=Pose(np.array([0.4, 0.0, 0.4]), TOP_DOWN), gripper_width=0.08, points=POINTS,
                  colors=COLORS, camera=CAMERA, path=PATH, masks=MASKS)
    return Observation(**(fields | changes))
