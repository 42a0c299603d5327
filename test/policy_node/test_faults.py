"""Fault tests in the real multi-process graph (issue 8): the simulator and the three runtime nodes as separate
processes over DDS, faults injected while episodes run.

Faults: kill and restart each node mid-episode, stall the camera, freeze proprioception, jump the sim clock back
(an old /clock, and a simulator restart), NaN/empty/malformed/out-of-range point clouds, wrong image encodings and
sizes, out-of-range and malformed paths, masks of the wrong size/encoding/with duplicate labels. The VLM server
down or hanging (OpenAI-compatible backend) is in test_faults_vlm.py, with its own graph.

A monitor node (graph_harness.py) records every /robot/cartesian_target, /hamster/executor_status and /diagnostics
message, and `assert_safe_targets` checks over the whole run: every target inside the workspace of config/sim.yaml,
every step between consecutive targets within the executor's own per-tick limit (a late tick licenses at most two
control periods of motion), unit quaternions. "Holds within one control period" is checked as: once the policy
reports holding_stale_input, every target after it is the same pose. No assertion on wall-clock speed; timeouts only
bound hangs.
"""
from __future__ import annotations

import array
import re
import time

import numpy as np
import pytest
import yaml

from graph_harness import Graph, Injector, Monitor, hearing_monitor
from hamster_apps.graph import CONFIG_DIR
from waiting import wait_until

pytestmark = [pytest.mark.graph, pytest.mark.slow]

SIM = yaml.safe_load((CONFIG_DIR / "sim.yaml").read_text())["policy_node"]["ros__parameters"]
RUNTIME = yaml.safe_load((CONFIG_DIR / "runtime.yaml").read_text())["policy_node"]["ros__parameters"]
WS_MIN, WS_MAX = np.array(SIM["workspace_min"]), np.array(SIM["workspace_max"])
PERIOD = 1.0 / RUNTIME["rate_hz"]
MAX_STEP = SIM["max_linear_speed"] * 2 * PERIOD + 1e-6          # m per message (a late tick: two periods)
MAX_TURN = SIM["max_angular_speed"] * 2 * PERIOD + 1e-5          # rad per message
SEED = 3
STREAM_PAUSE_SEC = 0.5   # the stream sent nothing this long: it was halted and starts over from the arm

# Faster failures than the defaults, so the module fits in `make test`.
OVERRIDES = {
    "policy_node": {"mask_wait_sec": 1.5},
    "hamster_vlm_node": {"input_timeout_sec": 4.0},
}


def quaternion_angle(a, b) -> float:
    return 2.0 * float(np.arccos(min(1.0, abs(float(np.dot(a, b))))))


def _reseeded(monitor: Monitor, target) -> bool:
    """The target is a measured pose (clipped into the workspace) received shortly before it: the executor
    re-seeded where the arm is, after something else moved it (a scene reset, a restarted simulator)."""
    received, position, quaternion, _ = target
    with monitor.lock:
        # (callbacks of different topics may run out of order: the pose may be recorded just after the target)
        poses = [pose for pose in monitor.ee_poses if received - 2.0 <= pose[0] <= received + 1.0]
    return any(np.allclose(np.clip(p, WS_MIN, WS_MAX), position, atol=1e-9)
               and quaternion_angle(q, quaternion) < 1e-6 for _, p, q in poses)


def free_to_follow_the_arm(monitor: Monitor, before, after) -> bool:
    """Between two targets the executor halted (the second starts over from the arm: a new episode), or it ran no
    plan (idle or stopped: nothing moves the target, so it follows an arm that a scene reset moved)."""
    with monitor.lock:
        statuses = list(monitor.statuses)
    if any(record["status"] == "halted" and before[0] - 1.0 <= received <= after[0] for received, record in statuses):
        return True
    earlier = [record["status"] for received, record in statuses if received <= before[0]]
    return bool(earlier) and earlier[-1] not in ("executing", "done")


