"""Message <-> numpy/core conversions. Messages are only constructed: no ROS graph is needed."""
import struct

import numpy as np
import pytest
from builtin_interfaces.msg import Time
from geometry_msgs.msg import Pose as PoseMsg
from hamster_msgs.msg import GroundingMasks
from hamster_msgs.msg import Path2D as Path2DMsg
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField
from std_msgs.msg import Header

from hamster_core.camera import PinholeCamera
from hamster_core.geometry import Pose
from hamster_core.path2d import Path2D, PathError
from hamster_ros.conversions import (
    ConversionError, camera_from_msg, camera_info_to_msg, gripper_goal_to_msg, grounding_from_msg,
    image_encoding_format, image_to_numpy, image_to_rgb, masks_from_msg, masks_to_msg, numpy_to_image,
    numpy_to_pointcloud2, path_from_msg, path_to_msg, pointcloud2_to_numpy, pose_from_msg, pose_to_msg,
    seconds_to_stamp, stamp_to_seconds,
)

RNG = np.random.default_rng(7)
HEADER = Header(stamp=Time(sec=12, nanosec=345), frame_id="camera_color_optical_frame")
ENCODINGS = ["rgb8", "bgr8", "rgba8", "bgra8", "mono8", "mono16", "8UC1", "16UC1", "32FC1", "32SC1", "8UC3",
             "16SC1", "64FC1", "32FC3"]


def random_pixels(encoding, height=5, width=7):
    dtype, channels = image_encoding_format(encoding)
    shape = (height, width) if channels == 1 else (height, width, channels)
    if dtype.kind == "f":
        return RNG.normal(size=shape).astype(dtype)
    info = np.iinfo(dtype)
    return RNG.integers(info.min, info.max, size=shape, endpoint=True, dtype=dtype)


def raw_image(pixels, encoding, *, padding=0, big_endian=False):
    """An Image message built by hand, with `padding` junk bytes after every row."""
    dtype = pixels.dtype.newbyteorder(">" if big_endian else "<")
    height, width = pixels.shape[:2]
    rows = np.ascontiguousarray(pixels, dtype=dtype).reshape(height, -1).view(np.uint8)
    junk = np.full((height, padding), 0xAB, np.uint8)
    data = np.hstack([rows, junk])
    return Image(height=height, width=width, encoding=encoding, is_bigendian=int(big_endian),
                 step=data.shape[1], data=data.tobytes())


# ---------------------------------------------------------------------------------------------- images

@pytest.mark.parametrize("encoding", ENCODINGS)
def test_image_round_trip_for_every_encoding(encoding):
    pixels = random_pixels(encoding)
    msg = numpy_to_image(pixels, encoding, HEADER)
    assert (msg.height, msg.width, msg.encoding, msg.header.frame_id) == (5, 7, encoding, HEADER.frame_id)
    assert msg.step == pixels[0].nbytes and msg.is_bigendian == 0
    back = image_to_numpy(msg)
    assert back.dtype == pixels.dtype and back.shape == pixels.shape
    np.testing.assert_array_equal(back, pixels)


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("big_endian", [False, True])
def test_padded_rows_and_byte_order_are_honoured(encoding, big_endian):
    pixels = random_pixels(encoding, height=4, width=3)
    msg = raw_image(pixels, encoding, padding=5, big_endian=big_endian)
    back = image_to_numpy(msg)
    assert back.dtype == pixels.dtype.newbyteorder("=")
    np.testing.assert_array_equal(back, pixels)
    owned = image_to_numpy(msg, copy=True)
    assert owned.flags.c_contiguous and owned.flags.writeable
    np.testing.assert_array_equal(owned, pixels)


def test_default_result_is_a_read_only_view_of_the_message():
    msg = numpy_to_image(random_pixels("rgb8", 48, 64), "rgb8")
    view = image_to_numpy(msg)
    assert np.shares_memory(view, np.frombuffer(msg.data, np.uint8))
    assert not view.flags.writeable
    copy = image_to_numpy(msg, copy=True)
    assert not np.shares_memory(copy, np.frombuffer(msg.data, np.uint8))


