"""The Franka side of the robot interface without ROS: robot mode / error interpretation, the stream gate,
target limits, gripper goal bookkeeping, calibration files and the depth -> base-frame transform, and the
pre-flight checks' verdicts."""
from __future__ import annotations

import numpy as np
import pytest

from hamster_core.calibration import (LINK_FROM_OPTICAL, CalibrationError, CameraCalibration, CloudProjector,
                                      calibration_from_dict, depth_in_metres, from_hand_eye, load_calibration,
                                      main as calibration_main, save_calibration, stream_problems)
from hamster_core.camera import PinholeCamera, look_at
from hamster_core.franka import (GateState, GripperAction, GripperGoals, GripperRequest, RecoveryConfig, RobotMode,
                                 StreamGate, TargetLimits, grasp_succeeded, gripper_opening, interpret_state)
from hamster_core.geometry import TOP_DOWN, Pose, quaternion_angle, top_down_orientation
from hamster_core.preflight import (Check, calibration_check, format_table, nudge_blocker, nudge_ramp,
                                    nudge_start_problem, rate_check, recency_check, sync_check)
from hamster_apps.graph import CONFIG_DIR

NO_ERRORS = {"cartesian_reflex": False, "joint_reflex": False}


# -- robot state ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode,ok,words", [
    (RobotMode.MOVE, True, ""), (RobotMode.IDLE, True, ""),
    (RobotMode.REFLEX, False, "reflex"), (RobotMode.USER_STOPPED, False, "user stop"),
    (RobotMode.AUTOMATIC_ERROR_RECOVERY, False, "error recovery"), (RobotMode.GUIDING, False, "guiding"),
    (RobotMode.OTHER, False, "mode other"), (9, False, "unknown(9)"),
])
def test_only_idle_and_move_let_the_stream_run(mode, ok, words):
    health = interpret_state(mode, NO_ERRORS)
    assert health.ok is ok and words in health.reason


def test_an_error_flag_stops_the_stream_even_in_move_mode_and_is_named():
    health = interpret_state(RobotMode.MOVE, {**NO_ERRORS, "cartesian_reflex": True})
    assert not health.ok and health.errors == ("cartesian_reflex",) and "cartesian_reflex" in health.reason


def test_gate_starts_disabled_refuses_enable_without_a_fresh_healthy_state_and_halts_on_reflex():
    gate = StreamGate(stale_after_sec=0.1)
    assert gate.state == GateState.DISABLED and not gate.open
    assert gate.enable(10.0) == (False, "no robot state received yet")
    gate.on_state(interpret_state(RobotMode.REFLEX, NO_ERRORS), 10.0, 10.0)
    ok, message = gate.enable(10.01)
    assert not ok and "reflex" in message
    gate.on_state(interpret_state(RobotMode.MOVE, NO_ERRORS), 10.0, 10.0)
    assert not gate.enable(10.5)[0]                   # stale by then
    assert gate.enable(10.05)[0] and gate.open
    assert gate.on_state(interpret_state(RobotMode.USER_STOPPED, NO_ERRORS), 10.06, 10.06)
    assert gate.state == GateState.HALTED and "user stop" in gate.reason and gate.halted_at == 10.06
    gate.on_state(interpret_state(RobotMode.MOVE, NO_ERRORS), 10.07, 10.07)
    assert not gate.open, "a halt is sticky until the next explicit enable"


def test_enable_names_the_last_states_reflex_before_its_age():
    """Issue 18: after a reflex franka_ros2's broadcaster goes inactive, so the last state is also stale; the
    refusal names the reflex (what to recover from), not only the age."""
    gate = StreamGate(stale_after_sec=0.1)
    gate.on_state(interpret_state(RobotMode.REFLEX, NO_ERRORS), 10.0, 10.0)
    ok, message = gate.enable(30.0)
    assert not ok and "reflex mode" in message, message


@pytest.mark.parametrize("field,value", [("error_recovery_action", "action_server/error_recovery"),
                                         ("switch_controller_service", ""), ("controllers", ()),
                                         ("controllers", ("a", "a")), ("controllers", ("a", "")),
                                         ("timeout_sec", 0.0), ("timeout_sec", float("nan"))])