def assert_safe_targets(monitor: Monitor) -> int:
    """Over every target received so far: inside the workspace, unit quaternions, and steps within the
    executor's per-tick limits. A jump is allowed only onto the arm's measured pose (commands no motion), and only
    within max_reseed_distance (a re-seed during a plan), after the stream paused or halted (a new episode or process
    starting from the arm), or without a plan (a scene reset moved the arm): a frozen, re-stamped state once drew
    8 cm jumps onto itself again and again."""
    with monitor.lock:
        targets = list(monitor.targets)
    assert targets, "no Cartesian target was received"
    positions = np.array([target[1] for target in targets])
    quaternions = np.array([target[2] for target in targets])
    assert np.all(np.isfinite(positions)) and np.all(np.isfinite(quaternions))
    outside = np.flatnonzero(np.any((positions < WS_MIN - 1e-9) | (positions > WS_MAX + 1e-9), axis=1))
    assert len(outside) == 0, f"target {outside[0]} at {positions[outside[0]]} is outside {WS_MIN}..{WS_MAX}"
    norms = np.linalg.norm(quaternions, axis=1)
    assert np.all(np.abs(norms - 1.0) < 1e-6), f"non-unit quaternion, norm {norms[np.argmax(np.abs(norms - 1))]}"
    steps = np.linalg.norm(np.diff(positions, axis=0), axis=1)
    jumps = set()
    for i in np.flatnonzero(steps > MAX_STEP):
        assert _reseeded(monitor, targets[i + 1]), \
            f"target {i + 1} moved {steps[i]:.4f} m in one message (limit {MAX_STEP:.4f}), not onto a measured pose"
        paused = targets[i + 1][0] - targets[i][0] > STREAM_PAUSE_SEC or free_to_follow_the_arm(monitor, *targets[i:i + 2])
        assert steps[i] <= SIM["max_reseed_distance"] + 1e-6 or paused, \
            f"target {i + 1} re-seeded {steps[i]:.4f} m onto a measured pose (max_reseed_distance " \
            f"{SIM['max_reseed_distance']})"
        jumps.add(i + 1)
    for i in range(1, len(targets)):
        angle = quaternion_angle(quaternions[i - 1], quaternions[i])
        assert angle <= MAX_TURN or i in jumps or _reseeded(monitor, targets[i]), \
            f"target {i} turned {angle:.4f} rad in one message"
    return len(targets)


def dropped(monitor: Monitor, key: str) -> int:
    """How many inputs policy_node dropped for this "source: reason", by its newest status (counted over its life)."""
    with monitor.lock:
        records = [record for _, record in monitor.statuses if "dropped" in record]
    return records[-1]["dropped"].get(key, 0) if records else 0


def assert_holds_after(monitor: Monitor, since: float, until: float, stamp_from: float | None = None,
                       min_count: int = 5) -> np.ndarray:
    """Every target received in [since, until] is one and the same pose (the stream holds). With `stamp_from` (the
    stamp of the tick that started holding), only the targets of that tick and later ones: those stamped after it
    (callbacks may run out of order across topics, so not by arrival), and the last one stamped with it. Under
    simulated time several ticks can share a stamp when /clock lags the 100 Hz stream; the earlier ones of those
    are ticks before the hold began."""
    received = [(stamp, p, q) for arrived, p, q, stamp in monitor.targets_since(since) if arrived <= until]
    if stamp_from is None:
        held = [(p, q) for _, p, q in received]
    else:
        same_tick = [(p, q) for stamp, p, q in received if stamp == stamp_from]
        held = same_tick[-1:] + [(p, q) for stamp, p, q in received if stamp > stamp_from]
    assert len(held) >= min_count, f"only {len(held)} targets while holding: the stream must keep holding, not stop"
    first_p, first_q = held[0]
    for p, q in held:
        assert np.array_equal(p, first_p) and np.array_equal(q, first_q), f"target moved while holding: {p} != {first_p}"
    return first_p


# ------------------------------------------------------------------------------------------------------------
# The simulated graph: sim + VLM (oracle) + perception + policy

@pytest.fixture(scope="module")
def graph(tmp_path_factory):
    from hamster_apps.graph import describe_graph
    from hamster_apps.runner import GraphRunner, ros_environment

    folder = tmp_path_factory.mktemp("faults")
    overrides = folder / "overrides.yaml"
    overrides.write_text(yaml.safe_dump({name: {"ros__parameters": values} for name, values in OVERRIDES.items()}))
    specs = describe_graph(seed=SEED, params_files=(str(overrides),))
    runner = GraphRunner(specs, folder / "logs", ros_environment())
    monitor, deaf = None, []
    runner.start()
    try:
        monitor, deaf = hearing_monitor(
            lambda: Monitor(use_sim_time=True),
            lambda m: m.reset_client.service_is_ready() and m.episode_client.server_is_ready()
            and m.stall_camera.service_is_ready(),
            lambda m: len(m.targets) > 20, "the graph to start streaming targets", Graph(runner, None).alive)
        graph = Graph(runner, monitor)
        yield graph
        graph.alive()
        assert_safe_targets(monitor)
    finally:
        for open_monitor in ([monitor] if monitor is not None else []) + deaf:
            open_monitor.close()
        runner.stop()