@pytest.mark.parametrize("encoding, convert", [
    ("rgb8", lambda p: p), ("bgr8", lambda p: p[..., ::-1]), ("rgba8", lambda p: p[..., :3]),
    ("bgra8", lambda p: p[..., 2::-1]), ("mono8", lambda p: np.repeat(p[..., None], 3, axis=2)),
])
def test_image_to_rgb(encoding, convert):
    pixels = random_pixels(encoding)
    rgb = image_to_rgb(raw_image(pixels, encoding, padding=3))
    assert rgb.shape == (5, 7, 3) and rgb.dtype == np.uint8 and rgb.flags.writeable
    np.testing.assert_array_equal(rgb, convert(pixels))
    with pytest.raises(ConversionError, match="32FC1"):
        image_to_rgb(numpy_to_image(random_pixels("32FC1"), "32FC1"))


@pytest.mark.parametrize("change, reason", [
    (dict(encoding="yuv422_weird"), "unsupported image encoding 'yuv422_weird'"),
    (dict(height=0, data=b""), "rgb8 image 7x0 is empty"),
    (dict(step=20), "rgb8 image 7x5 has step 20 < 21"),
    (dict(data=bytes(104)), "rgb8 image 7x5 has 104 bytes of data, expected step \\* height = 105"),
])
def test_malformed_images_raise_clear_errors(change, reason):
    msg = numpy_to_image(random_pixels("rgb8"), "rgb8")
    for name, value in change.items():
        setattr(msg, name, value)
    with pytest.raises(ConversionError, match=reason):
        image_to_numpy(msg)


def test_numpy_to_image_never_casts_silently():
    with pytest.raises(ConversionError, match="32FC1 needs dtype float32, got float64"):
        numpy_to_image(np.zeros((4, 4)), "32FC1")
    with pytest.raises(ConversionError, match="rgb8 needs a \\(H, W, 3\\) array"):
        numpy_to_image(np.zeros((4, 4), np.uint8), "rgb8")
    with pytest.raises(ConversionError, match="empty"):
        numpy_to_image(np.zeros((0, 4), np.uint8), "mono8")
    with pytest.raises(ConversionError, match="unsupported"):
        numpy_to_image(np.zeros((4, 4), np.uint8), "jpeg")
    # (H, W, 1) is accepted for single-channel encodings, and big-endian input is stored natively.
    np.testing.assert_array_equal(image_to_numpy(numpy_to_image(np.ones((2, 3, 1), np.uint8), "mono8")),
                                  np.ones((2, 3)))
    big = np.arange(6, dtype=">u2").reshape(2, 3)
    np.testing.assert_array_equal(image_to_numpy(numpy_to_image(big, "mono16")), big)


# ---------------------------------------------------------------------------------------------- point clouds

def test_pointcloud_round_trip_with_and_without_colors():
    points = RNG.normal(size=(1000, 3)).astype(np.float32)
    colors = RNG.integers(0, 256, size=(1000, 3), dtype=np.uint8)
    msg = numpy_to_pointcloud2(points, colors, HEADER)
    assert (msg.height, msg.width, msg.point_step, msg.is_dense) == (1, 1000, 16, True)
    assert [(f.name, f.offset, f.datatype) for f in msg.fields] == \
        [("x", 0, 7), ("y", 4, 7), ("z", 8, 7), ("rgb", 12, 7)]
    back_points, back_colors = pointcloud2_to_numpy(msg)
    np.testing.assert_array_equal(back_points, points)
    np.testing.assert_array_equal(back_colors, colors)
    plain_points, no_colors = pointcloud2_to_numpy(numpy_to_pointcloud2(points.astype(np.float64)))
    np.testing.assert_array_equal(plain_points, points)
    assert no_colors is None and plain_points.dtype == np.float32


def test_rgb_is_packed_like_pcl():
    msg = numpy_to_pointcloud2(np.zeros((1, 3)), np.array([[0x12, 0x34, 0x56]], np.uint8))
    assert np.frombuffer(msg.data, "<u4")[3] == 0x123456