def test_recovery_config_refuses_bad_values_naming_them(field, value):
    with pytest.raises(ValueError, match=field.split("_")[0]) as error:
        RecoveryConfig(**{field: value})
    assert repr(list(value) if field == "controllers" else value) in str(error.value)


def test_gate_halts_on_a_stale_or_future_state():
    gate = StreamGate(stale_after_sec=0.1)
    gate.on_state(interpret_state(RobotMode.MOVE, NO_ERRORS), 5.0, 5.0)
    gate.enable(5.0)
    assert not gate.check_stale(5.1)
    assert gate.check_stale(5.11) and "0.110 s old" in gate.reason
    gate.on_state(interpret_state(RobotMode.MOVE, NO_ERRORS), 7.0, 5.0)  # stamped in the future
    gate.enable(5.0)
    assert not gate.open


def test_gate_counts_every_halt_and_keeps_the_last_reason_across_a_re_enable():
    """S6: a reader that misses a short-lived "halted" (a quick re-enable) still sees halt_count go up."""
    gate = StreamGate(stale_after_sec=0.1)
    gate.on_state(interpret_state(RobotMode.MOVE, NO_ERRORS), 1.0, 1.0)
    assert gate.halt_count == 0 and gate.last_halt_reason == ""
    gate.enable(1.0)
    gate.on_state(interpret_state(RobotMode.REFLEX, NO_ERRORS), 1.01, 1.01)
    gate.on_state(interpret_state(RobotMode.MOVE, NO_ERRORS), 1.02, 1.02)
    assert gate.enable(1.02)[0] and gate.open and gate.halted_at is None
    assert gate.halt_count == 1 and "reflex" in gate.last_halt_reason
    gate.halt("stopped by request", 1.03)
    assert gate.halt_count == 2 and gate.last_halt_reason == "stopped by request"


def test_an_invalid_pose_is_interpreted_after_the_mode_and_halts():
    """S8: a state with an unusable o_t_ee still reports its reflex (named first), and halts on its own."""
    both = interpret_state(RobotMode.REFLEX, NO_ERRORS, "quaternion is zero")
    assert not both.ok and both.reason.startswith("the robot is in reflex mode") and "invalid o_t_ee" in both.reason
    alone = interpret_state(RobotMode.MOVE, NO_ERRORS, "quaternion is zero")
    assert not alone.ok and alone.mode == "move" and "invalid o_t_ee: quaternion is zero" in alone.reason
    gate = StreamGate(stale_after_sec=0.1)
    gate.on_state(interpret_state(RobotMode.MOVE, NO_ERRORS), 1.0, 1.0)
    gate.enable(1.0)
    assert gate.on_state(alone, 1.01, 1.01) and gate.state == GateState.HALTED and "invalid o_t_ee" in gate.reason
    assert not gate.enable(1.01)[0], "enable is refused while the pose is invalid"


def test_gate_halts_when_no_state_arrives_on_the_wall_clock_while_ros_time_stands_still():
    """S9: with use_sim_time a stopped /clock freezes `now` too; the wall clock still moves."""
    gate = StreamGate(stale_after_sec=0.1)
    gate.on_state(interpret_state(RobotMode.MOVE, NO_ERRORS), 5.0, 5.0, wall=100.0)
    assert gate.enable(5.0, wall=100.0)[0]
    assert not gate.check_stale(5.0, wall=100.1)
    assert gate.check_stale(5.0, wall=100.2) and "wall time" in gate.reason and gate.halt_count == 1
    assert not gate.enable(5.0, wall=100.2)[0]
    gate.on_state(interpret_state(RobotMode.MOVE, NO_ERRORS), 5.0, 5.0, wall=100.25)
    assert gate.enable(5.0, wall=100.25)[0]
    lenient = StreamGate(stale_after_sec=0.1, wall_stale_after_sec=0.5)
    lenient.on_state(interpret_state(RobotMode.MOVE, NO_ERRORS), 5.0, 5.0, wall=100.0)
    lenient.enable(5.0, wall=100.0)
    assert not lenient.check_stale(5.05, wall=100.4) and lenient.check_stale(5.05, wall=100.6)


