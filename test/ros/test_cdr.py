"""hamster_ros.cdr.FieldReader reads exactly what deserialize_message reads, from the bytes rmw_fastrtps writes
(rclpy.serialization.serialize_message), for messages with strings, sequences, arrays, nested messages and
sequences of messages before the fields read. The bridge reads FrankaRobotState with it (issue 18: a full
deserialize at the 100 Hz check was a third of the bridge's CPU)."""
import json
import math
import os
import subprocess
import sys
import textwrap

import pytest
from geometry_msgs.msg import PoseStamped
from hypothesis import given, settings, strategies as st
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import CameraInfo, JointState

from hamster_ros.cdr import FieldReader

text = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=12)
finite = st.floats(allow_nan=False, allow_infinity=False, width=64)


def value_at(message, path: str):
    for name in path.split("."):
        message = getattr(message, name)
    return tuple(message) if hasattr(message, "__len__") and not isinstance(message, str) else message


def same(a, b) -> bool:
    if isinstance(a, tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b or (isinstance(a, float) and math.isnan(a) and math.isnan(b))


@settings(max_examples=60, deadline=None)
@given(frame=text, names=st.lists(text, max_size=4), positions=st.lists(finite, max_size=5),
       efforts=st.lists(finite, max_size=3), sec=st.integers(-2**31, 2**31 - 1), nanosec=st.integers(0, 2**32 - 1))
def test_joint_state_fields_after_strings_and_sequences(frame, names, positions, efforts, sec, nanosec):
    msg = JointState(name=names, position=positions, velocity=[], effort=efforts)
    msg.header.frame_id, msg.header.stamp.sec, msg.header.stamp.nanosec = frame, sec, nanosec
    data = serialize_message(msg)
    fields = FieldReader(JointState, ["header", "effort"]).read(data)
    expected = deserialize_message(data, JointState)
    assert set(fields) == {"header.stamp.sec", "header.stamp.nanosec", "header.frame_id", "effort"}
    for path, value in fields.items():
        assert same(value, value_at(expected, path)), path


@settings(max_examples=40, deadline=None)
@given(model=text, d=st.lists(finite, max_size=8), k=st.lists(finite, min_size=9, max_size=9),
       width=st.integers(0, 2**32 - 1), rectify=st.booleans())
def test_camera_info_arrays_and_the_nested_message_at_the_end(model, d, k, width, rectify):
    msg = CameraInfo(distortion_model=model, d=d, k=k, width=width)
    msg.roi.do_rectify, msg.roi.height = rectify, 7
    data = serialize_message(msg)
    fields = FieldReader(CameraInfo, ["width", "k", "roi", "binning_y"]).read(data)
    expected = deserialize_message(data, CameraInfo)
    for path, value in fields.items():
        assert same(value, value_at(expected, path)), path
    assert fields["roi.do_rectify"] is rectify and fields["roi.height"] == 7


@settings(max_examples=40, deadline=None)
@given(points=st.lists(st.tuples(finite, finite, finite), max_size=4), alphas=st.lists(finite, max_size=3),
       image=st.binary(max_size=20), uv=st.integers(0, 3), label=text, embedded=st.booleans())
def test_fields_after_sequences_of_messages_and_byte_sequences(points, alphas, image, uv, label, embedded):
    from geometry_msgs.msg import Point
    from std_msgs.msg import ColorRGBA
    from visualization_msgs.msg import Marker, UVCoordinate
    msg = Marker(ns=label, points=[Point(x=x, y=y, z=z) for x, y, z in points], text=label * 2,
                 colors=[ColorRGBA(a=a) for a in alphas], uv_coordinates=[UVCoordinate(u=0.5)] * uv,
                 mesh_use_embedded_materials=embedded)
    msg.texture.data = image
    data = serialize_message(msg)
    fields = FieldReader(Marker, ["text", "mesh_file.filename", "mesh_use_embedded_materials"]).read(data)
    expected = deserialize_message(data, Marker)
    assert fields == {"text": expected.text, "mesh_file.filename": expected.mesh_file.filename,
                      "mesh_use_embedded_materials": embedded}
    with pytest.raises(ValueError, match="points.x: fields in a sequence"):
        FieldReader(Marker, ["points.x"])


def test_bad_input_is_refused_with_the_reason():
    msg = PoseStamped()
    msg.header.frame_id = "fr3_link0"
    data = serialize_message(msg)
    reader = FieldReader(PoseStamped, ["pose.orientation.w"])
    with pytest.raises(ValueError, match="truncated"):
        reader.read(data[:30])
    with pytest.raises(ValueError, match="not little-endian plain CDR"):
        reader.read(b"\x00\x00" + data[2:])
    with pytest.raises(ValueError, match="has no field 'pose.heading'"):
        FieldReader(PoseStamped, ["pose.heading"])
    with pytest.raises(ValueError, match="no field to read"):
        FieldReader(PoseStamped, [])
    # after the encapsulation and the stamp: the frame_id's length, claimed far longer than the message
    assert int.from_bytes(data[12:16], "little") == len("fr3_link0") + 1
    too_long = data[:12] + b"\xff\x00\x00\x00" + data[16:]
    for fields in (["header.frame_id"], ["pose.position.x"]):   # read, and skipped
        with pytest.raises(ValueError, match="truncated"):
            FieldReader(PoseStamped, fields).read(too_long)


FRANKA_CHECK = textwrap.dedent("""
    import json, random, sys
    from rclpy.serialization import deserialize_message, serialize_message
    from franka_msgs.msg import Errors, FrankaRobotState
    from hamster_ros.cdr import FieldReader
    reader = FieldReader(FrankaRobotState, ["header", "robot_mode", "current_errors", "o_t_ee.pose"])
    rng = random.Random(7)
    word = lambda: "".join(rng.choice("abcdefgh_0123") for _ in range(rng.randrange(0, 20)))
    flags = list(Errors.get_fields_and_field_types())
    checked = 0
    for _ in range(200):
        s = FrankaRobotState()
        s.header.frame_id, s.header.stamp.sec, s.header.stamp.nanosec = word(), rng.randrange(2**31), rng.randrange(10**9)
        for joints in (s.measured_joint_state, s.desired_joint_state, s.measured_joint_motor_state,
                       s.tau_ext_hat_filtered):
            n = rng.randrange(0, 9)
            joints.header.frame_id = word()
            joints.name = [word() for _ in range(n)]
            joints.position = [rng.uniform(-3, 3) for _ in range(n)]
            joints.effort = [rng.uniform(-3, 3) for _ in range(rng.randrange(0, 9))]
        for pose in (s.o_t_ee, s.o_t_ee_d, s.f_t_ee):
            pose.header.frame_id = word()
            p, q = pose.pose.position, pose.pose.orientation
            p.x, p.y, p.z, q.x, q.y, q.z, q.w = (rng.uniform(-1, 1) for _ in range(7))
        s.inertia_ee.header.frame_id = word()
        s.robot_mode = rng.randrange(7)
        for errors in (s.current_errors, s.last_motion_errors):
            for flag in flags:
                setattr(errors, flag, rng.random() < 0.2)
        data = serialize_message(s)
        fields, expected = reader.read(data), deserialize_message(data, FrankaRobotState)
        for path, value in fields.items():
            node = expected
            for name in path.split("."):
                node = getattr(node, name)
            assert value == node, (path, value, node)
        checked += len(fields)
    print(json.dumps({"fields_checked": checked, "fields_per_state": 3 + 1 + len(flags) + 7}))
""")


@pytest.mark.slow  # builds the franka_msgs stand-in
def test_franka_robot_state_fields_equal_deserialize_message(franka_msgs_env):
    process = subprocess.run([sys.executable, "-c", FRANKA_CHECK], env=franka_msgs_env, capture_output=True,
                             text=True, timeout=120, cwd=os.getcwd())
    assert process.returncode == 0, process.stderr[-3000:]
    # 3 header fields, the mode, every current error flag and 7 pose numbers, in each of 200 random states
    result = json.loads(process.stdout)
    assert result["fields_checked"] == 200 * result["fields_per_state"]