@pytest.fixture(autouse=True)
def revive_killed_nodes(graph, request):
    """After each test (failed or not): the nodes it killed run again and no episode of it is left running. A failed
    test prints every node's log tail (shown with its report), since CI keeps no log folder."""
    yield
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        print(graph.log_tails(graph.runner.processes, 40))
    graph.revive()
    try:
        graph.monitor.stop()
    except AssertionError:
        pass
    time.sleep(0.3)


def test_frozen_proprioception_holds_at_once_and_resumes(graph):
    m = graph.monitor
    instruction = m.reset(SEED)
    since = time.monotonic()
    result = m.start_episode(instruction, 60, graph.alive)
    graph.executing(since)

    frozen = time.monotonic()
    m.set_fault(m.freeze_state, True)
    _, stale = wait_until(lambda: m.status_since(frozen, "holding_stale_input"), "holding_stale_input", 10,
                          graph.alive)
    time.sleep(1.0)
    thawed = time.monotonic()
    m.set_fault(m.freeze_state, False)
    # Within one control period: the target of the very tick that detected the stale state (stamped like the
    # status) is the previous target, and so is every one after it.
    assert_holds_after(m, frozen, thawed, stamp_from=stale["stamp"])
    assert "end-effector pose is" in stale["detail"] and "s old" in stale["detail"], stale
    warnings = [d for d in m.diagnostics_since(frozen, "policy_node") if d[2] == 1]
    assert warnings and "holding_stale_input: the end-effector pose is" in warnings[0][3], warnings
    assert "executor: holding_stale_input: the end-effector pose is" in graph.log("policy_node")

    graph.executing(thawed)  # the plan resumes where it paused
    m.stop()
    outcome = m.result(result, 30, graph.alive)
    assert not outcome.success and outcome.message == "stopped by request while executing", outcome.message
    assert_safe_targets(m)


def test_frozen_state_restamped_halts_the_executor_and_ends_the_episode(graph):
    """Issue 21: a robot state frozen but re-published with fresh stamps (a driver or bridge re-stamping a stale
    sample) drew 12 target jumps of ~8 cm in 5 s and the episode never ended."""
    from geometry_msgs.msg import PoseStamped
    m = graph.monitor
    instruction = m.reset(SEED)
    since = time.monotonic()
    result = m.start_episode(instruction, 60, graph.alive)
    graph.executing(since)
    publisher = m.node.create_publisher(PoseStamped, m.t.EE_POSE, m.t.SENSOR)
    sample = m.latest["ee"]
    frozen = time.monotonic()
    m.set_fault(m.freeze_state, True)   # the simulator's state stops ...

    def restamped(index, stamp):        # ... and its last sample goes out again and again, freshly stamped
        sample.header.stamp = stamp
        return [(publisher, sample)]
    injector = Injector(m, restamped, image=False)
    try:
        outcome = m.result(result, 60, graph.alive)
    finally:
        injector.close()
        m.set_fault(m.freeze_state, False)
        m.node.destroy_publisher(publisher)
    assert not outcome.success, outcome.message
    assert outcome.message.startswith("executor halted: the measured pose kept every bit") \
        and outcome.message.endswith("a frozen state, re-stamped while executing"), outcome.message
    _, halted = wait_until(lambda: m.status_since(frozen, "halted"), "status halted", 10, graph.alive)
    assert "kept every bit" in halted["detail"], halted
    assert not m.status_since(frozen, "holding_tracking_error"), "re-seeded onto the frozen pose"
    assert_safe_targets(m)