@pytest.mark.parametrize("kwargs,name", [
    (dict(stale_after_sec=0.0), "stale_after_sec"), (dict(stale_after_sec=float("nan")), "stale_after_sec"),
    (dict(wall_stale_after_sec=-1.0), "wall_stale_after_sec")])
def test_gate_validates(kwargs, name):
    with pytest.raises(ValueError, match=name):
        StreamGate(**kwargs)


LIMITS = TargetLimits((0.3, -0.3, 0.05), (0.7, 0.3, 0.5), max_linear_speed=0.1, max_angular_speed=0.5,
                      max_deviation=0.05, rate_hz=100.0)
HOME = Pose([0.5, 0.0, 0.3], TOP_DOWN)


def test_target_limits_let_a_small_step_through_and_name_every_violation():
    step = Pose([0.5005, 0.0, 0.3], TOP_DOWN)
    assert LIMITS.check(step, HOME, HOME, 0.01) is None
    assert "outside the workspace" in LIMITS.check(Pose([0.8, 0.0, 0.3], TOP_DOWN), HOME, None, None)
    assert "from the measured pose" in LIMITS.check(Pose([0.5, 0.1, 0.3], TOP_DOWN), HOME, None, None)
    jump = Pose([0.51, 0.0, 0.3], TOP_DOWN)           # 1 cm in 10 ms = 1 m/s
    assert "max_linear_speed" in LIMITS.check(jump, Pose([0.505, 0.0, 0.3], TOP_DOWN), HOME, 0.01)
    # a re-seed onto the measured pose commands no motion: allowed however far the last target was
    assert LIMITS.check(jump, Pose([0.51, 0.0, 0.3], TOP_DOWN), HOME, 0.01) is None


def test_a_flipped_orientation_at_the_measured_position_is_not_a_re_seed():
    """S2: near-measured (the step/turn waiver) needs the orientation close too, and every target's orientation
    is limited against the measured one."""
    flipped = Pose(HOME.position, top_down_orientation(np.pi))       # where the arm is, turned half a turn
    assert "max_angular_deviation" in LIMITS.check(flipped, HOME, HOME, 0.01)
    assert "max_angular_deviation" in LIMITS.check(flipped, HOME, None, None)   # without a previous target too
    # within max_angular_deviation of the measured pose, but turning too fast from the last target: the turn
    # check applies (the old near-measured waiver compared positions only and let it through)
    wide = TargetLimits(LIMITS.workspace_min, LIMITS.workspace_max, max_linear_speed=0.1, max_angular_speed=0.5,
                        max_deviation=0.05, max_angular_deviation=1.0, rate_hz=100.0)
    measured = Pose(HOME.position, top_down_orientation(0.8))
    last = Pose(HOME.position, top_down_orientation(0.0))
    assert "max_angular_speed" in wide.check(Pose(HOME.position, top_down_orientation(0.3)), measured, last, 0.01)
    # a true re-seed onto the measured pose (position and orientation) still passes however far the last target was
    assert wide.check(measured, measured, last, 0.01) is None
    assert wide.check(Pose(HOME.position, top_down_orientation(0.805)), measured, last, 0.01) is None
    # the orientation deviation limit, on its own
    assert LIMITS.max_angular_deviation == 0.3
    assert LIMITS.check(Pose(HOME.position, top_down_orientation(0.29)), HOME, None, None) is None
    assert "max_angular_deviation 0.3" in LIMITS.check(Pose(HOME.position, top_down_orientation(0.31)), HOME, None, None)


def test_the_first_target_after_an_enable_is_step_limited_from_the_measured_pose():
    """S1: the adapter seeds (last, dt) with (measured, time since the enable): a target 4 cm away (inside
    max_deviation) is a jump, one step is fine."""
    far = Pose(HOME.position + [0.04, 0.0, 0.0], TOP_DOWN)
    assert LIMITS.check(far, HOME, None, None) is None                 # what the old None seed let through
    assert "max_linear_speed" in LIMITS.check(far, HOME, HOME, 0.0)    # the first target since the enable
    assert LIMITS.check(Pose(HOME.position + [0.004, 0.0, 0.0], TOP_DOWN), HOME, HOME, 0.0) is None