def test_non_finite_points_are_dropped_with_their_colors():
    points = RNG.random((6, 3)).astype(np.float32)
    points[1, 2] = np.nan
    points[4, 0] = np.inf
    colors = RNG.integers(0, 256, size=(6, 3), dtype=np.uint8)
    msg = numpy_to_pointcloud2(points, colors)
    assert msg.is_dense is False
    back_points, back_colors = pointcloud2_to_numpy(msg)
    keep = [0, 2, 3, 5]
    np.testing.assert_array_equal(back_points, points[keep])
    np.testing.assert_array_equal(back_colors, colors[keep])


def realsense_like_cloud(height, width, *, row_padding=0, big_endian=False, color_field="rgb",
                         color_type=PointField.FLOAT32):
    """Organized cloud laid out like realsense2_camera: x, y, z float32, 4 bytes padding, rgb at 16,
    point_step 32, plus optional junk bytes at the end of every row."""
    order = ">" if big_endian else "<"
    layout = np.dtype({"names": ["x", "y", "z", "padding", color_field],
                       "formats": [order + "f4"] * 3 + [order + "u4"] * 2,
                       "offsets": [0, 4, 8, 12, 16], "itemsize": 32})
    points = RNG.normal(size=(height, width, 3)).astype(np.float32)
    colors = RNG.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    cloud = np.zeros((height, width), layout)
    cloud["x"], cloud["y"], cloud["z"] = points[..., 0], points[..., 1], points[..., 2]
    cloud["padding"] = 0xEEEEEEEE  # junk the reader must skip
    cloud[color_field] = (0xFF << 24) | (colors[..., 0].astype(np.uint32) << 16) \
        | (colors[..., 1].astype(np.uint32) << 8) | colors[..., 2]
    rows = np.hstack([cloud.view(np.uint8).reshape(height, -1), np.full((height, row_padding), 0xCD, np.uint8)])
    fields = [PointField(name=name, offset=offset, datatype=PointField.FLOAT32, count=1)
              for name, offset in (("x", 0), ("y", 4), ("z", 8))]
    fields.append(PointField(name=color_field, offset=16, datatype=color_type, count=1))
    msg = PointCloud2(header=HEADER, height=height, width=width, fields=fields, is_bigendian=big_endian,
                      point_step=32, row_step=rows.shape[1], data=rows.tobytes(), is_dense=True)
    return msg, points.reshape(-1, 3), colors.reshape(-1, 3)


@pytest.mark.parametrize("big_endian", [False, True])
@pytest.mark.parametrize("color_field, color_type", [("rgb", PointField.FLOAT32), ("rgba", PointField.UINT32)])
def test_organized_cloud_with_padding(big_endian, color_field, color_type):
    msg, points, colors = realsense_like_cloud(4, 5, row_padding=12, big_endian=big_endian,
                                               color_field=color_field, color_type=color_type)
    back_points, back_colors = pointcloud2_to_numpy(msg)
    np.testing.assert_array_equal(back_points, points)
    np.testing.assert_array_equal(back_colors, colors)


def test_other_coordinate_types_are_cast_to_float32():
    layout = np.dtype([("x", "<f8"), ("y", "<f8"), ("z", "<f8")])
    cloud = np.zeros(3, layout)
    cloud["x"], cloud["z"] = [1.5, 2.5, 3.5], [-1, 0, 1]
    fields = [PointField(name=n, offset=8 * i, datatype=PointField.FLOAT64, count=1) for i, n in enumerate("xyz")]
    msg = PointCloud2(height=1, width=3, fields=fields, point_step=24, row_step=72, data=cloud.tobytes())
    points, colors = pointcloud2_to_numpy(msg)
    np.testing.assert_array_equal(points, [[1.5, 0, -1], [2.5, 0, 0], [3.5, 0, 1]])
    assert points.dtype == np.float32 and colors is None


def test_empty_cloud():
    points, colors = pointcloud2_to_numpy(numpy_to_pointcloud2(np.zeros((0, 3)), np.zeros((0, 3), np.uint8)))
    assert points.shape == (0, 3) and colors.shape == (0, 3)


def modified(msg, **changes):
    for name, value in changes.items():
        setattr(msg, name, value)
    return msg


