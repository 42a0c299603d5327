"""Conversions between ROS messages and the core's numpy arrays and dataclasses.

The only module that knows both sides: nodes call these at their edges and hand the results to
`hamster_core`. Everything is vectorized (np.frombuffer / strided views, no per-pixel or per-point Python).
Messages are built, not published: no rclpy node code here.

Images: `image_to_numpy` returns an (H, W) array for one channel and (H, W, C) otherwise, in the stored
channel order (bgr8 stays BGR; `image_to_rgb` converts). By default the array is a read-only view of the
message's buffer where no conversion is needed (row padding is skipped with strides, not copied); pass
copy=True for a writable, C-contiguous array of its own.
"""
from __future__ import annotations

import array
import math
import re
import sys
from dataclasses import dataclass

import cv2
import numpy as np
from builtin_interfaces.msg import Time
from geometry_msgs.msg import PoseStamped
from hamster_msgs.msg import GripperCommand, GroundingMasks
from hamster_msgs.msg import Path2D as Path2DMsg
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField, RegionOfInterest
from std_msgs.msg import Header

from hamster_core.camera import PinholeCamera
from hamster_core.executor import GripperGoal
from hamster_core.geometry import Pose
from hamster_core.path2d import Path2D, PathError
from hamster_ros import _cloud_kernels

_NATIVE_BIG_ENDIAN = sys.byteorder == "big"


class ConversionError(ValueError):
    """A message that cannot be converted; the message names the encoding, sizes or field at fault."""


def _message_array(values: np.ndarray, typecode: str = "B") -> array.array:
    """A sequence field's array.array from a numpy array of the matching item size, in one memcpy.

    Assign it to a message constructed with check_fields=True: that setter keeps an array.array as is, while
    the default one copies it again and the constructors rebuild it element by element (milliseconds per
    640x480 image; README, "Reliability and timing").
    """
    payload = array.array(typecode)
    payload.frombytes(np.ascontiguousarray(values).reshape(-1).view(np.uint8))
    return payload


# --------------------------------------------------------------------------------------------------------
# Images

_NAMED_ENCODINGS = {
    "rgb8": ("u1", 3), "bgr8": ("u1", 3), "rgba8": ("u1", 4), "bgra8": ("u1", 4),
    "mono8": ("u1", 1), "mono16": ("u2", 1),
}
# OpenCV-style encodings of sensor_msgs/image_encodings: 8UC1, 16UC1, 32FC1, 32SC1, ...
_CV_ENCODING = re.compile(r"(8U|8S|16U|16S|32S|32F|64F)C([1-4])")
_CV_DEPTH = {"8U": "u1", "8S": "i1", "16U": "u2", "16S": "i2", "32S": "i4", "32F": "f4", "64F": "f8"}


def image_encoding_format(encoding: str) -> tuple[np.dtype, int]:
    """(native dtype, channels) of a sensor_msgs/Image encoding."""
    if encoding in _NAMED_ENCODINGS:
        kind, channels = _NAMED_ENCODINGS[encoding]
    else:
        match = _CV_ENCODING.fullmatch(encoding)
        if match is None:
            known = ", ".join(list(_NAMED_ENCODINGS) + ["<8U|8S|16U|16S|32S|32F|64F>C<1-4>"])
            raise ConversionError(f"unsupported image encoding {encoding!r} (supported: {known})")
        kind, channels = _CV_DEPTH[match.group(1)], int(match.group(2))
    return np.dtype(kind), channels


