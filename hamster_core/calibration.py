"""Camera-to-base calibration and depth -> base-frame point clouds, ROS-free.

A calibration file (YAML) holds the pose of the camera's *optical* frame (x right, y down, z forward, as the
images are) in the robot's base frame:

    base_frame: fr3_link0                  # franka_ros2's base; the runtime's poses are in this frame
    camera_frame: camera_color_optical_frame
    translation: [1.35, 0.0, 0.95]         # m, optical frame origin in the base frame
    rotation: [x, y, z, w]                 # unit quaternion, base <- optical frame
    image_width: 640                       # optional: the calibrated stream's size; checked against camera_info
    image_height: 480
    source: "easy_handeye2, 2026-11-30, 18 samples"   # free text

Produce it from a hand-eye calibration result (easy_handeye2, MoveIt calibration, or any tool that reports the
camera's pose in the base frame as translation + quaternion) with

    python -m hamster_core.calibration write --translation X Y Z --rotation QX QY QZ QW \
        [--child-frame camera_link [--link-to-optical TX TY TZ QX QY QZ QW]] --out config/calibration.yaml

A result for `camera_link` (the RealSense body frame) is turned into the optical frame with the driver's
camera_link -> camera_color_optical_frame transform (`ros2 run tf2_ros tf2_echo camera_link
camera_color_optical_frame`; without --link-to-optical the pure axis rotation is used, which ignores the
colour imager's ~1.5 cm offset).
"""
from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hamster_core.camera import check_rigid_transform
from hamster_core.geometry import Pose, quaternion_to_matrix

# camera_link (x forward, y left, z up) <- optical frame (x right, y down, z forward)
LINK_FROM_OPTICAL = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
KEYS = {"base_frame", "camera_frame", "translation", "rotation", "image_width", "image_height", "source"}


class CalibrationError(ValueError):
    """A calibration file or camera stream that cannot be used (the message says what is wrong)."""


@dataclass(frozen=True)
class CameraCalibration:
    base_from_camera: np.ndarray           # 4x4, base <- camera optical frame
    base_frame: str = "base"
    camera_frame: str = "camera_color_optical_frame"
    image_width: int | None = None
    image_height: int | None = None
    source: str = ""

    def __post_init__(self):
        try:
            matrix = check_rigid_transform(self.base_from_camera, "base_from_camera")
        except ValueError as error:
            raise CalibrationError(str(error)) from None
        for name in ("image_width", "image_height"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value <= 0):
                raise CalibrationError(f"{name} must be a positive integer, got {value!r}")
        if not self.base_frame or not self.camera_frame:
            raise CalibrationError("base_frame and camera_frame must be named")
        object.__setattr__(self, "base_from_camera", matrix)

    @property
    def pose(self) -> Pose:
        return Pose.from_matrix(self.base_from_camera)

    def as_dict(self) -> dict:
        pose = self.pose
        data = {"base_frame": self.base_frame, "camera_frame": self.camera_frame,
                "translation": [round(float(v), 6) for v in pose.position],
                "rotation": [round(float(v), 9) for v in pose.orientation]}
        if self.image_width is not None:
            data.update(image_width=self.image_width, image_height=self.image_height)
        if self.source:
            data["source"] = self.source
        return data


def _vector(data: dict, key: str, size: int, path) -> np.ndarray:
    value = data.get(key)
    try:
        vector = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        vector = np.array([])
    if vector.shape != (size,) or not np.all(np.isfinite(vector)):
        raise CalibrationError(f"calibration {path}: {key} must be {size} finite numbers, got {value!r}")
    return vector


def calibration_from_dict(data, path="<dict>") -> CameraCalibration:
    if not isinstance(data, dict):
        raise CalibrationError(f"calibration {path}: expected a mapping, got {type(data).__name__}")
    unknown = set(data) - KEYS
    if unknown:
        raise CalibrationError(f"calibration {path}: unknown keys {sorted(unknown)}; known: {sorted(KEYS)}")
    translation = _vector(data, "translation", 3, path)
    rotation = _vector(data, "rotation", 4, path)
    norm = float(np.linalg.norm(rotation))
    if abs(norm - 1.0) > 1e-3:
        raise CalibrationError(f"calibration {path}: rotation must be a unit quaternion [x, y, z, w], norm is {norm:.4f}")
    matrix = np.eye(4)
    matrix[:3, :3] = quaternion_to_matrix(rotation / norm)
    matrix[:3, 3] = translation
    if ("image_width" in data) != ("image_height" in data):
        raise CalibrationError(f"calibration {path}: give both image_width and image_height, or neither")
    return CameraCalibration(matrix, str(data.get("base_frame", "base")),
                             str(data.get("camera_frame", "camera_color_optical_frame")),
                             data.get("image_width"), data.get("image_height"), str(data.get("source", "")))