@pytest.mark.parametrize("make, reason", [
    (lambda m: modified(m, fields=m.fields[:2]), "lacks field\\(s\\) z"),
    (lambda m: modified(m, fields=list(m.fields) + [PointField(name="x", offset=0, datatype=7, count=1)]),
     "field 'x' twice"),
    (lambda m: modified(m, fields=[m.fields[0], m.fields[1], PointField(name="z", offset=14, datatype=7,
                                                                        count=1)]),
     "'z' at offset 14 does not fit in point_step 16"),
    (lambda m: modified(m, fields=list(m.fields[:3]) + [PointField(name="rgb", offset=12, datatype=2, count=1)]),
     "'rgb' must be packed FLOAT32 or UINT32"),
    (lambda m: modified(m, fields=[PointField(name="x", offset=0, datatype=99, count=1)] + list(m.fields[1:])),
     "unknown datatype 99"),
    (lambda m: modified(m, data=m.data[:-1]), "159 bytes of data, expected row_step \\* height = 160"),
    (lambda m: modified(m, row_step=100), "row_step is shorter than width \\* point_step = 160"),
])
def test_malformed_clouds_raise_clear_errors(make, reason):
    msg = numpy_to_pointcloud2(np.zeros((10, 3)), np.zeros((10, 3), np.uint8))
    with pytest.raises(ConversionError, match=reason):
        pointcloud2_to_numpy(make(msg))


def test_numpy_to_pointcloud2_validates():
    with pytest.raises(ConversionError, match="\\(N, 3\\)"):
        numpy_to_pointcloud2(np.zeros((4, 2)))
    with pytest.raises(ConversionError, match="colors"):
        numpy_to_pointcloud2(np.zeros((4, 3)), np.zeros((4, 3)))



def per_point_reference(msg: PointCloud2):
    """What pointcloud2_to_numpy must return, decoded one point at a time with struct."""
    fields = {f.name: f for f in msg.fields}
    order = ">" if msg.is_bigendian else "<"
    color = next((fields[name] for name in ("rgb", "rgba") if name in fields), None)
    points, colors = [], []
    for row in range(msg.height):
        for column in range(msg.width):
            base = row * msg.row_step + column * msg.point_step
            xyz = [struct.unpack_from(order + "f", msg.data, base + fields[axis].offset)[0] for axis in "xyz"]
            if all(np.isfinite(xyz)):
                points.append(xyz)
                if color is not None:
                    (word,) = struct.unpack_from(order + "I", msg.data, base + color.offset)
                    colors.append(((word >> 16) & 255, (word >> 8) & 255, word & 255))
    return (np.array(points, np.float32).reshape(-1, 3),
            None if color is None else np.array(colors, np.uint8).reshape(-1, 3))


def random_layout_cloud(rng, count: int) -> PointCloud2:
    """float32 x, y, z (adjacent or scattered, any byte offset), optional packed colour, padding, NaN/inf."""
    adjacent = rng.random() < 0.5
    with_color = rng.random() < 0.7
    slots = 4 + with_color + int(rng.integers(0, 4))  # 4-byte slots, some left as padding
    point_step = 4 * slots + int(rng.integers(0, 4))  # not always a multiple of 4: unaligned records
    order = rng.permutation(slots)
    if adjacent:
        start = int(rng.integers(0, slots - 3 - with_color + 1))
        x_slot, others = start, [slot for slot in range(slots) if not start <= slot < start + 3]
        offsets = [4 * x_slot, 4 * x_slot + 4, 4 * x_slot + 8]
        color_offset = 4 * int(rng.choice(others)) if with_color else None
    else:
        offsets = [4 * int(slot) for slot in order[:3]]
        color_offset = 4 * int(order[3]) if with_color else None
    big_endian = rng.random() < 0.2
    row_padding = int(rng.integers(0, 9)) if rng.random() < 0.2 else 0
    height = int(rng.choice([1, 2])) if count % 2 == 0 else 1
    width = count // height
    row_step = width * point_step + row_padding
    data = bytearray(rng.integers(0, 256, size=row_step * height, dtype=np.uint8).tobytes())
    sign = ">" if big_endian else "<"
    for row in range(height):
        for column in range(width):
            base = row * row_step + column * point_step
            values = rng.normal(size=3).astype(np.float32)
            if rng.random() < 0.15:
                values[rng.integers(0, 3)] = rng.choice([np.nan, np.inf, -np.inf])
            for offset, value in zip(offsets, values):
                struct.pack_into(sign + "f", data, base + offset, value)
    fields = [PointField(name=name, offset=offset, datatype=PointField.FLOAT32, count=1)
              for name, offset in zip("xyz", offsets)]
    if with_color:
        fields.append(PointField(name="rgb", offset=color_offset, datatype=PointField.UINT32, count=1))
    return PointCloud2(height=height, width=width, fields=fields, is_bigendian=big_endian, point_step=point_step,
                       row_step=row_step, data=bytes(data))


