"""Open-loop keyframe error of learned policies on recorded demonstrations: for every sample (observation ->
next keyframe) of the first N episodes under a folder, the distance between the predicted and the recorded
keyframe, per keyframe index (0 above the object, 1 grasp, 2 lift, 3 above the container, 4 release, 5
retreat), rotation error and gripper / done accuracy. No simulator: it tells a model that cannot locate things
apart from one that fails in closed loop.
    OMP_NUM_THREADS=1 .venv/bin/python bench/openloop_keyframe_error.py runs/issue5/demos_60 8 \
        3dda=runs/issue5/train/3dda_aug_path_channels/final rvt2=runs/issue5/train/rvt2_c2f_aug_masks/final
"""
import collections
import sys
import time
from pathlib import Path

import numpy as np
import torch

from hamster_core.policies.base import POLICIES
from hamster_bag.demonstration_dataset import load_demonstrations


def main(data: str, episodes: int, models: list[str]) -> None:
    torch.set_num_threads(1)
    samples, _ = load_demonstrations(sorted(Path(data).glob("episode-*"))[:episodes])
    print(f"{len(samples)} samples from {episodes} episodes of {data}")
    for spec in models:
        name, checkpoint = spec.split("=", 1)
        policy = POLICIES.create(name, checkpoint=checkpoint)
        errors, rotations, gripper, done, by_index = [], [], [], [], collections.defaultdict(list)
        begun, previous, index = time.perf_counter(), None, 0
        for sample in samples:
            policy.reset()
            output = policy.select_action(sample.observation)
            keyframe = output.keyframes[0]
            error = float(np.linalg.norm(keyframe.pose.position - sample.target.pose.position))
            dot = abs(float(np.dot(keyframe.pose.orientation, sample.target.pose.orientation)))
            errors.append(error)
            rotations.append(np.degrees(2 * np.arccos(min(1.0, dot))))
            gripper.append((output.info["gripper_closed_prob"][0] > 0.5) == sample.closed)
            done.append((output.info["done_prob"] > 0.5) == sample.done)
            bag = sample.source.split("@")[0]
            index = index + 1 if bag == previous else 0
            previous = bag
            by_index[index].append(error)
        errors = np.array(errors)
        print(f"{name} {checkpoint}: position error median {100 * np.median(errors):.1f} cm, mean "
              f"{100 * errors.mean():.1f} cm, under 2 cm {np.mean(errors < 0.02):.2f}; rotation median "
              f"{np.median(rotations):.1f} deg; gripper {np.mean(gripper):.2f}, done {np.mean(done):.2f} correct; "
              f"{1e3 * (time.perf_counter() - begun) / len(samples):.0f} ms per prediction")
        print("  median error per keyframe index (cm):",
              {k: round(100 * float(np.median(v)), 1) for k, v in sorted(by_index.items())})


if __name__ == "__main__":
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3:])