def load_calibration(path: Path | str) -> CameraCalibration:
    import yaml
    path = Path(path)
    if not path.is_file():
        raise CalibrationError(f"calibration file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise CalibrationError(f"calibration {path} is not valid YAML: {error}") from None
    return calibration_from_dict(data, path)


def save_calibration(calibration: CameraCalibration, path: Path | str, comment: str = "") -> None:
    import yaml
    header = "# Camera optical frame in the robot base frame (hamster_core.calibration).\n"
    if comment:
        header += "".join(f"# {line}\n" for line in comment.splitlines())
    Path(path).write_text(header + yaml.safe_dump(calibration.as_dict(), sort_keys=False, default_flow_style=None))


def from_hand_eye(translation, rotation, child_frame: str = "optical", link_to_optical=None,
                  **kwargs) -> CameraCalibration:
    """A hand-eye result (pose of `child_frame` in the base frame) -> calibration of the optical frame.

    child_frame "optical": the result already is the optical frame. "camera_link": composed with
    `link_to_optical` (translation 3 + quaternion xyzw 4, the driver's TF) or the pure axis rotation."""
    pose = Pose(translation, rotation).matrix()
    if child_frame == "camera_link":
        link = np.eye(4)
        if link_to_optical is None:
            link[:3, :3] = LINK_FROM_OPTICAL
        else:
            values = np.asarray(link_to_optical, dtype=float)
            if values.shape != (7,):
                raise CalibrationError(f"link_to_optical must be 7 numbers (tx ty tz qx qy qz qw), got {link_to_optical!r}")
            link = Pose(values[:3], values[3:]).matrix()
        pose = pose @ link
    elif child_frame != "optical":
        raise CalibrationError(f"child_frame must be 'optical' or 'camera_link', got {child_frame!r}")
    return CameraCalibration(pose, **kwargs)


# -- depth -> points ------------------------------------------------------------------------------------------

def depth_in_metres(depth: np.ndarray, encoding: str, depth_scale: float = 0.001) -> np.ndarray:
    """A depth image as float32 metres, NaN where there is no measurement. 16UC1/mono16 are in units of
    `depth_scale` (RealSense: mm, 0.001), 32FC1 in metres."""
    if encoding in ("16UC1", "mono16"):
        metres = depth.astype(np.float32) * np.float32(depth_scale)
        metres[depth == 0] = np.nan
        return metres
    if encoding == "32FC1":
        metres = depth.astype(np.float32, copy=True)
        metres[~np.isfinite(metres) | (metres <= 0)] = np.nan
        return metres
    raise CalibrationError(f"depth encoding {encoding!r} is not supported (16UC1, mono16 or 32FC1)")


class CloudProjector:
    """Depth image -> base-frame points with the rays for one camera cached (vectorised, no per-point Python).
    Pixel centres as in hamster_core.camera: pixel (i, j) is at (j + 0.5, i + 0.5)."""

    def __init__(self, width: int, height: int, fx: float, fy: float, cx: float, cy: float,
                 base_from_camera: np.ndarray, stride: int = 1):
        if not 1 <= int(stride) <= 16:
            raise ValueError(f"stride must be in [1, 16], got {stride!r}")
        if width <= 0 or height <= 0 or not (fx > 0 and fy > 0):
            raise ValueError(f"invalid camera {width}x{height} fx={fx} fy={fy}")
        self.key = (int(width), int(height), float(fx), float(fy), float(cx), float(cy), int(stride))
        self.stride = int(stride)
        v, u = np.mgrid[0:height:stride, 0:width:stride]
        rays = np.stack([(u + 0.5 - cx) / fx, (v + 0.5 - cy) / fy, np.ones(u.shape)], axis=-1).reshape(-1, 3)
        transform = np.asarray(base_from_camera, dtype=float)
        # base = R @ (ray * d) + t  ==  d * (R @ ray) + t
        self._base_rays = (rays @ transform[:3, :3].T).astype(np.float32)
        self._origin = transform[:3, 3].astype(np.float32)

    def points(self, depth_m: np.ndarray, colors: np.ndarray | None = None):
        """Depth (H, W) float metres (NaN = none) [+ colours (H, W, 3) uint8] -> (N, 3) float32 points in the
        base frame and (N, 3) colours for the finite ones."""
        width, height = self.key[0], self.key[1]
        if depth_m.shape != (height, width):
            raise CalibrationError(f"depth image is {depth_m.shape[1]}x{depth_m.shape[0]}, the camera is {width}x{height}")
        s = self.stride
        depth = depth_m[::s, ::s].reshape(-1)
        valid = np.isfinite(depth)
        points = self._base_rays[valid] * depth[valid, None] + self._origin
        if colors is None:
            return points, None
        return points, colors[::s, ::s].reshape(-1, 3)[valid]


def stream_problems(info_size: tuple[int, int], k: np.ndarray, depth_size: tuple[int, int] | None,
                    color_size: tuple[int, int] | None, calibration: CameraCalibration | None) -> list[str]:
    """Why the intrinsics, the images and the calibration do not agree (empty: they do). Sizes are (w, h)."""
    problems = []
    width, height = info_size
    k = np.asarray(k, dtype=float).reshape(3, 3)
    if width <= 0 or height <= 0:
        problems.append(f"camera_info has no image size ({width}x{height})")
    if not (k[0, 0] > 0 and k[1, 1] > 0):
        problems.append(f"camera_info K has no focal length (fx={k[0, 0]}, fy={k[1, 1]})")
    elif not (0 < k[0, 2] < width and 0 < k[1, 2] < height):
        problems.append(f"camera_info principal point ({k[0, 2]:.1f}, {k[1, 2]:.1f}) is outside the {width}x{height} image")
    for name, size in (("depth image", depth_size), ("colour image", color_size)):
        if size is not None and tuple(size) != (width, height):
            problems.append(f"{name} is {size[0]}x{size[1]} but camera_info says {width}x{height} "
                            "(is the depth aligned to colour? align_depth.enable:=true)")
    if calibration is not None and calibration.image_width is not None \
            and (calibration.image_width, calibration.image_height) != (width, height):
        problems.append(f"the calibration was made for {calibration.image_width}x{calibration.image_height} "
                        f"images, the camera streams {width}x{height}")
    return problems


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hamster_core.calibration",
                                     description="Write or check a camera-to-base calibration file.")
    commands = parser.add_subparsers(dest="command", required=True)
    write = commands.add_parser("write", help="from a hand-eye calibration result")
    write.add_argument("--translation", type=float, nargs=3, required=True, metavar=("X", "Y", "Z"))
    write.add_argument("--rotation", type=float, nargs=4, required=True, metavar=("QX", "QY", "QZ", "QW"))
    write.add_argument("--child-frame", choices=("optical", "camera_link"), default="optical",
                       help="which camera frame the result is for")
    write.add_argument("--link-to-optical", type=float, nargs=7, default=None,
                       metavar=("TX", "TY", "TZ", "QX", "QY", "QZ", "QW"))
    write.add_argument("--base-frame", default="base")
    write.add_argument("--camera-frame", default="camera_color_optical_frame")
    write.add_argument("--image-size", type=int, nargs=2, default=None, metavar=("W", "H"))
    write.add_argument("--source", default="")
    write.add_argument("--out", type=Path, required=True)
    check = commands.add_parser("check", help="load a file and print the camera pose")
    check.add_argument("file", type=Path)
    args = parser.parse_args(argv)
    try:
        if args.command == "write":
            width, height = args.image_size if args.image_size else (None, None)
            calibration = from_hand_eye(args.translation, args.rotation, args.child_frame, args.link_to_optical,
                                        base_frame=args.base_frame, camera_frame=args.camera_frame,
                                        image_width=width, image_height=height, source=args.source)
            save_calibration(calibration, args.out)
            print(f"wrote {args.out}")
        else:
            calibration = load_calibration(args.file)
        pose = calibration.pose
        view = calibration.base_from_camera[:3, 2]
        print(f"camera at {np.round(pose.position, 4).tolist()} in {calibration.base_frame}, looking along "
              f"{np.round(view, 3).tolist()} ({math.degrees(math.asin(max(-1.0, min(1.0, -view[2])))):.1f} deg down)")
    except (CalibrationError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