def test_pointcloud_decoder_matches_a_per_point_reference_on_random_layouts():
    """Pins the compiled gather (adjacent and scattered x, y, z, unaligned records, the last record's
    separate path) and the generic path (byte order, row padding) against one straightforward decoder."""
    rng = np.random.default_rng(11)
    for trial in range(400):
        msg = random_layout_cloud(rng, int(rng.choice([1, 2, 3, 5, 8, 17, 64, 301])))
        points, colors = pointcloud2_to_numpy(msg)
        expected_points, expected_colors = per_point_reference(msg)
        np.testing.assert_array_equal(points, expected_points, err_msg=f"trial {trial}")
        if expected_colors is None:
            assert colors is None
        else:
            np.testing.assert_array_equal(colors, expected_colors, err_msg=f"trial {trial}")


@pytest.mark.parametrize("count", [0, 1, 3, 4, 5, 6, 7, 9, 10, 33, 1001])
@pytest.mark.parametrize("with_colors", [False, True])
def test_pointcloud_encoder_packs_every_count_like_pcl(count, with_colors):
    """Counts around the compiled loop's 4-point blocks and its tail."""
    points = RNG.normal(size=(count, 3)).astype(np.float32)
    colors = RNG.integers(0, 256, size=(count, 3), dtype=np.uint8) if with_colors else None
    msg = numpy_to_pointcloud2(points, colors)
    words = np.frombuffer(msg.data, "<u4").reshape(count, 4 if with_colors else 3)
    np.testing.assert_array_equal(words[:, :3].view(np.float32), points)
    if with_colors:
        np.testing.assert_array_equal(
            words[:, 3], (colors[:, 0].astype(np.uint32) << 16) | (colors[:, 1].astype(np.uint32) << 8) | colors[:, 2])
    assert msg.is_dense is True
    for position in range(count):  # a single non-finite coordinate anywhere clears is_dense
        broken = points.copy()
        broken[position, position % 3] = np.nan if position % 2 else np.inf
        assert numpy_to_pointcloud2(broken, colors).is_dense is False, position
        if position > 40:
            break


def test_cloud_kernels_refuse_buffers_that_are_too_short():
    """The compiled kernels check lengths themselves: a wrong call raises instead of touching foreign memory."""
    from hamster_ros import _cloud_kernels
    points = np.empty((10, 3), np.float32)
    with pytest.raises(ValueError, match="src holds 159 bytes, needs 160"):
        _cloud_kernels.gather_points(bytes(159), 10, 16, 0, 4, 8, 12, False, points, None)
    with pytest.raises(ValueError, match="points_out"):
        _cloud_kernels.gather_points(bytes(160), 10, 16, 0, 4, 8, -1, False, points[:9], None)
    with pytest.raises(ValueError, match="does not fit"):
        _cloud_kernels.gather_points(bytes(160), 10, 16, 0, 4, 13, -1, False, points, None)
    with pytest.raises(ValueError, match="out holds 159 bytes, needs 160"):
        _cloud_kernels.pack_points(points, np.zeros((10, 3), np.uint8), 10, bytearray(159))
    with pytest.raises(TypeError):
        _cloud_kernels.pack_points(points, None, 10, bytes(120))  # read-only output

# ---------------------------------------------------------------------------------------------- core messages

