"""Monitoring in rviz: config/hamster.rviz names only runtime topics with matching QoS and rviz2's own display
classes, the launch file starts rviz2 only on request, and the README picture can be regenerated."""
import importlib.util
from pathlib import Path

import pytest
import yaml

from hamster_ros import interfaces as t
from launch_files import load_launch_file, run_launch, setup_keywords

ROOT = Path(__file__).resolve().parents[2]
RVIZ = ROOT / "config" / "hamster.rviz"

# rviz_default_plugins display classes and the message types they can show (plugins_description.xml).
DISPLAY_TYPES = {
    "rviz_default_plugins/MarkerArray": {"visualization_msgs/msg/MarkerArray"},
    "rviz_default_plugins/PointCloud2": {"sensor_msgs/msg/PointCloud2"},
    "rviz_default_plugins/Image": {"sensor_msgs/msg/Image"},
    "rviz_default_plugins/Pose": {"geometry_msgs/msg/PoseStamped"},
    "rviz_default_plugins/TF": set(),
    "rviz_default_plugins/Grid": set(),
}


def _displays():
    config = yaml.safe_load(RVIZ.read_text())
    return config, config["Visualization Manager"]["Displays"]


def _runtime_topics():
    from hamster_ros import interfaces
    return {value for name, value in vars(interfaces).items() if name.isupper() and isinstance(value, str)
            and value.startswith("/")}


def _publisher_qos():
    """The QoS each displayed topic is published with (the nodes use these interfaces profiles)."""
    from hamster_ros import interfaces as t
    return {t.MARKERS: t.LATCHED, t.POINTS: t.SENSOR, t.PATH_IMAGE: t.LATCHED, t.MASKS_IMAGE: t.SENSOR,
            t.COLOR_IMAGE: t.SENSOR, t.EE_POSE: t.SENSOR, t.CARTESIAN_TARGET: t.COMMAND}


def test_rviz_config_is_rviz2_yaml_with_base_frame_and_the_runtime_topics():
    config, displays = _displays()
    assert config["Visualization Manager"]["Global Options"]["Fixed Frame"] == "base"
    assert {panel["Class"].split("/")[0] for panel in config["Panels"]} == {"rviz_common"}
    known = _runtime_topics()
    shown = {}
    for display in displays:
        assert display["Class"] in DISPLAY_TYPES, display["Class"]
        assert isinstance(display["Name"], str) and display["Enabled"] is True
        if DISPLAY_TYPES[display["Class"]]:
            topic = display["Topic"]  # rviz2: a mapping with Value and the QoS, not rviz1's flat string
            assert topic["Value"] in known, topic["Value"]
            assert topic["History Policy"] == "Keep Last" and topic["Depth"] >= 1
            shown.setdefault(display["Class"].split("/")[1], set()).add(topic["Value"])
    assert shown == {"MarkerArray": {t.MARKERS}, "PointCloud2": {"/camera/points"},
                     "Image": {"/hamster/path_image", "/hamster/masks_image", "/camera/color/image_raw"},
                     "Pose": {"/robot/ee_pose", "/robot/cartesian_target"}}
    assert any(d["Class"] == "rviz_default_plugins/TF" for d in displays)
    tool_classes = [tool["Class"] for tool in config["Visualization Manager"]["Tools"]]
    assert all(name.startswith("rviz_default_plugins/") for name in tool_classes)
    assert config["Visualization Manager"]["Views"]["Current"]["Class"] == "rviz_default_plugins/Orbit"


def test_rviz_subscriptions_are_compatible_with_the_publishers():
    """A best-effort publisher needs a best-effort reader; a transient-local reader needs a transient-local
    publisher (else rviz silently shows nothing); latched topics are read transient local (late rviz)."""
    from rclpy.qos import DurabilityPolicy, ReliabilityPolicy
    publishers = _publisher_qos()
    _, displays = _displays()
    for display in displays:
        if "Topic" not in display:
            continue
        topic = display["Topic"]
        publisher = publishers[topic["Value"]]
        best_effort = publisher.reliability == ReliabilityPolicy.BEST_EFFORT
        latched = publisher.durability == DurabilityPolicy.TRANSIENT_LOCAL
        assert topic["Reliability Policy"] in ("Reliable", "Best Effort")
        assert topic["Durability Policy"] in ("Volatile", "Transient Local")
        if best_effort:
            assert topic["Reliability Policy"] == "Best Effort", topic["Value"]
        assert (topic["Durability Policy"] == "Transient Local") == latched, topic["Value"]


