"""Demonstrations: hamster-record-demonstrations writes a readable rosbag2 on the live topics, the bag -> samples
conversion finds the expert's keyframes, and an observation from the bag equals the one policy_node builds from
the same (live, rclpy) messages. One recorded expert episode is shared by the module (~5-10 s); every test that
records or reads an episode is marked slow."""
import dataclasses
import json
from types import SimpleNamespace

import numpy as np
import pytest

from hamster_core.path2d import GripperState
from hamster_core.policies.conditioning import SceneConfig, prepare_inputs
from hamster_ros import interfaces as t
from hamster_bag.bag_episode import BagError, EpisodeBag
from hamster_bag.demonstration_dataset import MOVING_MIN_REMAINING, load_demonstration_samples, load_demonstrations
from hamster_bag.demonstration_recording import PATH_MODEL_ID, BagEpisodeWriter
from hamster_ros.observation import gripper_width_from_joints, observation_from_messages
from hamster_apps.record_demonstrations import record
from hamster_sim.rollout import ExpertPolicy, RolloutSettings, run_episode
from hamster_sim.variations import scene_for
from hamster_sim.world import FrankaWorld

SEED = 3


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """One base-set expert episode, recorded in-process, with the rclpy messages that went into the bag."""
    out = tmp_path_factory.mktemp("demos")
    scene = scene_for("base", SEED)
    writer = BagEpisodeWriter(out / "episode", camera_rate_hz=2.0, keep_messages=True,
                              metadata={"seed": SEED, "variation_set": "base"})
    with FrankaWorld(scene) as world:
        result = run_episode(world, ExpertPolicy(scene), settings=RolloutSettings(pause_sec=0.4), observer=writer)
    bag = writer.close(success=result.success)
    return bag, writer.messages, result


@pytest.mark.slow  # the module's recorded expert episode (~10 s)
def test_the_expert_succeeds_and_the_bag_has_the_live_topics(demo):
    bag, _, result = demo
    assert result.success, result.message
    with EpisodeBag(bag) as episode_bag:
        for topic in (t.COLOR_IMAGE, t.DEPTH_IMAGE, t.COLOR_INFO, t.POINTS, t.CAMERA_POSE, t.JOINT_STATES, t.EE_POSE,
                      t.CARTESIAN_TARGET, t.GRIPPER_COMMAND, t.INSTRUCTION, t.PATH, t.MASKS, t.SIM_SCENE,
                      t.EXECUTOR_STATUS, "/clock", "/hamster/episode_metadata"):
            assert episode_bag.has(topic), topic
        commands = [msg.command for _, msg in episode_bag.messages(t.GRIPPER_COMMAND)]
        assert commands == [1, 0]                                   # GRASP, then MOVE open
        path = episode_bag.first(t.PATH)[1]
        assert path.model_id == PATH_MODEL_ID and path.instruction == result.instruction
        metadata = json.loads(list(episode_bag.messages("/hamster/episode_metadata"))[-1][1].data)
        assert metadata["success"] is True and metadata["seed"] == SEED
        # Every message reads back with its recorded type (the writer trims rclpy's trailing CDR padding).
        assert sum(1 for _ in episode_bag.messages(t.JOINT_STATES)) > 100


