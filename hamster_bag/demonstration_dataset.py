"""Recorded demonstrations (rosbag2) -> keyframe training samples, the one conversion from bags to training
data. Observations go through hamster_ros.observation.observation_from_messages, the function policy_node
uses on live messages, so a sample is what the policy would have been given at that moment.

Per episode: the end-effector trajectory and gripper commands give keyframes (hamster_core.keyframes: gripper
changes and stops, as PerAct / RVT / HAMSTER extract them); one sample at the start and one at every keyframe
but the last, each observed on the last camera frame before the arm leaves that pose (so the fingers have
settled, as they have when policy_node observes after the executor reports DONE), with the *next* keyframe
as its target and "done" on the last. The path is the bag's /hamster/path (the demonstration's own
proprioceptive projection when hamster-record-demonstrations wrote it), the masks the /hamster/masks of that frame.
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
from hamster_bag.bag_episode import BagError, EpisodeBag, load_episode, stamp_seconds
from hamster_ros.conversions import pose_from_msg
from hamster_ros.observation import gripper_width_from_joints, observation_from_messages

LEAVE_DISTANCE = 0.005     # m from a keyframe's position that counts as having left it
GRIPPER_JOINTS = ("fr3_finger_joint1", "fr3_finger_joint2")
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


def load_demonstration_samples(bag_path: Path | str, settings: KeyframeSettings = KeyframeSettings(),
                      require_success: bool = True, frames: str = "keyframes") -> list[DemonstrationSample]:
    """The samples of one recorded episode. A bag whose metadata says the episode failed raises BagError
    when `require_success` (failed demonstrations teach failure).

    `frames`: keyframes = one sample per keyframe, observed where the previous one was reached (RVT/PerAct);
    moving = also every frame recorded on the way there (at least MOVING_MIN_REMAINING from it), with the same
    target. Keyframe observations alone let a policy learn "the grasp is straight below where I stand" (the
    expert always comes down vertically), which fails when it stands 2 cm off in closed loop; the frames in
    between are meant to break that (with 60 demonstrations they did not help: results_learned_policies_ablation)."""
    if frames not in SAMPLE_FRAMES:
        raise ValueError(f"frames must be one of {', '.join(SAMPLE_FRAMES)}, got {frames!r}")
    with EpisodeBag(bag_path) as bag:
        episode = load_episode(bag)
        if require_success and episode.metadata.get("success") is False:
            raise BagError(f"{bag.path}: the demonstration failed ({episode.metadata.get('message', '')})")
        bag.require([t.POINTS, t.EE_POSE, t.JOINT_STATES], "training samples")
        trajectory = episode.trajectory
        first_pose = bag.first(t.EE_POSE, episode.start_ns)[1]
        t0 = stamp_seconds(first_pose.header)
        times = trajectory.times + t0                       # header stamps (simulated time)
        keyframes = drop_repeated(extract_keyframes(trajectory.times, trajectory.positions,
                                                    trajectory.orientations, trajectory.closed, settings))
        if episode.metadata.get("expert_keyframes"):
            keyframes = planned_targets(keyframes, episode.metadata["expert_keyframes"], str(bag.path))
        clouds = _by_stamp(bag, t.POINTS)
        infos = _by_stamp(bag, t.COLOR_INFO)
        masks = _by_stamp(bag, t.MASKS)
        camera_pose = bag.last_before(t.CAMERA_POSE, episode.frame_ns)[1] if bag.has(t.CAMERA_POSE) else None
        path_msg = bag.first(t.PATH, episode.start_ns)
        path_msg = path_msg[1] if path_msg is not None else None
        poses = [msg for _, msg in bag.messages(t.EE_POSE)]
        pose_stamps = np.array([stamp_seconds(m.header) for m in poses])
        joints = [msg for _, msg in bag.messages(t.JOINT_STATES)]
        joint_stamps = np.array([stamp_seconds(m.header) for m in joints])
        frame_stamps = np.array(sorted(clouds))

        def tcp_at(stamp: float) -> Pose:
            return pose_from_msg(_last_at_or_before(pose_stamps, poses, stamp))

        def observe(stamp: float, tcp_pose: Pose) -> Observation:
            key = round(stamp, 6)
            width = gripper_width_from_joints(_last_at_or_before(joint_stamps, joints, stamp), GRIPPER_JOINTS)
            observation = observation_from_messages(
                instruction=episode.instruction, cloud=clouds[key], tcp_pose=tcp_pose,
                gripper_width=width if width is not None else 0.08, camera_info=infos.get(key),
                camera_pose=camera_pose, path=path_msg, masks=masks.get(key))
            return replace(observation, path_points=lifted)

        lifted = None
        if path_msg is not None and len(frame_stamps):      # on the frame the path was drawn on, as policies do
            path_stamp = stamp_seconds(path_msg.header)
            drawn_on = frame_stamps[frame_stamps <= path_stamp + 1e-6]
            first = observe(float(drawn_on[-1] if len(drawn_on) else frame_stamps[0]), tcp_at(path_stamp))
            try:
                lifted = lift_path(first.path, first.points, first.camera)
            except ValueError as error:
                raise BagError(f"{bag.path}: cannot lift the path: {error}") from error

        def sample(stamp: float, tcp_pose: Pose, target: Keyframe, target_index: int, done: bool) -> DemonstrationSample:
            return DemonstrationSample(observe(stamp, tcp_pose), target, bool(trajectory.closed[target_index]), done,
                              f"{bag.path}@{stamp:.3f}")

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
            samples.append(sample(stamp, tcp_at(stamp), target, target_index, done))
            if frames == "moving":
                for later in map(float, frame_stamps[(frame_stamps > stamp + 1e-6) & (frame_stamps < reached - 1e-6)]):
                    tcp = tcp_at(later)
                    if np.linalg.norm(tcp.position - target.pose.position) >= MOVING_MIN_REMAINING:
                        samples.append(sample(later, tcp, target, target_index, done))
        return samples


def demonstration_bags(paths) -> list[Path]:
    """Bag folders under the given folders (any depth) or the bags themselves, sorted."""
    bags = []
    for path in map(Path, paths):
        if (path / "metadata.yaml").is_file():
            bags.append(path)
        elif path.is_dir():
            bags.extend(sorted(p.parent for p in path.rglob("metadata.yaml")))
        else:
            raise ValueError(f"{path} is neither a bag folder nor a folder of bags")
    return sorted(dict.fromkeys(bags))


def load_demonstrations(paths, settings: KeyframeSettings = KeyframeSettings(), progress: bool = False,
               frames: str = "keyframes") -> tuple[list[DemonstrationSample], dict]:
    """Samples of every successful demonstration under `paths` (`frames` as in load_demonstration_samples); a summary
    with the skipped ones and why."""
    from tqdm import tqdm

    bags = demonstration_bags(paths)
    if not bags:
        raise ValueError(f"no rosbag2 episodes under {', '.join(map(str, paths))}")
    samples, skipped = [], {}
    for bag in tqdm(bags, desc="loading demos", unit="bag", disable=not progress):
        try:
            samples.extend(load_demonstration_samples(bag, settings, frames=frames))
        except BagError as error:
            skipped[str(bag)] = str(error)
    return samples, {"bags": len(bags), "used": len(bags) - len(skipped), "samples": len(samples),
                     "skipped": skipped}


__all__ = ["DemonstrationSample", "demonstration_bags", "load_demonstration_samples", "load_demonstrations", "json"]