def image_to_numpy(msg: Image, *, copy: bool = False) -> np.ndarray:
    """Image message -> (H, W) or (H, W, C) array in the stored channel order, native byte order.

    A read-only view of the message's buffer unless a byte swap is needed or copy=True, which give a new
    writable C-contiguous array.

    Honours `step` row padding and `is_bigendian`. Raises ConversionError for an unknown encoding, a zero
    size, a step shorter than a row, or data whose length is not step * height.
    """
    dtype, channels = image_encoding_format(msg.encoding)
    height, width, step = msg.height, msg.width, msg.step
    what = f"{msg.encoding} image {width}x{height}"
    if height == 0 or width == 0:
        raise ConversionError(f"{what} is empty")
    row_bytes = width * channels * dtype.itemsize
    if step < row_bytes:
        raise ConversionError(f"{what} has step {step} < {row_bytes} bytes per row")
    if len(msg.data) != step * height:
        raise ConversionError(f"{what} has {len(msg.data)} bytes of data, expected step * height = {step * height}")

    stored = dtype.newbyteorder(">" if msg.is_bigendian else "<") if dtype.itemsize > 1 else dtype
    shape, strides = (height, width), (step, channels * dtype.itemsize)
    if channels > 1:
        shape, strides = shape + (channels,), strides + (dtype.itemsize,)
    view = np.ndarray(shape, dtype=stored, buffer=msg.data, strides=strides)
    if stored != dtype:
        return view.astype(dtype, order="C")  # the byte swap makes a new array whatever `copy` says
    if copy:
        return view.copy(order="C")
    view.flags.writeable = False
    return view


def image_to_rgb(msg: Image) -> np.ndarray:
    """A colour or mono8 image as a new (H, W, 3) uint8 RGB array (alpha dropped, mono repeated)."""
    conversions = {"rgb8": None, "bgr8": cv2.COLOR_BGR2RGB, "rgba8": cv2.COLOR_RGBA2RGB,
                   "bgra8": cv2.COLOR_BGRA2RGB, "mono8": cv2.COLOR_GRAY2RGB}
    if msg.encoding not in conversions:
        raise ConversionError(f"image_to_rgb needs one of {', '.join(conversions)}, got {msg.encoding!r}")
    pixels = image_to_numpy(msg)
    code = conversions[msg.encoding]
    return np.array(pixels, order="C") if code is None else cv2.cvtColor(np.ascontiguousarray(pixels), code)


def numpy_to_image(pixels: np.ndarray, encoding: str, header: Header | None = None) -> Image:
    """(H, W) or (H, W, C) array -> Image message with no row padding, in this machine's byte order.

    The dtype must be the encoding's (e.g. float32 for 32FC1): values are never cast silently.
    """
    dtype, channels = image_encoding_format(encoding)
    pixels = np.asarray(pixels)
    if pixels.ndim == 3 and channels == 1 and pixels.shape[2] == 1:
        pixels = pixels[:, :, 0]
    expected_ndim = 2 if channels == 1 else 3
    if pixels.ndim != expected_ndim or (channels > 1 and pixels.shape[2] != channels):
        wanted = "(H, W)" if channels == 1 else f"(H, W, {channels})"
        raise ConversionError(f"{encoding} needs a {wanted} array, got shape {pixels.shape}")
    if pixels.dtype.newbyteorder("=") != dtype.newbyteorder("="):
        raise ConversionError(f"{encoding} needs dtype {dtype}, got {pixels.dtype}")
    height, width = pixels.shape[:2]
    if height == 0 or width == 0:
        raise ConversionError(f"{encoding} image {width}x{height} is empty")
    msg = Image(header=header or Header(), height=height, width=width, encoding=encoding,
                is_bigendian=int(_NATIVE_BIG_ENDIAN), step=width * channels * dtype.itemsize, check_fields=True)
    msg.data = _message_array(pixels.astype(dtype, copy=False))
    return msg


# --------------------------------------------------------------------------------------------------------
# Point clouds

_POINT_FIELD_DTYPES = {
    PointField.INT8: "i1", PointField.UINT8: "u1", PointField.INT16: "i2", PointField.UINT16: "u2",
    PointField.INT32: "i4", PointField.UINT32: "u4", PointField.FLOAT32: "f4", PointField.FLOAT64: "f8",
}
_COLOR_FIELDS = ("rgb", "rgba")
_ZERO_BYTE = array.array("B", [0])


