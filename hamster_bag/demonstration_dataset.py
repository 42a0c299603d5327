"""Recorded demonstrations (rosbag2) -> keyframe training samples, the one conversion from bags to training
data. Observations go through hamster_ros.observation.observation_from_messages, the function policy_node
uses on live messages, so a sample is what the policy would have been given at that moment.

Per episode: the end-effector trajectory and gripper commands give keyframes (hamster_core.keyframes: gripper
changes and stops, as PerAct / RVT / HAMSTER extract them); one sample at the start and one at every keyframe
but the last, each observed on the last camera frame before the arm leaves that pose (so the fingers have
settled, as they have when policy_node observes after the executor reports DONE), with the *next* keyframe
as its target and "done" on the last. The path is the bag's /hamster/path (the demonstration's own
proprioceptive projection when hamster-record-demonstrations wrote it), the masks the /hamster/masks of that frame.

Real robot bags (a topic mapping, hamster_bag.bag_episode.TopicMapping): the instruction comes from the caller
(CLI), else the bag (/hamster/instruction, the episode metadata, metadata.yaml custom_data `instruction`); a bag
without /hamster/path gets HAMSTER's label, the TCP trajectory projected into the first frame's camera and
RDP-simplified (Appendix B.2), optionally with N(0, path_noise) added to its points as HAMSTER does for training;
a bag without a cloud gets one from the aligned depth image and the colour intrinsics; every cloud is put in the
robot base frame (the camera pose and /tf_static as in load_episode).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from hamster_core.executor import Keyframe
from hamster_core.geometry import Pose
from hamster_core.lifting import lift_path
from hamster_core.keyframes import SAMPLE_FRAMES, KeyframeSettings, extract_keyframes
from hamster_core.policies.base import Observation
from hamster_ros import interfaces as t
from hamster_bag.bag_episode import (CLOUD_STRIDE, BagError, EpisodeBag, TopicMapping, load_episode, oracle_path,
                                     stamp_seconds, to_base_frame)
from hamster_core.path2d import Path2D
from hamster_ros.conversions import pose_from_msg, stamp_to_ns
from hamster_ros.observation import gripper_width_from_joints, observation_from_messages

LEAVE_DISTANCE = 0.005     # m from a keyframe's position that counts as having left it
# m: frames on the way closer than this to their target are left out: there the arm has all but arrived, and
# "the next keyframe is where I stand" taught rvt2 to predict its own pose again and loop.
MOVING_MIN_REMAINING = 0.03
PLAN_MATCH_DISTANCE = 0.015   # m: an extracted keyframe belongs to the executed expert keyframe this close to it


@dataclass
class DemonstrationSample:
    observation: Observation
    target: Keyframe          # the next keyframe (measured pose there; gripper set where it changes)
    closed: bool              # gripper state at the target
    done: bool                # the target is the episode's last keyframe
    source: str               # bag and time, for reports
    stamp_ns: int = 0         # the observed frame's header stamp
    cloud_frame: str = ""     # the frame the observation's cloud is in (the robot base frame)
    step: int = 0             # keyframes the episode had reached before this observation (the target's index)


class _FramesByStamp:
    """A heavy topic (clouds, images) indexed by header stamp (s, rounded as _by_stamp rounds), read from the bag
    only when a sample needs the frame: a real bag's 30 Hz images would not fit in memory at once."""

    def __init__(self, bag: EpisodeBag, topic: str):
        self.bag, self.topic, self.received = bag, topic, {}
        for connection in bag.connections.get(topic, []):
            received, stamps = bag.header_stamps(connection)
            self.received.update({round(int(ns) // 10**9 + int(ns) % 10**9 * 1e-9, 6): int(at)
                                  for at, ns in zip(received, stamps)})

    def __len__(self):
        return len(self.received)

    def __iter__(self):
        return iter(self.received)

    def get(self, key: float):
        at = self.received.get(key)
        return None if at is None else self.bag.first(self.topic, at)[1]


def _by_stamp(bag: EpisodeBag, topic: str) -> dict[float, object]:
    return {round(stamp_seconds(msg.header), 6): msg for _, msg in bag.messages(topic)} if bag.has(topic) else {}


def _last_at_or_before(stamps: np.ndarray, values: list, time: float):
    index = int(np.searchsorted(stamps, time + 1e-9, side="right")) - 1
    return values[max(index, 0)]


def drop_repeated(keyframes: list) -> list:
    """Keyframes that neither move (LEAVE_DISTANCE) nor change the gripper after the previous one are dropped:
    the final settle after the retreat is a stop too, but no new target."""
    kept = keyframes[:1]
    for index, keyframe in keyframes[1:]:
        still = np.linalg.norm(keyframe.pose.position - kept[-1][1].pose.position) < LEAVE_DISTANCE
        if not (still and keyframe.gripper is None):
            kept.append((index, keyframe))
    return kept


def planned_targets(keyframes: list, plan: list[dict], source: str) -> list:
    """The extracted keyframes with the expert's planned poses in place of the measured ones: a perturbed
    demonstration (ExpertPolicy's `perturbation`) executes noisy keyframes, and the policy must learn the
    planned ones. `plan` is the bag's `expert_keyframes` metadata. Each extracted keyframe goes to the first
    executed keyframe, at or after the previous one's, within PLAN_MATCH_DISTANCE and with the same gripper
    change; extra stops by one planned keyframe (the arm pausing just above a grasp, settling after a release)
    become one target, at the last of them, with the gripper change among them."""
    groups: list[list] = []         # [plan index, last keyframe index, gripper change]
    j = 0
    for index, keyframe in keyframes:
        while j < len(plan) and not (
                np.linalg.norm(np.asarray(plan[j]["executed_position"], float) - keyframe.pose.position)
                <= PLAN_MATCH_DISTANCE and keyframe.gripper in (None, plan[j]["gripper"])):
            j += 1
        if j == len(plan):
            raise BagError(f"{source}: the keyframe at {np.round(keyframe.pose.position, 3).tolist()} is no "
                           f"executed expert keyframe (expert_keyframes metadata)")
        if groups and groups[-1][0] == j:
            groups[-1][1] = index
            groups[-1][2] = groups[-1][2] if groups[-1][2] is not None else keyframe.gripper
        else:
            groups.append([j, index, keyframe.gripper])
    return [(index, Keyframe(Pose(plan[j]["position"], plan[j]["orientation"]), gripper))
            for j, index, gripper in groups]


@dataclass(frozen=True)
class DatasetOptions:
    """How bags become samples (hamster-dataset and hamster-train flags)."""

    mapping: TopicMapping = TopicMapping()
    instruction: str | None = None     # overrides the bag's
    calibration: object = None         # hamster_core.calibration.CameraCalibration given explicitly
    path_noise: float = 0.0            # std of N(0, path_noise) on projected path points (HAMSTER: 0.01)
    seed: int = 0

    def __post_init__(self):
        if not (np.isfinite(self.path_noise) and 0 <= self.path_noise <= 0.1):
            raise ValueError(f"path_noise must be in [0, 0.1] (normalized image units), got {self.path_noise!r}")
        if self.instruction is not None and not self.instruction.strip():
            raise ValueError("instruction must not be empty")


def projected_demonstration_path(episode, noise: float, rng: np.random.Generator) -> Path2D:
    """HAMSTER's label of a demonstration: the TCP trajectory projected into the first frame, simplified, with
    optional N(0, noise) on every point (kept in the image)."""
    path = oracle_path(episode)
    if noise > 0:
        path = Path2D(np.clip(path.points + rng.normal(0.0, noise, path.points.shape), 0.0, 1.0), path.gripper)
    return path


def load_demonstration_samples(bag_path: Path | str, settings: KeyframeSettings = KeyframeSettings(),
                               require_success: bool = True, frames: str = "keyframes",
                               options: DatasetOptions = DatasetOptions()) -> list[DemonstrationSample]:
    """The samples of one recorded episode. A bag whose metadata says the episode failed raises BagError
    when `require_success` (failed demonstrations teach failure).

    `frames`: keyframes = one sample per keyframe, observed where the previous one was reached (RVT/PerAct);
    moving = also every frame recorded on the way there (at least MOVING_MIN_REMAINING from it), with the same
    target. Keyframe observations alone let a policy learn "the grasp is straight below where I stand" (the
    expert always comes down vertically), which fails when it stands 2 cm off in closed loop; the frames in
    between are meant to break that (with 60 demonstrations they did not help: results_learned_policies_ablation)."""
    from hamster_core.calibration import CloudProjector, depth_in_metres
    from hamster_ros.conversions import image_to_numpy, image_to_rgb

    if frames not in SAMPLE_FRAMES:
        raise ValueError(f"frames must be one of {', '.join(SAMPLE_FRAMES)}, got {frames!r}")
    with EpisodeBag(bag_path, options.mapping) as bag:
        episode = load_episode(bag, calibration=options.calibration)
        if require_success and episode.metadata.get("success") is False:
            raise BagError(f"{bag.path}: the demonstration failed ({episode.metadata.get('message', '')})")
        instruction = options.instruction or episode.instruction
        if not instruction:
            raise BagError(f"{bag.path}: no instruction (no {t.INSTRUCTION}, none in the episode metadata or "
                           f"metadata.yaml custom_data): give --instruction")
        bag.require([t.EE_POSE], "training samples")
        if not bag.has(t.JOINT_STATES) and not bag.has(t.GRIPPER_COMMAND):
            bag.require([t.JOINT_STATES], "training samples (the gripper state)")
        if not bag.has(t.POINTS) and not bag.has(t.DEPTH_IMAGE):
            bag.require([t.POINTS], f"training samples (or a depth image on {t.DEPTH_IMAGE} to build clouds from)")
        trajectory = episode.trajectory
        first_pose = bag.first(t.EE_POSE, episode.start_ns)[1]
        t0 = stamp_seconds(first_pose.header)
        times = trajectory.times + t0                       # header stamps (simulated time)
        keyframes = drop_repeated(extract_keyframes(trajectory.times, trajectory.positions,
                                                    trajectory.orientations, trajectory.closed, settings))
        if episode.metadata.get("expert_keyframes"):
            keyframes = planned_targets(keyframes, episode.metadata["expert_keyframes"], str(bag.path))
        use_depth = not bag.has(t.POINTS)
        clouds = _FramesByStamp(bag, t.DEPTH_IMAGE if use_depth else t.POINTS)
        colours = _FramesByStamp(bag, t.COLOR_IMAGE) if use_depth else {}
        infos = _by_stamp(bag, t.COLOR_INFO)
        masks = _by_stamp(bag, t.MASKS)
        camera_pose = bag.last_before(t.CAMERA_POSE, episode.frame_ns)[1] \
            if episode.camera_pose_source == "camera_pose_topic" else None
        path_msg = bag.first(t.PATH, episode.start_ns)
        path_msg = path_msg[1] if path_msg is not None else None
        path = None if path_msg is not None else projected_demonstration_path(
            episode, options.path_noise, np.random.default_rng(options.seed))
        poses = [msg for _, msg in bag.messages(t.EE_POSE)]
        pose_stamps = np.array([stamp_seconds(m.header) for m in poses])
        joints = [msg for _, msg in bag.messages(t.JOINT_STATES)]
        joint_stamps = np.array([stamp_seconds(m.header) for m in joints])
        frame_stamps = np.array(sorted(clouds))
        camera = episode.camera
        projector = CloudProjector(camera.width, camera.height, camera.fx, camera.fy, camera.cx, camera.cy,
                                   camera.base_from_camera, CLOUD_STRIDE) if use_depth else None

        def tcp_at(stamp: float) -> Pose:
            return pose_from_msg(_last_at_or_before(pose_stamps, poses, stamp))

        def observe(stamp: float, tcp_pose: Pose) -> Observation:
            key = round(stamp, 6)
            width = gripper_width_from_joints(_last_at_or_before(joint_stamps, joints, stamp), bag.mapping.gripper_joint_names) \
                if joints else None
            width = width if width is not None else 0.08
            if use_depth:
                depth_msg = clouds.get(key)
                colour = colours.get(key)
                depth = depth_in_metres(image_to_numpy(depth_msg), depth_msg.encoding)
                points, colors = projector.points(depth, image_to_rgb(colour) if colour is not None else None)
                observation = Observation(stamp=stamp, instruction=instruction, tcp_pose=tcp_pose,
                                          gripper_width=width, points=points, colors=colors, camera=camera)
            else:
                cloud = clouds.get(key)
                observation = observation_from_messages(
                    instruction=instruction, cloud=cloud, tcp_pose=tcp_pose, gripper_width=width,
                    camera_info=infos.get(key), camera_pose=camera_pose, path=path_msg, masks=masks.get(key))
                frame = cloud.header.frame_id or episode.base_frame
                if frame != episode.base_frame:
                    observation = replace(observation, points=to_base_frame(
                        observation.points, frame, stamp_to_ns(cloud.header.stamp), episode.base_frame, camera,
                        episode.camera_frame, episode.transforms, f"{bag.path} {bag.mapping.bag_names(t.POINTS)[0]}"))
            if observation.camera is None:
                observation = replace(observation, camera=camera)
            if path is not None:
                observation = replace(observation, path=path)
            return replace(observation, path_points=lifted)

        lifted = None
        if len(frame_stamps):                               # on the frame the path was drawn on, as policies do
            path_stamp = stamp_seconds(path_msg.header) if path_msg is not None else episode.frame_stamp_ns * 1e-9
            drawn_on = frame_stamps[frame_stamps <= path_stamp + 1e-6]
            first = observe(float(drawn_on[-1] if len(drawn_on) else frame_stamps[0]), tcp_at(path_stamp))
            try:
                lifted = lift_path(first.path, first.points, first.camera)
            except ValueError as error:
                raise BagError(f"{bag.path}: cannot lift the path: {error}") from error

        def sample(stamp: float, tcp_pose: Pose, target: Keyframe, target_index: int, done: bool,
                   step: int) -> DemonstrationSample:
            return DemonstrationSample(observe(stamp, tcp_pose), target, bool(trajectory.closed[target_index]), done,
                                       f"{bag.path}@{stamp:.3f}", int(round(stamp * 1e9)), episode.base_frame, step)

        samples = []
        origins = [0] + [index for index, _ in keyframes[:-1]]
        for k, (origin, (target_index, target)) in enumerate(zip(origins, keyframes)):
            arrived, reached = times[origin], times[target_index]
            done = k == len(keyframes) - 1
            moved = np.flatnonzero(np.linalg.norm(trajectory.positions[origin:] - trajectory.positions[origin],
                                                  axis=1) > LEAVE_DISTANCE)
            leaves = times[origin + moved[0]] if len(moved) else times[-1]
            during = frame_stamps[(frame_stamps >= arrived - 1e-6) & (frame_stamps <= leaves + 1e-6)]
            after = frame_stamps[frame_stamps >= arrived - 1e-6]
            if len(during):
                stamp = float(during[-1])
            elif len(after) and after[0] < reached:
                stamp = float(after[0])
            else:
                continue                                    # no frame of this pose was recorded
            samples.append(sample(stamp, tcp_at(stamp), target, target_index, done, k))
            if frames == "moving":
                for later in map(float, frame_stamps[(frame_stamps > stamp + 1e-6) & (frame_stamps < reached - 1e-6)]):
                    tcp = tcp_at(later)
                    if np.linalg.norm(tcp.position - target.pose.position) >= MOVING_MIN_REMAINING:
                        samples.append(sample(later, tcp, target, target_index, done, k))
        return samples


def demonstration_bags(paths) -> list[Path]:
    """Bag folders under the given folders (any depth) or the bags themselves, sorted."""
    bags = []
    for path in map(Path, paths):
        if (path / "metadata.yaml").is_file() or any(path.glob("*.mcap")) or any(path.glob("*.db3")):
            bags.append(path)       # a bag; one without metadata.yaml gets its error (and the fix) when opened
        elif path.is_dir():
            bags.extend(sorted(p.parent for p in path.rglob("metadata.yaml")))
        else:
            raise ValueError(f"{path} is neither a bag folder nor a folder of bags")
    return sorted(dict.fromkeys(bags))


def load_demonstrations(paths, settings: KeyframeSettings = KeyframeSettings(), progress: bool = False,
                        frames: str = "keyframes", options: DatasetOptions = DatasetOptions()
                        ) -> tuple[list[DemonstrationSample], dict]:
    """Samples of every successful demonstration under `paths` (`frames` and `options` as in
    load_demonstration_samples); a summary with the skipped bags and why, and the samples per bag."""
    episodes = load_episodes(paths, settings, progress, frames, options)
    samples = [sample for found in episodes["samples"].values() for sample in found]
    return samples, {"bags": episodes["bags"], "used": len(episodes["samples"]), "samples": len(samples),
                     "skipped": episodes["skipped"]}


def load_episodes(paths, settings: KeyframeSettings = KeyframeSettings(), progress: bool = False,
                  frames: str = "keyframes", options: DatasetOptions = DatasetOptions()) -> dict:
    """{"bags": n, "samples": {bag: [DemonstrationSample, ...]} for bags with samples, "skipped": {bag: why}}."""
    from tqdm import tqdm

    bags = demonstration_bags(paths)
    if not bags:
        raise ValueError(f"no rosbag2 episodes under {', '.join(map(str, paths))}")
    found, skipped = {}, {}
    for bag in tqdm(bags, desc="loading demos", unit="bag", disable=not progress):
        try:
            samples = load_demonstration_samples(bag, settings, frames=frames, options=options)
        except BagError as error:
            skipped[str(bag)] = str(error)
            continue
        if samples:
            found[str(bag)] = samples
        else:
            skipped[str(bag)] = (f"{bag}: no sample: no camera frame was recorded at any keyframe of the "
                                 f"trajectory ({t.EE_POSE} and the frames' stamps do not overlap?)")
    return {"bags": len(bags), "samples": found, "skipped": skipped}


__all__ = ["DatasetOptions", "DemonstrationSample", "demonstration_bags", "load_episodes", "load_demonstration_samples", "load_demonstrations", "json"]