def test_gripper_goals_keep_the_configured_grasp_tolerances():
    """Regression: recorded demonstrations wrote epsilon 0.08 whatever the executor's gripper settings said."""
    from hamster_core.executor import GripperGoal
    from hamster_msgs.msg import GripperCommand
    grasp = gripper_goal_to_msg(GripperGoal(0.02, 0.1, 40.0, grasp=True, epsilon_inner=0.005, epsilon_outer=0.01),
                                HEADER)
    assert (grasp.command, grasp.width, grasp.force) == (GripperCommand.GRASP, pytest.approx(0.02), 40.0)
    assert (grasp.epsilon_inner, grasp.epsilon_outer) == (pytest.approx(0.005), pytest.approx(0.01))
    release = gripper_goal_to_msg(GripperGoal(0.08, 0.1, 0.0, grasp=False), HEADER)
    assert release.command == GripperCommand.MOVE and release.header.frame_id == HEADER.frame_id

def test_path_round_trip():
    path = Path2D([[0.1, 0.2], [0.5, 0.25], [1.0, 0.0]], [0, 1, 0])
    msg = path_to_msg(path, HEADER, 640, 480, "put the corn in the bowl", "hamster:vila-13b", "<ans>...</ans>")
    assert (msg.image_width, msg.image_height, msg.instruction, msg.model_id, msg.raw_answer) == \
        (640, 480, "put the corn in the bowl", "hamster:vila-13b", "<ans>...</ans>")
    assert msg.header.frame_id == HEADER.frame_id
    back = path_from_msg(msg)
    np.testing.assert_allclose(back.points, path.points, atol=1e-7)  # float32 on the wire
    np.testing.assert_array_equal(back.gripper, path.gripper)
    with pytest.raises(ConversionError, match="image size"):
        path_to_msg(path, HEADER, 0, 480)


@pytest.mark.parametrize("fields, reason", [
    (dict(x=[0.1, 0.2], y=[0.1], gripper=[0, 0]), "2 x, 1 y and 2 gripper"),
    (dict(x=[0.1], y=[1.5], gripper=[0]), "outside"),
    (dict(x=[0.1], y=[0.5], gripper=[2]), "0 .OPEN. or 1 .CLOSED."),
    (dict(x=[], y=[], gripper=[]), "at least one point"),
    (dict(x=[float("nan")], y=[0.5], gripper=[0]), "finite"),
])
def test_malformed_path_messages_raise_path_errors(fields, reason):
    with pytest.raises(PathError, match=reason):
        path_from_msg(Path2DMsg(**fields))


def test_masks_round_trip():
    target = np.zeros((6, 8), bool)
    target[1:3, 2:5] = True
    placement = np.zeros((6, 8), np.uint8)
    placement[4:, :] = 1
    msg = masks_to_msg(HEADER, ["target_object", "placement_area"], ["the red cube", "the black bowl"],
                       [target, placement], [0.9, 0.75], [(2, 1, 3, 2), (0, 4, 8, 2)])
    assert [m.encoding for m in msg.masks] == ["mono8", "mono8"]
    assert msg.masks[0].data.tolist().count(255) == 6 and msg.masks[0].header.frame_id == HEADER.frame_id
    masks = masks_from_msg(msg)
    assert list(masks) == ["target_object", "placement_area"]
    np.testing.assert_array_equal(masks["target_object"], target)
    np.testing.assert_array_equal(masks["placement_area"], placement.astype(bool))
    target_object, placement_area = grounding_from_msg(msg)
    assert (target_object.phrase, target_object.box) == ("the red cube", (2, 1, 3, 2))
    assert placement_area.score == pytest.approx(0.75)