@pytest.mark.slow  # the module's recorded expert episode (~10 s)
def test_samples_follow_the_expert_keyframes(demo):
    bag, _, result = demo
    samples = load_demonstration_samples(bag)
    scene = scene_for("base", SEED)
    # Start, above the object, grasp, lift, above the container, release: six targets, the last one "done".
    assert len(samples) == 6 == result.keyframes
    assert [s.done for s in samples] == [False] * 5 + [True]
    assert [s.target.gripper for s in samples] == [None, GripperState.CLOSED, None, None, GripperState.OPEN, None]
    assert [s.closed for s in samples] == [False, True, True, True, False, False]
    assert [s.step for s in samples] == list(range(6))      # what a policy's own count is at each of them
    grasp, release = samples[1].target.pose.position, samples[4].target.pose.position
    assert np.linalg.norm(grasp[:2] - np.array(scene.target_object.position[:2])) < 0.01
    assert np.linalg.norm(release[:2] - np.array(scene.target_container.position)) < 0.01
    # Each sample is observed where the previous keyframe left the arm, with the path and both masks.
    for before, sample in zip(samples, samples[1:]):
        assert np.linalg.norm(sample.observation.tcp_pose.position - before.target.pose.position) < 0.01
    for sample in samples:
        observation = sample.observation
        assert observation.path is not None and set(observation.masks) == {"target_object", "placement_area"}
        assert observation.camera is not None and len(observation.points) > 1000
    assert samples[2].observation.gripper_width < 0.07                  # holding the object after the grasp
    # One lifted path per episode, from the frame the path was drawn on (arm up at its start, out of the way).
    lifted = samples[0].observation.path_points
    assert lifted is not None and all(s.observation.path_points is lifted for s in samples)
    assert np.all(lifted.points[lifted.channels[:, 0] > 0.5, 2] < 0.1)   # the path's end on table and container


@pytest.mark.slow  # the module's recorded expert episode (~10 s)
def test_moving_frames_add_observations_on_the_way_with_the_same_targets(demo):
    # Regression: 3dda trained on keyframe observations only learned "grasp straight below me" and in closed
    # loop went down wherever it stood; the frames in between show the arm elsewhere with the same target.
    bag, _, _ = demo
    keyframes, moving = load_demonstration_samples(bag), load_demonstration_samples(bag, frames="moving")
    assert len(moving) > 2 * len(keyframes)
    assert all(any(m.source == k.source for m in moving) for k in keyframes)
    targets = {tuple(k.target.pose.position) for k in keyframes}
    assert {tuple(m.target.pose.position) for m in moving} == targets
    step_of_target = {tuple(k.target.pose.position): k.step for k in keyframes}
    assert all(m.step == step_of_target[tuple(m.target.pose.position)] for m in moving)
    approach = [m for m in moving if np.array_equal(m.target.pose.position, keyframes[0].target.pose.position)]
    distances = [np.linalg.norm(m.observation.tcp_pose.position - m.target.pose.position) for m in approach]
    assert max(distances) > 0.1 and len(set(np.round(distances, 3))) > 2      # the arm at several places
    sources = {k.source for k in keyframes}
    for m in moving:        # all but arrived is no sample: it taught rvt2 to predict its own pose and loop
        if m.source not in sources:
            assert np.linalg.norm(m.observation.tcp_pose.position - m.target.pose.position) >= MOVING_MIN_REMAINING
    assert [m.done for m in moving][-1] and sum(m.done for m in moving) < len(moving) / 2
    with pytest.raises(ValueError, match="frames must be one of keyframes, moving"):
        load_demonstration_samples(bag, frames="all")


def _live_messages(messages, stamp_ns):
    """The newest message per topic at stamp_ns, as policy_node's latest-message cache would hold them."""
    latest = {}
    for ns, topic, msg in messages:
        if ns <= stamp_ns:
            latest[topic] = msg
    return latest


def _live_observation(messages, stamp_ns):
    """What policy_node builds from its latest messages at stamp_ns."""
    live = _live_messages(messages, stamp_ns)
    return observation_from_messages(
        instruction=live[t.INSTRUCTION].data, cloud=live[t.POINTS], tcp_pose=live[t.EE_POSE],
        gripper_width=gripper_width_from_joints(live[t.JOINT_STATES], ("fr3_finger_joint1", "fr3_finger_joint2")),
        camera_info=live[t.COLOR_INFO], camera_pose=live[t.CAMERA_POSE], path=live[t.PATH], masks=live[t.MASKS])