@pytest.mark.parametrize("field,value", [("max_linear_speed", 0.0), ("max_deviation", -1.0), ("rate_hz", float("inf")),
                                         ("max_angular_deviation", 0.0), ("max_angular_deviation", float("nan")),
                                         ("max_angular_deviation", 4.0)])
def test_target_limits_validate(field, value):
    kwargs = dict(workspace_min=(0, 0, 0), workspace_max=(1, 1, 1), max_linear_speed=0.1, max_angular_speed=0.5,
                  max_deviation=0.05)
    kwargs[field] = value
    with pytest.raises(ValueError, match=field):
        TargetLimits(**kwargs)


# -- gripper ----------------------------------------------------------------------------------------------
def test_gripper_goal_results_timeouts_and_preemption():
    goals = GripperGoals(timeout_sec=2.0)
    first, preempted = goals.start(GripperRequest(GripperAction.GRASP, 0.05, 0.05, 20.0, 0.03, 0.03), 0.0)
    assert preempted is None and goals.busy and goals.is_current(first)
    assert goals.expired(1.9) is None
    second, preempted = goals.start(GripperRequest(GripperAction.MOVE, 0.08, 0.05), 1.0)
    assert preempted.action == "grasp" and not preempted.success and "preempted" in preempted.error
    assert goals.is_current(second) and not goals.is_current(first)
    assert goals.finish(first, True, "", 1.1) is None, "a preempted goal's late result is not reported twice"
    goal_id, result = goals.expired(3.01)
    assert goal_id == second and not result.success and "no result within 2 s" in result.error
    assert not goals.busy and goals.finish(second, True, "", 3.5) is None
    third, _ = goals.start(GripperRequest(GripperAction.HOMING), 4.0)
    result = goals.finish(third, False, "homing failed", 4.8)
    assert result.as_dict() == {"action": "homing", "success": False, "error": "homing failed", "seconds": 0.8,
                                "width": 0.0, "command_stamp": None}


def test_every_gripper_result_names_the_command_it_answers():
    """Regression: the policy node timed a gripper failure by its arrival, so a late failure of the previous
    episode's command ended the next episode; the result now carries its command's stamp."""
    goals = GripperGoals(timeout_sec=2.0)
    first, _ = goals.start(GripperRequest(GripperAction.GRASP, 0.05, 0.05, 20.0, command_stamp=10.0), 0.0)
    second, preempted = goals.start(GripperRequest(GripperAction.MOVE, 0.08, 0.05, command_stamp=11.0), 1.0)
    assert preempted.command_stamp == 10.0
    _, timed_out = goals.expired(3.5)
    assert timed_out.command_stamp == 11.0 and timed_out.as_dict()["command_stamp"] == 11.0
    third, _ = goals.start(GripperRequest(GripperAction.MOVE, 0.08, 0.05, command_stamp=12.5), 4.0)
    assert goals.finish(third, True, "", 4.5).command_stamp == 12.5


@pytest.mark.parametrize("kwargs,name", [
    (dict(action=GripperAction.MOVE, width=0.09), "width"),
    (dict(action=GripperAction.MOVE, width=0.04, speed=0.0), "speed"),
    (dict(action=GripperAction.GRASP, width=0.04, force=0.0), "force"),
    (dict(action=GripperAction.GRASP, width=0.04, force=10.0, epsilon_inner=-0.1), "epsilon_inner"),
])
def test_gripper_requests_validate(kwargs, name):
    with pytest.raises(ValueError, match=name):
        GripperRequest(**kwargs)


def test_grasp_criterion_is_libfrankas_open_interval():
    assert grasp_succeeded(0.045, 0.05, 0.035, 0.035)
    assert not grasp_succeeded(0.0, 0.05, 0.035, 0.035)        # closed on nothing
    assert not grasp_succeeded(0.015, 0.05, 0.035, 0.035)      # exactly on the bound: outside