def pointcloud2_to_numpy(msg: PointCloud2) -> tuple[np.ndarray, np.ndarray | None]:
    """PointCloud2 -> (points (N, 3) float32, colors (N, 3) uint8 RGB or None).

    Reads x, y, z (any numeric datatype, cast to float32) and, when present, a packed `rgb` or `rgba` field
    (FLOAT32 or UINT32 holding 0x??RRGGBB, as PCL writes it). Organized clouds (height > 1) are flattened in
    row-major order; `point_step` and `row_step` padding and `is_bigendian` are honoured. Points with a
    non-finite coordinate (a depth camera's "no return") are dropped along with their colours, so N can be
    smaller than width * height.
    """
    fields = {}
    for field in msg.fields:
        if field.name in fields and field.name in ("x", "y", "z") + _COLOR_FIELDS:
            raise ConversionError(f"PointCloud2 has field {field.name!r} twice")
        fields[field.name] = field
    missing = [name for name in ("x", "y", "z") if name not in fields]
    if missing:
        raise ConversionError(
            f"PointCloud2 lacks field(s) {', '.join(missing)}; it has {[f.name for f in msg.fields]}")
    color_name = next((name for name in _COLOR_FIELDS if name in fields), None)

    order = ">" if msg.is_bigendian else "<"
    formats, offsets = [], []
    for name in ("x", "y", "z") + ((color_name,) if color_name else ()):
        field = fields[name]
        if field.datatype not in _POINT_FIELD_DTYPES:
            raise ConversionError(f"PointCloud2 field {name!r} has unknown datatype {field.datatype}")
        kind = _POINT_FIELD_DTYPES[field.datatype]
        if name == color_name:
            if field.datatype not in (PointField.FLOAT32, PointField.UINT32):
                raise ConversionError(f"PointCloud2 field {name!r} must be packed FLOAT32 or UINT32, "
                                      f"got datatype {field.datatype}")
            kind = "u4"  # the same four bytes, read as the packed integer
        if field.offset + np.dtype(kind).itemsize > msg.point_step:
            raise ConversionError(f"PointCloud2 field {name!r} at offset {field.offset} does not fit in "
                                  f"point_step {msg.point_step}")
        formats.append(order + kind)
        offsets.append(field.offset)

    height, width = msg.height, msg.width
    what = f"PointCloud2 {width}x{height} with point_step {msg.point_step} and row_step {msg.row_step}"
    if msg.row_step < width * msg.point_step:
        raise ConversionError(f"{what}: row_step is shorter than width * point_step = {width * msg.point_step}")
    if len(msg.data) != msg.row_step * height:
        raise ConversionError(f"{what}: {len(msg.data)} bytes of data, expected row_step * height = "
                              f"{msg.row_step * height}")
    if width * height == 0:
        return np.empty((0, 3), np.float32), (np.empty((0, 3), np.uint8) if color_name else None)

    count = height * width
    native_float_xyz = (msg.is_bigendian == _NATIVE_BIG_ENDIAN and all(f[1:] == "f4" for f in formats[:3])
                        and msg.row_step == width * msg.point_step)
    if native_float_xyz:
        # The common layout: one compiled pass gathers, tests and compacts (numpy needs several).
        points = np.empty((count, 3), np.float32)
        colors = np.empty((count, 3), np.uint8) if color_name else None
        kept = _cloud_kernels.gather_points(msg.data, count, msg.point_step, *offsets[:3],
                                            offsets[3] if color_name else -1, bool(msg.is_bigendian),
                                            points, colors)
        return points[:kept], None if colors is None else colors[:kept]

    # Any other layout: one strided 2D view per field, copied column by column.
    def field_view(offset: int, kind: str) -> np.ndarray:
        return np.ndarray((height, width), dtype=np.dtype(kind), buffer=msg.data, offset=offset,
                          strides=(msg.row_step, msg.point_step))

    points = np.empty((height, width, 3), np.float32)
    with np.errstate(over="ignore"):  # float64 beyond float32 range becomes inf and is dropped below
        for axis in range(3):
            points[..., axis] = field_view(offsets[axis], formats[axis])
    points = points.reshape(count, 3)
    colors = None
    if color_name:
        # Packed 0x??RRGGBB: copy the R, G and B bytes straight out of the buffer, no shifting.
        colors = np.empty((height, width, 3), np.uint8)
        for channel, byte in enumerate((1, 2, 3) if msg.is_bigendian else (2, 1, 0)):
            colors[..., channel] = field_view(offsets[3] + byte, "u1")
        colors = colors.reshape(count, 3)
    # Column by column: many times faster than np.isfinite(points).all(axis=1) (README, "Reliability and timing").
    finite = np.isfinite(points[:, 0]) & np.isfinite(points[:, 1]) & np.isfinite(points[:, 2])
    if not finite.all():
        points = _select_rows(points, finite)
        colors = None if colors is None else _select_rows(colors, finite)
    return points, colors