def test_old_clock_ends_the_episode_and_the_next_one_runs(graph):
    from rosgraph_msgs.msg import Clock

    m = graph.monitor
    instruction = m.reset(SEED + 1)
    since = time.monotonic()
    result = m.start_episode(instruction, 60, graph.alive)
    graph.executing(since)
    now = m.node.get_clock().now().nanoseconds * 1e-9
    old = Clock()
    old.clock.sec = int(now - min(5.0, now / 2))  # back by up to 5 s (sim time starts at 0 with the graph)
    for _ in range(3):  # best effort: more than one, in case one is lost
        m.clock_pub.publish(old)
        time.sleep(0.02)
    outcome = m.result(result, 30, graph.alive)
    assert not outcome.success
    assert outcome.message.startswith("the clock jumped back by ") and \
        outcome.message.endswith("(simulator reset or restart?) while executing"), outcome.message
    ended = time.monotonic() + 0.2  # (targets still in flight when the result came)
    assert "the clock jumped back by" in graph.log("policy_node")
    time.sleep(0.7)
    assert_holds_after(m, ended, time.monotonic())  # halted: holding the last target

    since = time.monotonic()
    result = m.start_episode(instruction, 60, graph.alive)  # a new episode after the jump plans and moves
    graph.executing(since)
    m.stop()
    assert m.result(result, 30, graph.alive).message == "stopped by request while executing"
    assert_safe_targets(m)


def _cloud(kind: str, stamp):
    from std_msgs.msg import Header

    from hamster_ros.conversions import numpy_to_pointcloud2
    header = Header(frame_id="base", stamp=stamp)
    if kind == "nan":
        return numpy_to_pointcloud2(np.full((2000, 3), np.nan, np.float32), None, header)
    if kind == "empty":
        return numpy_to_pointcloud2(np.empty((0, 3), np.float32), None, header)
    if kind == "truncated":  # the header promises more points than the data holds
        msg = numpy_to_pointcloud2(np.random.default_rng(0).uniform(0.2, 0.6, (500, 3)).astype(np.float32), None,
                                   header)
        msg.width += 100
        return msg
    if kind == "no_z":
        msg = numpy_to_pointcloud2(np.zeros((10, 3), np.float32), None, header)
        msg.fields = msg.fields[:2]
        return msg
    if kind == "oversized_far":  # 300,000 finite points, all 40 m away: nothing the path can be lifted onto
        points = np.random.default_rng(1).uniform(-1.0, 1.0, (300_000, 3)).astype(np.float32) + np.float32(40.0)
        return numpy_to_pointcloud2(points, np.zeros((len(points), 3), np.uint8), header)
    raise ValueError(kind)


def test_stalled_camera_and_bad_clouds_hold_the_arm_and_end_the_episode_clearly(graph):
    m = graph.monitor
    instruction = m.reset(SEED + 2)
    m.set_fault(m.stall_camera, True)
    try:
        start = time.monotonic()
        # Malformed clouds first, then clouds without a single finite point: never planned on.
        kinds = ["truncated", "no_z"] * 20 + ["nan", "empty"] * 200
        injector = Injector(m, lambda i, stamp: [(m.cloud_pub, _cloud(kinds[min(i, len(kinds) - 1)], stamp))])
        try:
            outcome = m.result(m.start_episode(instruction, 9.0, graph.alive), 40, graph.alive)
        finally:
            injector.close()
        assert not outcome.success
        assert outcome.message == "timed out after 9 s while waiting for a point cloud with finite points", \
            outcome.message
        waited = {record.get("waiting_for") for _, record in m.statuses[-200:]}
        assert {"valid camera and point cloud", "a point cloud with finite points"} <= waited, waited
        assert dropped(m, "camera and cloud: invalid") >= 1 and dropped(m, "cloud: without a finite point") >= 1
        assert "dropped camera and cloud invalid: PointCloud2" in graph.log("policy_node")
        reported = {d[4].get("waiting_for") for d in m.diagnostics_since(start, "policy_node")}
        assert {"valid camera and point cloud", "a point cloud with finite points"} <= reported, reported
        assert instruction in [i for _, i in m.paths], "the VLM planned on the injected image"
        assert_holds_after(m, start, time.monotonic())  # nothing moved while waiting for inputs

        # 300,000 points, all far outside the workspace.
        start = time.monotonic()
        injector = Injector(m, lambda i, stamp: [(m.cloud_pub, _cloud("oversized_far", stamp))] if i % 5 == 0 else [])
        try:
            outcome = m.result(m.start_episode(instruction, 12.0, graph.alive), 40, graph.alive)
        finally:
            injector.close()
        assert not outcome.success
        assert outcome.message == "cannot plan: no point of the cloud is visible in the camera image", outcome.message
        assert_holds_after(m, start, time.monotonic())
    finally:
        m.set_fault(m.stall_camera, False)
    graph.alive()
    assert_safe_targets(m)