def test_executor_grasp_goal_carries_the_task_config():
    from hamster_core.executor import GripperGoal, GripperSettings
    from hamster_core.path2d import GripperState
    settings = GripperSettings(grasp_width=0.05, epsilon_inner=0.035, epsilon_outer=0.02)
    goal = GripperGoal.for_state(GripperState.CLOSED, settings)
    assert (goal.width, goal.epsilon_inner, goal.epsilon_outer, goal.grasp) == (0.05, 0.035, 0.02, True)
    with pytest.raises(ValueError, match="grasp_width"):
        GripperSettings(grasp_width=0.09)


# -- calibration ------------------------------------------------------------------------------------------
def test_calibration_file_round_trip_and_transform(tmp_path):
    matrix = look_at([1.2, 0.3, 0.9], [0.5, 0.0, 0.1])
    calibration = CameraCalibration(matrix, "fr3_link0", "camera_color_optical_frame", 640, 480, "test")
    path = tmp_path / "calibration.yaml"
    save_calibration(calibration, path)
    loaded = load_calibration(path)
    np.testing.assert_allclose(loaded.base_from_camera, matrix, atol=1e-8)
    assert (loaded.base_frame, loaded.image_width, loaded.image_height) == ("fr3_link0", 640, 480)
    # depth -> base points through the loaded file agree with the camera model's own back-projection
    camera = PinholeCamera(64, 48, 50.0, 52.0, 31.0, 25.0, matrix)
    depth = np.random.default_rng(0).uniform(0.5, 2.0, (48, 64)).astype(np.float32)
    depth[3, 4] = np.nan
    projector = CloudProjector(64, 48, 50.0, 52.0, 31.0, 25.0, loaded.base_from_camera, stride=1)
    points, _ = projector.points(depth)
    expected = camera.depth_to_points(depth).reshape(-1, 3)
    expected = expected[np.all(np.isfinite(expected), axis=1)]
    np.testing.assert_allclose(points, expected, atol=1e-4)
    # and projecting the points back lands on their pixels
    pixels, z = camera.project(points)
    assert np.all(z > 0) and np.all((pixels >= 0) & (pixels <= [64, 48]))


def test_hand_eye_result_for_camera_link_becomes_the_optical_frame(tmp_path):
    link_pose = Pose([1.0, 0.0, 0.8], [0.0, 0.0, 1.0, 0.0])      # camera_link looking back along -x
    calibration = from_hand_eye(link_pose.position, link_pose.orientation, "camera_link")
    optical_z = calibration.base_from_camera[:3, 2]
    np.testing.assert_allclose(optical_z, link_pose.matrix()[:3, :3] @ [1.0, 0.0, 0.0], atol=1e-9)
    np.testing.assert_allclose(LINK_FROM_OPTICAL @ [0, 0, 1], [1, 0, 0])
    out = tmp_path / "cal.yaml"
    assert calibration_main(["write", "--translation", "1.0", "0", "0.8", "--rotation", "0", "0", "1", "0",
                             "--child-frame", "camera_link", "--image-size", "640", "480", "--out", str(out)]) == 0
    np.testing.assert_allclose(load_calibration(out).base_from_camera, calibration.base_from_camera, atol=1e-8)
    assert calibration_main(["check", str(out)]) == 0


@pytest.mark.parametrize("data,message", [
    ({"translation": [0, 0], "rotation": [0, 0, 0, 1]}, "translation must be 3"),
    ({"translation": [0, 0, 0], "rotation": [0, 0, 0, 2]}, "unit quaternion"),
    ({"translation": [0, 0, 0], "rotation": [0, 0, 0, 1], "image_width": 640}, "both image_width"),
    ({"translation": [0, 0, 0], "rotation": [0, 0, 0, 1], "extrinsic": 1}, "unknown keys"),
    ([1, 2], "expected a mapping"),
])
def test_bad_calibrations_are_named(data, message):
    with pytest.raises(CalibrationError, match=message):
        calibration_from_dict(data)


def test_missing_calibration_file_is_named(tmp_path):
    with pytest.raises(CalibrationError, match="does not exist"):
        load_calibration(tmp_path / "nope.yaml")


