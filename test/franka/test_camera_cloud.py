"""camera_cloud's per-frame decisions, with its callbacks called directly (no DDS traffic is needed)."""
import numpy as np
import pytest
import rclpy
from builtin_interfaces.msg import Time
from rclpy.parameter import Parameter
from sensor_msgs.msg import CameraInfo

from hamster_franka.camera_cloud import CameraCloud
from hamster_ros.conversions import numpy_to_image, pointcloud2_to_numpy
from hamster_apps.graph import CONFIG_DIR

WIDTH, HEIGHT = 320, 240


@pytest.fixture
def camera_cloud():
    context = rclpy.Context()
    rclpy.init(context=context)
    node = CameraCloud(context=context, parameter_overrides=[
        Parameter("calibration_file", value=str(CONFIG_DIR / "calibration_sim.yaml")),
        Parameter("stride", value=4)])
    clouds, reports = [], []
    node.points_pub.publish = clouds.append
    node.diagnostics_pub.publish = lambda array: reports.extend(array.status)
    info = CameraInfo(width=WIDTH, height=HEIGHT, k=[300.0, 0.0, 160.0, 0.0, 300.0, 120.0, 0.0, 0.0, 1.0])
    node._on_info(info)
    yield node, clouds, reports
    node.destroy_node()
    context.try_shutdown()


def frame(seconds: float, kind: str):
    rng = np.random.default_rng(0)
    if kind == "depth":
        msg = numpy_to_image(np.full((HEIGHT, WIDTH), 1.2, np.float32), "32FC1")
    else:
        msg = numpy_to_image(rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8), "rgb8")
    msg.header.stamp = Time(sec=int(seconds), nanosec=int(round((seconds % 1) * 1e9)))
    return msg


def test_a_cloud_without_a_matching_colour_frame_is_published_uncoloured_with_a_warning(camera_cloud):
    """Regression: a stale colour stream silently turned every cloud grey."""
    node, clouds, reports = camera_cloud
    node._on_color(frame(10.0, "color"))
    node._on_depth(frame(10.0, "depth"))
    assert pointcloud2_to_numpy(clouds[-1])[1] is not None
    assert reports == []  # healthy from the start: nothing to report

    for seconds in (10.5, 10.6, 10.7, 10.8):   # the colour stream stopped: 2 depth frames wait, then go uncoloured
        node._on_depth(frame(seconds, "depth"))
    assert len(clouds) == 3 and all(pointcloud2_to_numpy(c)[1] is None for c in clouds[1:])
    assert [r.level for r in reports] == [b"\x01"]  # one WARN, not one per frame
    assert "without colour" in reports[-1].message and "0.05 s" in reports[-1].message
    assert node.pairer.unpaired == {"no colour frame within the tolerance": 2}
    assert [(v.key, v.value) for v in reports[-1].values] == [("uncoloured: no colour frame within the tolerance", "1")]

    node._on_color(frame(10.85, "color"))       # releases 10.7 (uncoloured) and 10.8 (0.05 s: coloured)
    assert len(clouds) == 5 and pointcloud2_to_numpy(clouds[-1])[1] is not None and reports[-1].level == b"\x00"


def test_depth_that_arrives_before_its_colour_frame_gets_that_frame(camera_cloud):
    """Regression: the newest colour frame coloured each cloud, so depth that came first got the previous
    frame's colours (or none): 22 of 103 clouds went out grey on a real bag."""
    node, clouds, _ = camera_cloud
    colours = {}
    for index in range(6):
        seconds = 20.0 + index / 30
        depth, colour = frame(seconds, "depth"), frame(seconds, "color")
        colour.data = bytes([index * 40]) * len(colour.data)         # each frame its own grey level
        colours[index] = index * 40
        for msg in ((depth, colour) if index % 2 else (colour, depth)):  # every other frame: depth first
            (node._on_depth if msg is depth else node._on_color)(msg)
    assert len(clouds) == 6 and node.pairer.unpaired == {}
    assert [int(pointcloud2_to_numpy(c)[1][0, 0]) for c in clouds] == [colours[i] for i in range(6)]


def test_a_colour_image_of_another_size_stops_the_clouds_with_an_error(camera_cloud):
    node, clouds, reports = camera_cloud
    node._on_color(numpy_to_image(np.zeros((120, 160, 3), np.uint8), "rgb8"))     # stamped 0
    node._on_depth(frame(0.0, "depth"))
    assert clouds == [] and reports[-1].level == b"\x02" and "colour image is 160x120" in reports[-1].message
