"""hamster-dataset: what training would get from recorded demonstrations, bag by bag, before training.

    hamster-dataset BAG [BAG ...] [--mapping FILE] [--instruction TEXT] [--calibration FILE]
                    [--path-noise STD] [--seed N] [--frames keyframes|moving] [--json]

BAG is a rosbag2 folder (mcap or sqlite3) or a folder of them. The conversion is hamster-train's
(hamster_bag.demonstration_dataset): a real robot bag needs its topic mapping
(config/bag_topics_realsense_franka.yaml) and an instruction unless the bag carries one. Prints a table per
bag (each sample's target, whether the gripper is closed there, the cloud's frame and size, the path's points)
and why a bag gave no sample; with --json:

    {"episodes": [{"bag", "instruction", "samples": [{"stamp_ns", "target_xyz", "target_closed", "done",
      "cloud_frame", "cloud_points", "path_points"}]}], "skipped": [{"bag", "reason"}]}

Exit 0 when some bag gave samples, 1 when none did, 2 on bad usage (unreadable mapping or calibration, no bags).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def sample_json(sample) -> dict:
    observation = sample.observation
    return {"stamp_ns": sample.stamp_ns,
            "target_xyz": [round(float(v), 4) for v in sample.target.pose.position],
            "target_closed": bool(sample.closed), "done": bool(sample.done), "cloud_frame": sample.cloud_frame,
            "cloud_points": int(len(observation.points)),
            "path_points": int(len(observation.path.points)) if observation.path is not None else 0}


def episodes_json(loaded: dict) -> dict:
    episodes = [{"bag": bag, "instruction": samples[0].observation.instruction,
                 "samples": [sample_json(sample) for sample in samples]} for bag, samples in loaded["samples"].items()]
    return {"episodes": episodes, "skipped": [{"bag": bag, "reason": why} for bag, why in loaded["skipped"].items()]}


def table(report: dict) -> str:
    lines = []
    for episode in report["episodes"]:
        samples = episode["samples"]
        start = samples[0]["stamp_ns"] if samples else 0
        lines += [f"{episode['bag']}: {len(samples)} samples, instruction: {episode['instruction']!r}",
                  f"  {'t (s)':>7}  {'target x, y, z (m)':<24} {'gripper':<8} {'done':<5} {'cloud frame':<12} "
                  f"{'points':>7} {'path pts':>8}"]
        for s in samples:
            target = ", ".join(f"{v:.3f}" for v in s["target_xyz"])
            lines.append(f"  {(s['stamp_ns'] - start) * 1e-9:7.2f}  {target:<24} "
                         f"{'closed' if s['target_closed'] else 'open':<8} {'yes' if s['done'] else '-':<5} "
                         f"{s['cloud_frame']:<12} {s['cloud_points']:>7} {s['path_points']:>8}")
    for skipped in report["skipped"]:
        reason = skipped["reason"].removeprefix(f"{skipped['bag']}: ")
        lines.append(f"skipped {skipped['bag']}: {reason}")
    return "\n".join(lines)


def options_from_args(args, parser: argparse.ArgumentParser):
    """DatasetOptions from --mapping/--instruction/--calibration/--path-noise/--seed; bad values are usage errors."""
    from hamster_bag.bag_episode import BagError, TopicMapping
    from hamster_bag.demonstration_dataset import DatasetOptions
    from hamster_core.calibration import load_calibration

    try:
        return DatasetOptions(mapping=TopicMapping.load(args.mapping), instruction=args.instruction,
                              calibration=load_calibration(args.calibration) if args.calibration else None,
                              path_noise=args.path_noise, seed=args.seed or 0)
    except (BagError, ValueError) as error:
        parser.error(str(error))


def add_dataset_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags hamster-dataset and hamster-train share."""
    parser.add_argument("--mapping", type=Path, help="topic mapping YAML (e.g. config/bag_topics_realsense_franka.yaml)")
    parser.add_argument("--instruction", help="the task, when the bags do not carry it")
    parser.add_argument("--calibration", type=Path, help="camera calibration YAML: overrides the bags' /tf_static")
    parser.add_argument("--path-noise", type=float, default=0.0,
                        help="std of N(0, s) noise on projected paths (normalized; HAMSTER trains with 0.01)")
    parser.add_argument("--seed", type=int, help="seed of the path noise (default 0)")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bags", nargs="+", type=Path, help="rosbag2 folders or folders of them")
    add_dataset_arguments(parser)
    parser.add_argument("--frames", default="keyframes", help="keyframes or moving (see demonstration_dataset)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    args = parser.parse_args(argv)
    options = options_from_args(args, parser)

    from hamster_bag.demonstration_dataset import load_episodes
    try:
        loaded = load_episodes(args.bags, frames=args.frames, options=options)
    except ValueError as error:
        parser.error(str(error))
    report = episodes_json(loaded)
    print(json.dumps(report) if args.json else table(report), flush=True)
    return 0 if report["episodes"] else 1


if __name__ == "__main__":
    sys.exit(main())