def _bad_image(kind: str, good, stamp):
    from sensor_msgs.msg import Image
    msg = Image(header=good.header, height=good.height, width=good.width, encoding=good.encoding,
                is_bigendian=good.is_bigendian, step=good.step)
    msg.header.stamp = stamp
    if kind == "yuv422":
        msg.encoding, msg.step = "yuv422", good.width * 2
        msg.data = bytes(good.width * 2 * good.height)
    elif kind == "mono16":
        msg.encoding, msg.step = "16UC1", good.width * 2
        msg.data = bytes(good.width * 2 * good.height)
    elif kind == "truncated":
        msg.data = bytes(good.data[: len(good.data) // 2])
    elif kind == "small":  # a valid rgb8 image, but not the size camera_info describes
        msg.width, msg.height, msg.step = 100, 80, 300
        msg.data = bytes(300 * 80)
    return msg


def test_bad_camera_images_fail_the_vlm_clearly_and_nothing_is_planned(graph):
    m = graph.monitor
    instruction = m.reset(SEED + 3)
    good, segmentation = m.latest["image"], m.latest["segmentation"]
    m.set_fault(m.stall_camera, True)
    kinds = ["yuv422", "mono16", "truncated", "small"]

    def messages(i, stamp):
        segmentation.header.stamp = stamp  # perception processes an image with its segmentation of the same stamp
        return [(m.image_pub, _bad_image(kinds[i % len(kinds)], good, stamp)), (m.segmentation_pub, segmentation)]
    start = time.monotonic()
    injector = Injector(m, messages, image=False)
    try:
        outcome = m.result(m.start_episode(instruction, 30.0, graph.alive), 60, graph.alive)
    finally:
        injector.close()
        m.set_fault(m.stall_camera, False)
    assert not outcome.success
    assert outcome.message.startswith(f"VLM failed: no path for {instruction!r} after 3 attempts: input failed: "), \
        outcome.message
    log = graph.log("hamster_vlm_node")
    failures = [line for line in log.splitlines() if instruction in line and "input failed" in line]
    assert len(failures) >= 3, failures
    named = " ".join(failures)
    causes = ("image_to_rgb needs one of rgb8, bgr8, rgba8, bgra8, mono8, got 'yuv422'",
              "image_to_rgb needs one of rgb8, bgr8, rgba8, bgra8, mono8, got '16UC1'",
              "rgb8 image 320x240 has 115200 bytes of data, expected step * height = 230400",
              "the camera image is 100x80 but its camera_info says 320x240")
    assert all(any(cause in line for cause in causes) for line in failures), failures  # each names its input
    assert sum(cause in named for cause in causes) >= 2, named
    vlm_errors = [d for d in m.diagnostics_since(start, "hamster_vlm_node") if d[2] == 2]
    assert vlm_errors and "input failed" in vlm_errors[-1][3]
    assert instruction not in [i for _, i in m.paths]
    # Each node counts what it dropped (issue 21): the VLM's status, perception's /diagnostics.
    status = [s for s in m.vlm_statuses if s["instruction"] == instruction][-1]
    assert status["dropped"].get("image: invalid", 0) >= 3, status
    wait_until(lambda: any(int(d[4].get("dropped image: invalid", 0)) > 0
                           for d in m.diagnostics_since(start, "perception_node")), "perception's drop count", 30)
    assert_holds_after(m, start, time.monotonic())
    graph.alive()
    assert_safe_targets(m)


def test_vlm_killed_bad_paths_rejected_then_restarted_vlm_resumes_the_episode(graph):
    from std_msgs.msg import Header

    from hamster_ros import interfaces as t
    from hamster_ros.conversions import seconds_to_stamp, stamp_to_seconds

    m = graph.monitor
    graph.kill("hamster_vlm_node")
    instruction = m.reset(SEED + 4)
    start = time.monotonic()
    result = m.start_episode(instruction, 60, lambda: graph.alive("hamster_vlm_node"))
    path_pub = m.node.create_publisher(m.Path2D, t.PATH, t.LATCHED)
    try:
        # Only once the episode waits for nothing but the path are the bad ones looked at (on a loaded machine the
        # first one used to be replaced before the policy had its other inputs).
        _, waiting_status = wait_until(lambda: m.status_since(start, predicate=lambda r: r.get("waiting_for") ==
                                                              f"a path for {instruction!r}"),
                                       "the episode to wait for a path", 30)
        invalid_before = dropped(m, "path: invalid")
        for k, (x, y, gripper) in enumerate((([0.2, 1.5, 0.6], [0.3, 0.4, 0.5], [0, 1, 0]),  # x outside [0, 1]
                                            ([0.2, 0.4, 0.6], [0.3, 0.4], [0, 1, 0]),        # different lengths
                                            ([0.2, float("nan")], [0.3, 0.4], [0, 1]),       # not finite
                                            ([0.2, 0.4], [0.3, 0.4], [0, 7]))):              # gripper not 0/1
            # Stamped no earlier than the episode's start as the policy reports it: a monitor clock behind the
            # policy's would make the path older than the episode (dropped as such, not as invalid).
            stamp = max(stamp_to_seconds(m.now_stamp()), waiting_status["episode_start"] + 0.001)
            msg = m.Path2D(header=Header(frame_id="camera", stamp=seconds_to_stamp(stamp)), image_width=320,
                           image_height=240, instruction=instruction, model_id="fault-injection")
            msg.x, msg.y, msg.gripper = array.array("f", x), array.array("f", y), array.array("B", gripper)
            path_pub.publish(msg)
            wait_until(lambda: dropped(m, "path: invalid") > invalid_before + k, f"bad path {k} counted as invalid",
                       10)
        rejected = time.monotonic()
        waiting = wait_until(lambda: m.status_since(rejected, predicate=lambda r: r.get("waiting_for") ==
                                                    f"a path for {instruction!r}"), "still waiting for a path", 10)
        assert waiting
        time.sleep(0.5)
        assert_holds_after(m, start, time.monotonic())
    finally:
        m.node.destroy_publisher(path_pub)  # the latched bad path must not reach later subscribers
    restarted = time.monotonic()
    # It gets the latched instruction and plans it: the policy executes its path.
    graph.restart("hamster_vlm_node", lambda: m.status_since(restarted, "executing"), "path the policy executes")
    graph.executing(restarted)
    assert [i for _, i in m.paths if i == instruction]
    m.stop()
    assert m.result(result, 30, graph.alive).message == "stopped by request while executing"
    assert_safe_targets(m)


def test_perception_killed_bad_masks_rejected_policy_plans_without_masks(graph):
    from std_msgs.msg import Header

    from hamster_core.instruction import PLACEMENT_LABEL, TARGET_LABEL, parse_pick_place_instruction
    from hamster_ros.conversions import masks_to_msg, seconds_to_stamp, stamp_to_seconds

    m = graph.monitor
    graph.kill("perception_node")
    instruction = m.reset(SEED + 5)
    target, placement = parse_pick_place_instruction(instruction)
    alive = lambda: graph.alive("perception_node")  # noqa: E731

    def bad_masks(i, stamp):
        # Stamped no earlier than the episode's start as the policy reports it (a lagging monitor clock would make
        # them "stamped before the episode", not the faults injected here).
        stamp = seconds_to_stamp(max(stamp_to_seconds(stamp), episode_start + 0.001))
        header = Header(frame_id="camera_color_optical_frame", stamp=stamp)
        kind = i % 4
        size = (10, 10) if kind == 0 else (240, 320)
        msg = masks_to_msg(header, [TARGET_LABEL, PLACEMENT_LABEL], [target, placement],
                           [np.ones(size, bool)] * 2, [0.9, 0.9], [(0, 0, 5, 5)] * 2)
        if kind == 1:
            msg.masks[0].encoding = "rgb8"
        elif kind == 2:
            msg.labels = [TARGET_LABEL, TARGET_LABEL]
        elif kind == 3:
            msg.scores = msg.scores[:1]
        return [(m.masks_pub, msg)]
    start = time.monotonic()
    result = m.start_episode(instruction, 60, alive)
    _, started = wait_until(lambda: m.status_since(start, predicate=lambda r: r.get("episode_start") is not None
                                                   and r.get("waiting_for")), "the episode's start", 30, alive)
    episode_start = started["episode_start"]
    injector = Injector(m, bad_masks, image=False)
    try:
        wait_until(lambda: m.status_since(start, "executing"), "executing without masks", 60, alive)
    finally:
        injector.close()
    assert dropped(m, "masks: of the wrong size") >= 1 and dropped(m, "masks: invalid") >= 1
    log = graph.log("policy_node")
    assert "dropped masks of the wrong size: [(10, 10), (10, 10)]: the camera's images are 320x240" in log
    last_plan = [line for line in log.splitlines() if re.search(r"\[policy_node\]: plan \d+: ", line)][-1]
    assert "'refined_with': []" in last_plan, last_plan  # planned from the path and cloud alone
    restarted = time.monotonic()
    graph.restart("perception_node", lambda: [t for t in m.masks_received if t > restarted], "masks")
    m.stop()
    assert m.result(result, 30, graph.alive).message == "stopped by request while executing"
    assert_safe_targets(m)


def test_policy_killed_mid_episode_then_restarted_runs_a_new_episode(graph):
    m = graph.monitor
    instruction = m.reset(SEED + 6)
    since = time.monotonic()
    result = m.start_episode(instruction, 60, graph.alive)
    graph.executing(since)
    code = graph.kill("policy_node")
    killed = time.monotonic()
    assert code == -9
    # The client side ends with a clear reason: the node is gone (the action result never comes).
    with pytest.raises(AssertionError, match=r"nodes exited: \{'policy_node': -9\}"):
        m.result(result, 30, graph.alive)
    time.sleep(1.0)
    assert not m.targets_since(killed + 0.2), "targets after the policy node died"
    ee = m.latest["ee"].pose.position
    last = m.targets_since(0)[-1][1]
    assert np.linalg.norm(np.array([ee.x, ee.y, ee.z]) - last) < 0.02, "the robot did not hold the last target"

    restarted = time.monotonic()
    graph.restart("policy_node", lambda: m.targets_since(restarted), "targets (it needs the robot's state)")
    time.sleep(2.0)  # discovery: an action server that just appeared may not reach the client's reply reader yet
    since = time.monotonic()
    result = m.start_episode(instruction, 60, graph.alive)
    graph.executing(since)
    m.stop()
    assert m.result(result, 30, graph.alive).message == "stopped by request while executing"
    assert_safe_targets(m)  # including the step from the old process's last target to the new one's first


def test_simulator_killed_policy_holds_then_restart_ends_the_episode_on_the_clock_jump(graph):
    m = graph.monitor
    instruction = m.reset(SEED + 7)
    since = time.monotonic()
    result = m.start_episode(instruction, 90, graph.alive)
    graph.executing(since)
    graph.kill("sim_node")
    killed = time.monotonic()
    alive = lambda: graph.alive("sim_node")  # noqa: E731
    # With the simulator gone /clock stops too and ROS time stands still: the policy notices the stopped clock.
    stale_at, stale = wait_until(lambda: m.status_since(killed, "holding_stale_input"), "holding_stale_input", 10,
                                 alive)
    assert stale["detail"].startswith("ROS time has not advanced for "), stale
    time.sleep(1.0)
    alive()
    # Once the stopped clock is noticed, whatever is sent is the held target. (Not from the kill on: under load the
    # dead simulator's last /clock messages can reach the policy node after it and move the plan on; a "target moved
    # while holding" was seen once so. Fewer than 100 Hz: Fast DDS's reliable writer slows down while the dead
    # simulator's reader is still matched.)
    assert_holds_after(m, stale_at, time.monotonic(), min_count=1)
    warnings = [d for d in m.diagnostics_since(killed, "policy_node") if d[2] == 1]
    assert warnings and "ROS time has not advanced" in warnings[0][3], warnings
    restarted = time.monotonic()
    graph.runner.restart("sim_node")  # a new simulated robot at its home pose, sim time from 0 again
    outcome = m.result(result, 120, graph.alive)
    assert not outcome.success and outcome.message.startswith("the clock jumped back by ") \
        and outcome.message.endswith("while executing"), outcome.message
    stopped_at, _ = wait_until(lambda: m.status_since(restarted, "stopped"), "holding after the episode ended", 30,
                               graph.alive)
    assert "the clock jumped back by" in graph.log("policy_node")
    # The stream is back at its rate, holding the target for the new robot.
    wait_until(lambda: len(m.targets_since(max(stopped_at + 0.2, time.monotonic() - 0.5))) >= 30,
               "the target stream at its rate", 30, graph.alive)
    assert_holds_after(m, stopped_at + 0.2, time.monotonic())
    graph.alive()
    assert_safe_targets(m)