def test_masks_validation():
    mask = np.zeros((4, 4), bool)
    with pytest.raises(ConversionError, match="differ in length"):
        masks_to_msg(HEADER, ["a", "b"], None, [mask], [0.5], [(0, 0, 1, 1)])
    with pytest.raises(ConversionError, match="unique"):
        masks_to_msg(HEADER, ["a", "a"], None, [mask, mask], [0.5, 0.5], [(0, 0, 1, 1)] * 2)
    with pytest.raises(ConversionError, match="scores"):
        masks_to_msg(HEADER, ["a"], None, [mask], [1.5], [(0, 0, 1, 1)])
    with pytest.raises(ConversionError, match="boxes"):
        masks_to_msg(HEADER, ["a"], None, [mask], [0.5], [(0, -1, 1, 1)])
    with pytest.raises(ConversionError, match="shape of the first mask"):
        masks_to_msg(HEADER, ["a", "b"], None, [mask, np.zeros((3, 3), bool)], [0.5, 0.5], [(0, 0, 1, 1)] * 2)
    msg = masks_to_msg(HEADER, ["a"], None, [mask], [0.5], [(0, 0, 1, 1)])
    assert list(msg.phrases) == [""]
    msg.phrases = []  # producers may leave phrases out
    assert grounding_from_msg(msg)[0].phrase == ""
    msg.masks = [numpy_to_image(np.zeros((4, 4), np.float32), "32FC1")]
    with pytest.raises(ConversionError, match="must be mono8"):
        masks_from_msg(msg)
    with pytest.raises(ConversionError, match="differ in length"):
        masks_from_msg(GroundingMasks(labels=["a"]))


def test_pose_round_trip():
    pose = Pose([0.4, -0.1, 0.3], [1.0, 0.0, 0.0, 0.0])
    msg = pose_to_msg(pose, HEADER)
    assert msg.header.frame_id == HEADER.frame_id and msg.pose.orientation.x == 1.0
    back = pose_from_msg(msg)
    np.testing.assert_allclose(back.position, pose.position)
    np.testing.assert_allclose(back.orientation, pose.orientation)
    assert np.allclose(pose_from_msg(msg.pose).position, pose.position)
    zero_quaternion = PoseMsg()
    zero_quaternion.orientation.w = 0.0
    with pytest.raises(ValueError, match="zero norm"):
        pose_from_msg(zero_quaternion)


def test_camera_info_round_trip():
    base_from_camera = np.eye(4)
    base_from_camera[:3, 3] = [0.5, 0.0, 1.0]
    camera = PinholeCamera(640, 480, 615.0, 612.5, 321.3, 238.9, base_from_camera)
    info = camera_info_to_msg(camera, HEADER)
    assert info.distortion_model == "plumb_bob" and list(info.d) == [0.0] * 5
    np.testing.assert_array_equal(info.r, np.eye(3).ravel())
    np.testing.assert_array_equal(info.p, [615.0, 0, 321.3, 0, 0, 612.5, 238.9, 0, 0, 0, 1, 0])
    back = camera_from_msg(info, base_from_camera)
    assert (back.width, back.height, back.fx, back.fy, back.cx, back.cy) == (640, 480, 615.0, 612.5, 321.3, 238.9)
    np.testing.assert_array_equal(back.base_from_camera, base_from_camera)


def test_camera_info_the_pinhole_model_cannot_represent_is_rejected():
    info = camera_info_to_msg(PinholeCamera(640, 480, 600.0, 600.0, 320.0, 240.0), HEADER)
    info.d = [0.1, -0.05, 0.0, 0.0, 0.0]
    with pytest.raises(ConversionError, match="distortion"):
        camera_from_msg(info, np.eye(4))
    assert camera_from_msg(info, np.eye(4), ignore_distortion=True).fx == 600.0
    with pytest.raises(ConversionError, match="valid camera"):
        camera_from_msg(CameraInfo(), np.eye(4))  # an uncalibrated camera publishes zeros
    info.d, info.binning_x = [], 2
    with pytest.raises(ConversionError, match="binning"):
        camera_from_msg(info, np.eye(4))


def test_stamps():
    assert stamp_to_seconds(Time(sec=3, nanosec=250_000_000)) == 3.25
    stamp = seconds_to_stamp(1_700_000_000.123456789)
    assert stamp.sec == 1_700_000_000 and abs(stamp.nanosec - 123_456_789) < 300  # float64 resolution
    assert seconds_to_stamp(4.9999999999) == Time(sec=5, nanosec=0)
    for bad in (-1.0, float("nan"), float("inf"), 2.0 ** 31):
        with pytest.raises(ValueError):
            seconds_to_stamp(bad)