def test_sim_calibration_file_matches_the_simulators_camera():
    from hamster_sim.scene import SceneConfig, sample_scene
    from hamster_sim.world import FrankaWorld
    calibration = load_calibration(CONFIG_DIR / "calibration_sim.yaml")
    with FrankaWorld(sample_scene(0, SceneConfig()), image_width=320, image_height=240) as world:
        np.testing.assert_allclose(calibration.base_from_camera, world.camera().base_from_camera, atol=1e-6)
    assert (calibration.image_width, calibration.image_height) == (320, 240)


def test_depth_encodings_and_stream_agreement():
    raw = np.array([[0, 1000], [65535, 500]], np.uint16)
    metres = depth_in_metres(raw, "16UC1")
    assert np.isnan(metres[0, 0]) and metres[0, 1] == pytest.approx(1.0) and metres[1, 1] == pytest.approx(0.5)
    assert np.isnan(depth_in_metres(np.array([[0.0, np.inf]], np.float32), "32FC1")).all()
    with pytest.raises(CalibrationError, match="not supported"):
        depth_in_metres(raw, "8UC1")
    k = np.array([[300, 0, 160], [0, 300, 120], [0, 0, 1.0]])
    calibration = CameraCalibration(np.eye(4), image_width=320, image_height=240)
    assert stream_problems((320, 240), k, (320, 240), (320, 240), calibration) == []
    problems = stream_problems((320, 240), k, (640, 480), (320, 240), calibration)
    assert len(problems) == 1 and "depth image is 640x480" in problems[0]
    assert "calibration was made for 320x240" in stream_problems((640, 480), k * [[2], [2], [1]], None, None,
                                                                  calibration)[0]
    assert "principal point" in stream_problems((320, 240), np.array([[300, 0, 400], [0, 300, 120], [0, 0, 1]]),
                                                None, None, None)[0]


# -- pre-flight verdicts ----------------------------------------------------------------------------------
def test_rate_recency_and_sync_checks():
    times = list(np.arange(0, 2, 0.1))                      # 10 Hz
    assert rate_check("cam", times, 10.0, 2.0, 1.95).passed
    assert not rate_check("cam", times, 30.0, 2.0, 1.95).passed
    stalled = rate_check("cam", times, 10.0, 4.0, 3.5)
    assert not stalled.passed and stalled.value.startswith("stalled")
    assert rate_check("cam", [], 10.0, 2.0, 2.0).value == "no messages"
    assert recency_check("state", 9.95, 10.0, 0.1).passed
    future = recency_check("state", 10.5, 10.0, 0.1)
    assert not future.passed and "future" in future.detail
    assert sync_check("rgb/depth", [1.0, 1.1], [1.1], 0.005).passed
    assert not sync_check("rgb/depth", [1.0, 1.1], [1.05], 0.005).passed
    # The newest colour frame's depth still in flight: judged on the newest pair both streams delivered (a
    # healthy simulator failed "100.0 ms" so) ...
    assert sync_check("rgb/depth", [1.0, 1.1, 1.2], [1.0, 1.1], 0.005).passed
    # ... which still fails a real offset between the streams
    assert not sync_check("rgb/depth", [1.0, 1.1, 1.2], [0.95, 1.05], 0.017).passed


def test_calibration_check_finds_the_gripper_and_fails_when_the_cloud_is_shifted():
    tcp = Pose([0.5, 0.0, 0.4], TOP_DOWN)
    y = tcp.matrix()[:3, 1]
    rng = np.random.default_rng(1)
    finger = tcp.position + y * (0.04 + 0.012) + rng.normal(0, 0.002, (50, 3))   # the visible finger pad
    table = np.column_stack([rng.uniform(0.3, 0.7, 500), rng.uniform(-0.3, 0.3, 500), np.zeros(500)])
    cloud = np.vstack([finger, table])
    assert calibration_check(cloud, tcp, 0.08).passed
    shifted = calibration_check(cloud + [0.05, 0.0, 0.0], tcp, 0.08)
    assert not shifted.passed and "calibration" in shifted.detail
    table_text = format_table([shifted])
    assert "FAIL" in table_text and table_text.endswith("PRE-FLIGHT FAILED: " + shifted.name)