def test_launch_file_adds_rviz_only_on_request(monkeypatch, tmp_path):
    share = tmp_path / "share" / "hamster_runtime"   # where the install puts the launch and config files
    (share / "config").mkdir(parents=True)
    for name in ("runtime.yaml", "sim.yaml", "hamster.rviz"):
        (share / "config" / name).write_bytes((ROOT / "config" / name).read_bytes())
    module = load_launch_file(ROOT / "launch" / "hamster.launch.py", monkeypatch, {"hamster_runtime": share})
    declared, entities, context = run_launch(module)
    assert declared["rviz"] == "false"
    [rviz] = [entity for entity in entities if entity.package == "rviz2"]
    assert rviz.executable == "rviz2" and rviz.arguments == ["-d", str(share / "config" / "hamster.rviz")]
    assert rviz.parameters == [{"use_sim_time": True}]           # the simulator's clock, as the graph's nodes
    assert rviz.condition.evaluate(context) is False             # declared, not started
    _, entities, context = run_launch(module, rviz="true")
    assert [entity.condition.evaluate(context) for entity in entities if entity.package == "rviz2"] == [True]
    # The install puts the rviz config where the launch file looks for it: the package's share/config.
    installed = dict(setup_keywords()["data_files"])["share/hamster_runtime/config"]
    assert "config/hamster.rviz" in installed


@pytest.mark.slow  # the screenshot tool end to end on a bag (matplotlib)
def test_readme_picture_is_small_and_its_script_runs_on_a_recorded_bag(tmp_path):
    """docs/monitoring.png is in the repository and under 200 KB; the script composes one from a bag with
    the three monitored streams (a synthetic one here: markers.py's own plan, a coloured cloud, overlays)."""
    picture = ROOT / "docs" / "monitoring.png"
    assert picture.is_file() and picture.stat().st_size < 200 * 1024
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    import numpy as np
    from geometry_msgs.msg import PoseStamped
    from rclpy.serialization import serialize_message
    from rosbags.rosbag2 import StoragePlugin, Writer
    from std_msgs.msg import Header, String

    from hamster_core.executor import Keyframe
    from hamster_core.geometry import Pose
    from hamster_core.path2d import GripperState
    from hamster_ros import interfaces as t
    from hamster_ros.conversions import numpy_to_image, numpy_to_pointcloud2
    from hamster_ros.markers import plan_markers
    from hamster_bag.recorder import project_typestore

    header = Header(frame_id="base")
    down = np.array([1.0, 0.0, 0.0, 0.0])
    keyframes = [Keyframe(Pose(np.array([0.5, 0.1, 0.2]), down), GripperState.OPEN),
                 Keyframe(Pose(np.array([0.5, 0.1, 0.05]), down), GripperState.CLOSED),
                 Keyframe(Pose(np.array([0.4, -0.2, 0.2]), down), GripperState.OPEN)]
    lifted = np.array([[0.5, 0.1, 0.2], [0.5, 0.1, 0.05], [0.4, -0.2, 0.2]])
    markers = plan_markers(header, keyframes, [0.2, -0.5, 0.0], [0.8, 0.5, 0.6], lifted, np.array([0, 1, 0]))
    rng = np.random.default_rng(1)
    cloud = numpy_to_pointcloud2(rng.uniform([0.2, -0.5, 0.0], [0.8, 0.5, 0.05], (2000, 3)).astype(np.float32),
                                 rng.integers(0, 255, (2000, 3), dtype=np.uint8), header)
    image = numpy_to_image(np.full((48, 64, 3), 120, np.uint8), "rgb8", header)
    store = project_typestore()
    bag = tmp_path / "bag"
    with Writer(bag, version=9, storage_plugin=StoragePlugin.SQLITE3) as writer:
        def write(topic, msgtype, msg, stamp):
            connection = connections.get(topic) or writer.add_connection(topic, msgtype, typestore=store)
            connections[topic] = connection
            writer.write(connection, stamp, serialize_message(msg))
        connections = {}
        write(t.INSTRUCTION, "std_msgs/msg/String", String(data="pick up the cube"), 1)
        write(t.PATH_IMAGE, "sensor_msgs/msg/Image", image, 2)
        write(t.MASKS_IMAGE, "sensor_msgs/msg/Image", image, 3)
        write(t.MARKERS, "visualization_msgs/msg/MarkerArray", markers, 4)
        write(t.POINTS, "sensor_msgs/msg/PointCloud2", cloud, 5)
        for i, point in enumerate(lifted):
            pose = PoseStamped(header=header)
            pose.pose.position.x, pose.pose.position.y, pose.pose.position.z = (float(v) for v in point)
            write(t.EE_POSE, "geometry_msgs/msg/PoseStamped", pose, 10 + i)

    spec = importlib.util.spec_from_file_location("make_monitoring_screenshot",
                                                  ROOT / "tools" / "make_monitoring_screenshot.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "monitoring.png"
    result = module.compose(bag, out, max_kb=200)
    assert out.is_file() and result["bytes"] == out.stat().st_size < 200 * 1024
    assert result["markers"] == len(markers.markers)

    empty = tmp_path / "empty"  # a bag without the monitored streams is named, not half-drawn
    with Writer(empty, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        connection = writer.add_connection(t.INSTRUCTION, "std_msgs/msg/String", typestore=store)
        writer.write(connection, 1, serialize_message(String(data="x")))
    with pytest.raises(SystemExit, match="missing /hamster/path_image, /hamster/masks_image, /hamster/markers"):
        module.compose(empty, tmp_path / "x.png")