def _select_rows(rows: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """rows[keep] for a C-contiguous (N, K) array, indexing whole rows as opaque records (numpy's boolean
    indexing of a 2D array is several times slower)."""
    record = np.dtype((np.void, rows.shape[1] * rows.itemsize))
    return rows.view(record).reshape(-1)[keep].view(rows.dtype).reshape(-1, rows.shape[1])


def numpy_to_pointcloud2(points: np.ndarray, colors: np.ndarray | None = None,
                         header: Header | None = None) -> PointCloud2:
    """(N, 3) points (and optional (N, 3) uint8 RGB colours) -> an unorganized PointCloud2 (height 1).

    Fields x, y, z FLOAT32 and, with colours, rgb FLOAT32 packed as 0x00RRGGBB like PCL. is_dense is true
    only if every coordinate is finite.
    """
    points = np.asarray(points)
    if points.ndim != 2 or points.shape[1] != 3 or points.dtype.kind not in "iuf":
        raise ConversionError(f"points must be a numeric (N, 3) array, got {points.dtype} {points.shape}")
    count = len(points)
    if colors is not None:
        colors = np.asarray(colors)
        if colors.shape != (count, 3) or colors.dtype != np.uint8:
            raise ConversionError(f"colors must be a uint8 ({count}, 3) array, got {colors.dtype} {colors.shape}")
    words = 3 if colors is None else 4
    points = np.ascontiguousarray(points, dtype=np.float32)
    payload = _ZERO_BYTE * (4 * words * count)  # the message's own buffer, written in place below
    all_finite = _cloud_kernels.pack_points(points, None if colors is None else np.ascontiguousarray(colors),
                                            count, payload)
    names = ("x", "y", "z", "rgb")[:words]
    msg = PointCloud2(
        header=header or Header(), height=1, width=count,
        fields=[PointField(name=name, offset=4 * index, datatype=PointField.FLOAT32, count=1)
                for index, name in enumerate(names)],
        is_bigendian=_NATIVE_BIG_ENDIAN, point_step=4 * words, row_step=4 * words * count,
        is_dense=all_finite, check_fields=True,  # keeps the payload below without a copy
    )
    msg.data = payload
    return msg


# --------------------------------------------------------------------------------------------------------
# Paths and grounding masks

def path_to_msg(path: Path2D, header: Header, image_width: int, image_height: int, instruction: str = "",
                model_id: str = "", raw_answer: str = "") -> Path2DMsg:
    """Core path -> hamster_msgs/Path2D (coordinates as float32)."""
    if image_width <= 0 or image_height <= 0:
        raise ConversionError(f"image size must be positive, got {image_width}x{image_height}")
    coordinates = path.points.astype(np.float32)
    msg = Path2DMsg(header=header, image_width=int(image_width), image_height=int(image_height),
                    instruction=instruction, model_id=model_id, raw_answer=raw_answer, check_fields=True)
    msg.x = _message_array(coordinates[:, 0], "f")
    msg.y = _message_array(coordinates[:, 1], "f")
    msg.gripper = _message_array(path.gripper)
    return msg


def path_from_msg(msg: Path2DMsg) -> Path2D:
    """hamster_msgs/Path2D -> core path; a malformed message raises PathError."""
    x = np.frombuffer(msg.x, dtype=np.float32)
    y = np.frombuffer(msg.y, dtype=np.float32)
    gripper = np.frombuffer(msg.gripper, dtype=np.uint8)
    if not len(x) == len(y) == len(gripper):
        raise PathError(f"Path2D message has {len(x)} x, {len(y)} y and {len(gripper)} gripper values")
    return Path2D(np.stack([x, y], axis=1).astype(np.float64), gripper)


@dataclass(frozen=True)
class GroundedMask:
    """One object of a GroundingMasks message."""

    label: str
    phrase: str
    mask: np.ndarray  # bool (H, W)
    score: float
    box: tuple[int, int, int, int]  # x, y, width, height in pixels


def masks_to_msg(header: Header, labels: list[str], phrases: list[str] | None, masks: list[np.ndarray],
                 scores, boxes) -> GroundingMasks:
    """Per-object lists -> hamster_msgs/GroundingMasks. Masks are (H, W) bool or uint8 (non-zero inside),
    all the same size; boxes are (x, y, width, height) pixels; phrases may be None (sent empty)."""
    count = len(labels)
    phrases = [""] * count if phrases is None else list(phrases)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    boxes = np.asarray(boxes).reshape(-1, 4) if len(boxes) else np.empty((0, 4), int)
    if not len(phrases) == len(masks) == len(scores) == len(boxes) == count:
        raise ConversionError(f"grounding lists differ in length: {count} labels, {len(phrases)} phrases, "
                              f"{len(masks)} masks, {len(scores)} scores, {len(boxes)} boxes")
    _check_labels(labels)
    if not np.all((scores >= 0.0) & (scores <= 1.0)):
        raise ConversionError(f"scores must be in [0, 1], got {scores.tolist()}")
    if boxes.dtype.kind not in "iu" or np.any(boxes < 0):
        raise ConversionError(f"boxes must be non-negative integer (x, y, width, height), got {boxes.tolist()}")
    mask_images = []
    for label, mask in zip(labels, masks):
        mask = np.asarray(mask)
        if mask.ndim != 2 or mask.shape != np.shape(masks[0]) or mask.dtype not in (np.bool_, np.uint8):
            raise ConversionError(f"mask {label!r} must be bool or uint8 with the shape of the first mask "
                                  f"{np.shape(masks[0])}, got {mask.dtype} {mask.shape}")
        mask_images.append(numpy_to_image((mask != 0).astype(np.uint8) * np.uint8(255), "mono8", header))
    msg = GroundingMasks(
        header=header, labels=list(labels), phrases=phrases, masks=mask_images,
        boxes=[RegionOfInterest(x_offset=int(x), y_offset=int(y), width=int(w), height=int(h))
               for x, y, w, h in boxes.tolist()], check_fields=True,
    )
    msg.scores = _message_array(scores.astype(np.float32), "f")
    return msg


def grounding_from_msg(msg: GroundingMasks) -> list[GroundedMask]:
    """hamster_msgs/GroundingMasks -> one GroundedMask per label. Empty `phrases` is accepted (as "")."""
    count = len(msg.labels)
    phrases = list(msg.phrases) or [""] * count
    if not len(phrases) == len(msg.masks) == len(msg.scores) == len(msg.boxes) == count:
        raise ConversionError(f"GroundingMasks lists differ in length: {count} labels, {len(msg.phrases)} phrases, "
                              f"{len(msg.masks)} masks, {len(msg.scores)} scores, {len(msg.boxes)} boxes")
    _check_labels(msg.labels)
    objects = []
    for label, phrase, image, score, box in zip(msg.labels, phrases, msg.masks, msg.scores, msg.boxes):
        if image.encoding != "mono8":
            raise ConversionError(f"mask {label!r} must be mono8, got {image.encoding!r}")
        objects.append(GroundedMask(label, phrase, image_to_numpy(image) > 0, float(score),
                                    (box.x_offset, box.y_offset, box.width, box.height)))
    return objects


def masks_from_msg(msg: GroundingMasks) -> dict[str, np.ndarray]:
    """hamster_msgs/GroundingMasks -> {label: bool (H, W) mask}."""
    return {grounded.label: grounded.mask for grounded in grounding_from_msg(msg)}


def _check_labels(labels) -> None:
    if any(not label for label in labels) or len(set(labels)) != len(labels):
        raise ConversionError(f"labels must be non-empty and unique, got {list(labels)}")


# --------------------------------------------------------------------------------------------------------
# Poses, cameras and time

def pose_to_msg(pose: Pose, header: Header) -> PoseStamped:
    msg = PoseStamped(header=header)
    msg.pose.position.x, msg.pose.position.y, msg.pose.position.z = (float(v) for v in pose.position)
    orientation = msg.pose.orientation
    orientation.x, orientation.y, orientation.z, orientation.w = (float(v) for v in pose.orientation)
    return msg


def gripper_goal_to_msg(goal: GripperGoal, header: Header) -> GripperCommand:
    """The executor's gripper goal -> hamster_msgs/GripperCommand (GRASP when closing on an object, else MOVE)."""
    return GripperCommand(header=header, command=GripperCommand.GRASP if goal.grasp else GripperCommand.MOVE,
                          width=float(goal.width), speed=float(goal.speed), force=float(goal.force),
                          epsilon_inner=float(goal.epsilon_inner), epsilon_outer=float(goal.epsilon_outer))


def pose_from_fields(fields: dict, prefix: str) -> Pose:
    """A geometry_msgs/Pose read by hamster_ros.cdr.FieldReader (its fields under `prefix`, e.g. "pose.")."""
    return Pose([fields[f"{prefix}position.{axis}"] for axis in "xyz"],
                [fields[f"{prefix}orientation.{axis}"] for axis in "xyzw"])


def pose_from_msg(msg) -> Pose:
    """geometry_msgs/PoseStamped or Pose -> core Pose (the quaternion is normalized)."""
    pose = getattr(msg, "pose", msg)
    position, orientation = pose.position, pose.orientation
    return Pose([position.x, position.y, position.z], [orientation.x, orientation.y, orientation.z, orientation.w])


def camera_info_to_msg(camera: PinholeCamera, header: Header) -> CameraInfo:
    """Pinhole camera -> CameraInfo of an undistorted image: plumb_bob with zero coefficients, R identity."""
    projection = np.zeros((3, 4))
    projection[:, :3] = camera.K
    return CameraInfo(
        header=header, width=camera.width, height=camera.height, distortion_model="plumb_bob",
        d=[0.0] * 5, k=camera.K.reshape(-1), r=np.eye(3).reshape(-1), p=projection.reshape(-1),
    )


def camera_from_msg(info: CameraInfo, base_from_camera: np.ndarray, *,
                    ignore_distortion: bool = False) -> PinholeCamera:
    """CameraInfo + the camera's pose in the base frame -> PinholeCamera, from K.

    The core's model has no distortion, skew, binning or ROI: a CameraInfo with any of them raises
    ConversionError, except that non-zero distortion is accepted with ignore_distortion=True (for images
    that are already rectified, or when the error is known to be negligible).
    """
    k = np.asarray(info.k, dtype=float).reshape(3, 3)
    if not ignore_distortion and np.any(np.asarray(info.d, dtype=float) != 0.0):
        raise ConversionError(f"CameraInfo has {info.distortion_model} distortion {list(info.d)}; rectify the "
                              "images or pass ignore_distortion=True")
    if k[0, 1] != 0.0:
        raise ConversionError(f"CameraInfo K has skew {k[0, 1]}; the pinhole model here has none")
    if info.binning_x > 1 or info.binning_y > 1 or info.roi.width or info.roi.height:
        raise ConversionError("CameraInfo with binning or a region of interest is not supported")
    try:
        fx, fy, cx, cy = (float(value) for value in (k[0, 0], k[1, 1], k[0, 2], k[1, 2]))
        return PinholeCamera(info.width, info.height, fx, fy, cx, cy, base_from_camera)
    except ValueError as error:
        raise ConversionError(f"CameraInfo does not describe a valid camera: {error}") from error


def stamp_to_seconds(stamp: Time) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


def stamp_to_ns(stamp: Time) -> int:
    """Exact integer nanoseconds (a recorded message's stamp too: anything with sec and nanosec)."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def seconds_to_stamp(seconds: float) -> Time:
    if not math.isfinite(seconds) or not 0.0 <= seconds < 2 ** 31:
        raise ValueError(f"a stamp needs finite seconds in [0, 2^31), got {seconds!r}")
    whole = math.floor(seconds)
    nanoseconds = round((seconds - whole) * 1e9)
    if nanoseconds == 1_000_000_000:  # rounding carried into the next second
        whole, nanoseconds = whole + 1, 0
    return Time(sec=int(whole), nanosec=int(nanoseconds))