@pytest.mark.slow  # the module's recorded expert episode (~10 s)
@pytest.mark.parametrize("mode", ["none", "path_overlay", "path_channels", "masks", "path_points"])
def test_live_and_bag_observations_give_the_same_model_inputs(demo, mode):
    from hamster_core.lifting import lift_path

    bag, messages, _ = demo
    sample = load_demonstration_samples(bag)[3]                   # mid-episode: holding the object
    stamp_ns = round(sample.observation.stamp * 1e9)
    observation = _live_observation(messages, stamp_ns)
    assert observation.stamp == pytest.approx(sample.observation.stamp)
    # The live policy lifts the path on its first observation with the path: the frame the path was drawn on.
    path_ns = min(ns for ns, topic, _ in messages if topic == t.PATH)
    first = _live_observation(messages, path_ns)
    observation = dataclasses.replace(observation, path_points=lift_path(first.path, first.points, first.camera))
    config = SceneConfig(conditioning=mode, num_points=512)
    a, b = prepare_inputs(observation, config), prepare_inputs(sample.observation, config)
    for name in ("points", "features", "proprio", "tokens", "pixels"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert observation.instruction == sample.observation.instruction


@pytest.mark.slow  # records an expert episode
def test_record_command_writes_bags_and_an_index(tmp_path):
    summary = record(tmp_path, episodes=1, seed=7, progress=False)
    assert summary["episodes"] == 1 and summary["successes"] == 1
    index = json.loads((tmp_path / "index.json").read_text())
    assert index["runs"][0]["records"][0]["bag"] == str(tmp_path / "episode-00007")
    samples, info = load_demonstrations([tmp_path])
    assert info == {"bags": 1, "used": 1, "samples": len(samples), "skipped": {}} and len(samples) == 6
    with pytest.raises(ValueError, match="already exists"):
        record(tmp_path, episodes=1, seed=7, progress=False)


@pytest.mark.slow  # records an expert episode
def test_perturbed_demonstrations_teach_the_planned_keyframes_from_off_plan_poses(tmp_path):
    # Regression: trained where the arm always stood exactly on the demonstrated pre-grasp, 3dda learned "the
    # grasp is straight below me" and, 2 cm off in closed loop, grasped 5-8 cm too high.
    summary = record(tmp_path, episodes=1, seed=7, progress=False, perturbation=0.02)
    assert summary["successes"] == 1
    bag = tmp_path / "episode-00007"
    with EpisodeBag(bag) as episode_bag:
        plan = json.loads(list(episode_bag.messages("/hamster/episode_metadata"))[-1][1].data)["expert_keyframes"]
    samples = load_demonstration_samples(bag)
    assert len(samples) == len(plan) == 6
    offsets = []
    for sample, planned in zip(samples, plan):
        np.testing.assert_allclose(sample.target.pose.position, planned["position"])
        np.testing.assert_allclose(sample.target.pose.orientation, planned["orientation"], atol=1e-6)
        offsets.append(np.linalg.norm(np.subtract(planned["executed_position"], planned["position"])))
    assert offsets[1] == offsets[4] == 0 and min(offsets[0], offsets[2], offsets[3]) > 0   # grasp, release exact
    # The sample after the perturbed pre-grasp is observed off the plan, with the planned grasp as its target.
    observed = samples[1].observation.tcp_pose.position
    assert np.linalg.norm(observed - np.asarray(plan[0]["position"])) > 0.5 * offsets[0]
    assert np.linalg.norm(observed - np.asarray(plan[0]["executed_position"])) < 0.01


def test_extra_stops_by_a_planned_keyframe_become_one_target():
    # Regression: the arm pausing 1 cm above a grasp, or settling after a release, is a keyframe of its own;
    # matched one to one, it took the grasp's plan entry and the grasp itself matched nothing.
    from hamster_core.executor import Keyframe
    from hamster_core.geometry import TOP_DOWN, Pose
    from hamster_bag.demonstration_dataset import planned_targets

    def entry(executed, planned, gripper=None):
        return {"executed_position": executed, "position": planned, "orientation": list(TOP_DOWN), "gripper": gripper}
    plan = [entry([0.52, 0.0, 0.15], [0.50, 0.0, 0.14]), entry([0.50, 0.0, 0.04], [0.50, 0.0, 0.04], 1),
            entry([0.50, 0.0, 0.19], [0.50, 0.0, 0.19]), entry([0.40, 0.2, 0.09], [0.40, 0.2, 0.09], 0),
            entry([0.41, 0.2, 0.20], [0.40, 0.2, 0.19])]

    def at(x, y, z, gripper=None):
        return Keyframe(Pose([x, y, z], TOP_DOWN), gripper)
    extracted = [(10, at(0.52, 0.0, 0.15)), (20, at(0.50, 0.0, 0.05)), (25, at(0.50, 0.0, 0.045, GripperState.CLOSED)),
                 (28, at(0.50, 0.0, 0.04)), (40, at(0.50, 0.0, 0.19)), (50, at(0.40, 0.2, 0.095, GripperState.OPEN)),
                 (55, at(0.40, 0.2, 0.088)), (70, at(0.41, 0.2, 0.20))]
    relabelled = planned_targets(extracted, plan, "bag")
    assert [index for index, _ in relabelled] == [10, 28, 40, 55, 70]     # the last stop of each group
    assert [k.gripper for _, k in relabelled] == [None, GripperState.CLOSED, None, GripperState.OPEN, None]
    for (_, keyframe), planned in zip(relabelled, plan):
        np.testing.assert_allclose(keyframe.pose.position, planned["position"])
    with pytest.raises(BagError, match=r"bag: the keyframe at \[0.7, 0.0, 0.3\] is no executed expert keyframe"):
        planned_targets(extracted[:2] + [(30, at(0.7, 0.0, 0.3))], plan, "bag")
    with pytest.raises(BagError, match="no executed expert keyframe"):     # a grasp where the plan has none
        planned_targets([(10, at(0.52, 0.0, 0.15, GripperState.CLOSED))], plan, "bag")


@pytest.mark.slow  # records an expert episode
def test_an_interrupted_recording_still_lists_the_bags_it_wrote(tmp_path, monkeypatch):
    """Regression: an exception in the second episode left the first bag on disk but no index.json."""
    import hamster_sim.rollout as rollout
    real, calls = rollout.run_episode, []

    def second_episode_interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt("Ctrl-C")
        return real(*args, **kwargs)
    monkeypatch.setattr(rollout, "run_episode", second_episode_interrupted)
    with pytest.raises(KeyboardInterrupt):
        record(tmp_path, episodes=3, seed=7, progress=False)
    run = json.loads((tmp_path / "index.json").read_text())["runs"][0]
    assert run["recorded"] == 1 and [r["seed"] for r in run["records"]] == [7]
    assert run["stopped"] == "episode 8: KeyboardInterrupt: Ctrl-C"
    assert not (tmp_path / "episode-00008").exists()


@pytest.mark.slow  # the module's recorded expert episode (~10 s)
def test_a_failed_demonstration_is_not_a_training_sample(demo, tmp_path):
    scene = scene_for("base", SEED)
    writer = BagEpisodeWriter(tmp_path / "failed", camera_rate_hz=0.0)
    with FrankaWorld(scene) as world:
        result = run_episode(world, ExpertPolicy(scene), settings=RolloutSettings(timeout_sec=2.0), observer=writer)
    assert not result.success and "timed out" in result.message
    writer.close(success=result.success, message=result.message)
    with pytest.raises(BagError, match="failed"):
        load_demonstration_samples(tmp_path / "failed")
    samples, info = load_demonstrations([tmp_path, demo[0]])
    assert info["used"] == 1 and list(info["skipped"]) == [str(tmp_path / "failed")]


@pytest.mark.slow  # the module's recorded expert episode (~10 s)
def test_train_command_trains_on_the_bags_and_resumes(demo, tmp_path, capsys):
    from hamster_core.policies.rvt2 import RVT2Policy
    from hamster_apps.train import main

    bag = demo[0]
    (tmp_path / "train.yaml").write_text(
        "policy: rvt2\npolicy_config: {num_points: 128, image_size: 16, dim: 16, depth: 1, heads: 2, "
        "rotation_bins: 12}\nsteps: 2\nbatch_size: 2\ncheckpoint_every: 1\nlog_every: 1\n")
    out = tmp_path / "run"
    assert main([str(tmp_path / "train.yaml"), "--data", str(bag), "--out", str(out), "--conditioning", "masks",
                 "--no-progress"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["samples"] == 6 and summary["steps"] == 2 and summary["conditioning"] == "masks"
    assert RVT2Policy.from_pretrained(out / "final").config.conditioning == "masks"
    with pytest.raises(SystemExit):  # resuming without the override would be another run: refused, named
        main([str(tmp_path / "train.yaml"), "--data", str(bag), "--out", str(out), "--steps", "3", "--resume",
              "--no-progress"])
    assert "policy_config" in capsys.readouterr().err
    assert main([str(tmp_path / "train.yaml"), "--data", str(bag), "--out", str(out), "--steps", "3", "--resume",
                 "--conditioning", "masks", "--no-progress"]) == 0
    resumed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert resumed["steps"] == 3 and resumed["resumed_from"].endswith("checkpoint-000002")


class _NodeHolding:
    """What policy_node's episode runtime reads of its node: the latest messages of each input and the measured
    state, as the node's subscriptions leave them at `stamp_ns`."""

    def __init__(self, messages, stamp_ns, required_inputs):
        import threading

        from hamster_core.episode import InputRules, RobotEvents
        from hamster_ros.conversions import pose_from_msg, stamp_to_seconds
        live = _live_messages(messages, stamp_ns)
        self._latest = {"cloud": live[t.POINTS], "camera_info": live[t.COLOR_INFO], "camera_pose": live[t.CAMERA_POSE],
                        "path": live[t.PATH], "masks": live[t.MASKS]}
        self.ee_pose, self.ee_stamp = pose_from_msg(live[t.EE_POSE]), stamp_to_seconds(live[t.EE_POSE].header.stamp)
        self.gripper_width = gripper_width_from_joints(live[t.JOINT_STATES], ("fr3_finger_joint1", "fr3_finger_joint2"))
        self.latest = SimpleNamespace(get=lambda *keys: self._latest[keys[0]] if len(keys) == 1 else
                                      tuple(self._latest[key] for key in keys))
        self.state_lock = threading.Lock()
        self.input_rules, self.robot_events = InputRules(), RobotEvents()
        self.policy = SimpleNamespace(required_inputs=required_inputs)
        self._now = stamp_ns * 1e-9

    def now(self):
        return self._now

    def get_logger(self):
        def error(message, **_):
            raise AssertionError(f"policy_node refused a recorded message: {message}")
        return SimpleNamespace(error=error)


@pytest.mark.slow  # the module's recorded expert episode (~10 s)
def test_policy_node_observes_what_the_demonstration_loader_reads_from_the_bag(demo):
    # policy_node's own episode runtime (the node's code path, without a graph) on the live messages of a
    # mid-episode frame: the same observation as the sample read back from the bag, path and masks included.
    from policy_node.runtime import NodeEpisodeRuntime

    bag, messages, _ = demo
    sample = load_demonstration_samples(bag)[3]
    runtime = NodeEpisodeRuntime(_NodeHolding(messages, round(sample.observation.stamp * 1e9),
                                              frozenset({"points", "camera", "path", "masks"})))
    observation, missing = runtime._observation(sample.observation.instruction, episode_start=0.0)
    assert missing is None and observation is not None
    assert observation.stamp == pytest.approx(sample.observation.stamp)
    assert observation.path == sample.observation.path
    assert observation.masks.keys() == sample.observation.masks.keys()
    config = SceneConfig(conditioning="masks", num_points=512)
    a = prepare_inputs(observation, config)
    b = prepare_inputs(dataclasses.replace(sample.observation, path_points=None), config)
    for name in ("points", "features", "proprio", "tokens"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