def test_the_readmes_calibration_commands_run(tmp_path):
    """The "Real robot" section's two calibration commands, as written (only the output path moved)."""
    import re
    import shlex
    readme = (CONFIG_DIR.parent / "README.md").read_text()
    block = readme[readme.index("**Calibrate**"):readme.index("**Pre-flight**")]
    commands = re.findall(r"^python -m hamster_core\.calibration (.+?)(?:\s+#.*)?$",
                          block.replace("\\\n", " "), flags=re.MULTILINE)
    assert [c.split()[0] for c in commands] == ["write", "check"], commands
    out = tmp_path / "calibration.yaml"
    for command in commands:
        argv = [str(out) if arg == "config/calibration.yaml" else arg for arg in shlex.split(command)]
        assert calibration_main(argv) == 0, command
    calibration = load_calibration(out)
    assert calibration.base_frame == "fr3_link0" and (calibration.image_width, calibration.image_height) == (640, 480)
    # camera_link result -> optical frame: the optical axis is the link's x axis
    link = Pose([1.12, 0.05, 0.78], [-0.3007, 0.0, 0.9537, 0.0]).matrix()
    np.testing.assert_allclose(calibration.base_from_camera[:3, 2], link[:3, 0], atol=1e-6)
    view = calibration.base_from_camera[:3, 2]
    assert view[0] < -0.7 and view[2] < -0.5, "the README's example camera looks back at the robot and down"


# -- the pre-flight nudge --------------------------------------------------------------------------------
STATE_TOPIC = "/franka_robot_state_broadcaster/robot_state"


def _rows(**verdicts):
    names = {"mode": "robot: mode and errors", "alive": f"alive: {STATE_TOPIC}", "recent": f"recent: {STATE_TOPIC}"}
    return [Check(names[key], verdict, "v", "e") for key, verdict in verdicts.items()]


def test_the_nudge_moves_only_after_the_robot_and_state_rows_passed():
    """S4: a failed or skipped robot-health / alive / recent row blocks the nudge, with the reason."""
    assert nudge_blocker(_rows(mode=True, alive=True, recent=True), STATE_TOPIC) is None
    blocked = nudge_blocker(_rows(mode=False, alive=True, recent=True), STATE_TOPIC)
    assert blocked.startswith("not nudged") and "'robot: mode and errors' failed" in blocked
    assert "'recent: " in nudge_blocker(_rows(mode=True, alive=True, recent=None), STATE_TOPIC)
    assert "alive" in nudge_blocker(_rows(mode=True, recent=True), STATE_TOPIC)      # not checked at all
    assert nudge_blocker([], STATE_TOPIC) is not None
    # the start: a state at most two periods old, on its stamp and its arrival
    assert nudge_start_problem(0.015, 0.005, 100.0) is None
    assert "stamped" in nudge_start_problem(0.5, 0.005, 100.0)
    assert "no robot state for" in nudge_start_problem(0.015, 0.3, 100.0)


def test_the_nudge_ramps_at_the_speed_limit_inside_the_workspace():
    start = Pose([0.5, 0.0, 0.3], TOP_DOWN)
    ramp = nudge_ramp(start, [0.5, 0.0, 0.31], 0.1, 100.0, (0.3, -0.3, 0.05), (0.7, 0.3, 0.5))
    assert len(ramp) == 10 and np.allclose(ramp[-1].position, [0.5, 0.0, 0.31])
    steps = np.diff([start.position] + [p.position for p in ramp], axis=0)
    assert np.all(np.linalg.norm(steps, axis=1) <= 0.1 / 100.0 + 1e-12)
    assert all(quaternion_angle(p.orientation, TOP_DOWN) < 1e-9 for p in ramp)
    with pytest.raises(ValueError, match="the goal .* outside the workspace"):
        nudge_ramp(Pose([0.5, 0.0, 0.49], TOP_DOWN), [0.5, 0.0, 0.52], 0.1, 100.0, (0.3, -0.3, 0.05), (0.7, 0.3, 0.5))
    with pytest.raises(ValueError, match="the start .* outside the workspace"):
        nudge_ramp(Pose([0.9, 0.0, 0.3], TOP_DOWN), [0.9, 0.0, 0.31], 0.1, 100.0, (0.3, -0.3, 0.05), (0.7, 0.3, 0.5))


# -- the controller that takes the targets (issue 18) -------------------------------------------------------
def test_controller_profiles_name_the_topic_the_controller_listens_on():
    from hamster_core.franka import controller_target_topic
    # crisp_controllers' CartesianController: create_subscription<PoseStamped>("target_pose", QoS(1), ...)
    # in src/cartesian_controller.cpp, under controller_manager's root namespace.
    assert controller_target_topic("crisp_cartesian") == "/target_pose"
    assert controller_target_topic("custom", "/my_controller/target") == "/my_controller/target"
    with pytest.raises(ValueError, match="'custom' needs target_topic.*got ''"):
        controller_target_topic("custom")
    with pytest.raises(ValueError, match="only for controller 'custom'"):
        controller_target_topic("crisp_cartesian", "/elsewhere")
    with pytest.raises(ValueError, match="unknown controller 'impedance': one of crisp_cartesian, custom"):
        controller_target_topic("impedance")
    with pytest.raises(ValueError, match="overwrites the target position every cycle"):
        controller_target_topic("franka_cartesian_impedance_example")


def test_the_target_stream_needs_a_listening_controller_and_no_other_publisher():
    from hamster_core.franka import controller_link_problem
    assert controller_link_problem("/target_pose", 0, 1) == \
        "nothing subscribes to /target_pose: is the controller loaded and active?"
    assert controller_link_problem("/target_pose", 1, 2).startswith("1 other publisher(s) on /target_pose")
    assert controller_link_problem("/target_pose", 1, 1) is None
    assert controller_link_problem("/target_pose", 3, 1) is None   # an inactive controller, an observer


def test_interface_rows_pass_on_the_providing_side_only_and_name_the_missing_provider():
    """hamster-preflight --interfaces (issue 18): a topic counts only with the side the robot must have (a
    subscriber of the target topic is the controller; a publisher there is not), actions and services by server."""
    from hamster_core.preflight import ExpectedInterface, GraphView, interface_checks
    expected = [ExpectedInterface("subscriber", "/target_pose", "geometry_msgs/msg/PoseStamped", "the controller",
                                  "the target stream"),
                ExpectedInterface("publisher", "/state", "franka_msgs/msg/FrankaRobotState", "the broadcaster", "pose"),
                ExpectedInterface("action", "/recover", "franka_msgs/action/ErrorRecovery", "franka_hardware", "r"),
                ExpectedInterface("service", "/switch", "controller_manager_msgs/srv/SwitchController", "cm", "r")]
    seen = interface_checks(expected, GraphView({"/target_pose": (0, 1), "/state": (1, 0)}, frozenset({"/recover"}),
                                                frozenset({"/switch"})))
    assert [c.passed for c in seen] == [True, True, True, True]
    missing = interface_checks(expected, GraphView({"/target_pose": (1, 0)}, frozenset(), frozenset({"/other"})))
    assert [c.passed for c in missing] == [False, False, False, False]
    assert missing[0].value == "0 subscriber(s)" and "is the controller running" in missing[0].detail
    with pytest.raises(ValueError, match="'topic'"):
        interface_checks([ExpectedInterface("topic", "/x", "t", "p", "n")], GraphView({}, frozenset(), frozenset()))


def test_gripper_opening_counts_a_lone_finger_joint_twice():
    """Issue 17: a real FR3's /joint_states may carry fr3_finger_joint1 only; the live policy node read no gripper
    width at all then (it needed both), so a grasp was never seen."""
    joints = ("fr3_finger_joint1", "fr3_finger_joint2")
    assert gripper_opening({"fr3_finger_joint1": 0.02, "fr3_finger_joint2": 0.03}, joints) == pytest.approx(0.05)
    assert gripper_opening({"fr3_finger_joint1": 0.015, "fr3_joint1": 0.3}, joints) == pytest.approx(0.03)
    assert gripper_opening({"fr3_joint1": 0.3}, joints) is None
