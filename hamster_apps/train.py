"""hamster-train: train rvt2 or 3dda on recorded demonstrations.

    hamster-train CONFIG.yaml [--out DIR] [--steps N] [--seed N] [--resume] [--data BAGS ...]
                  [--mapping FILE] [--instruction TEXT] [--calibration FILE] [--path-noise STD]

CONFIG holds hamster_core.training.TrainConfig's keys (config/train_rvt2.yaml, config/train_3dda.yaml);
the options override it. Bags are read with hamster_bag.demonstration_dataset (failed demonstrations are skipped);
real robot bags need --mapping and, unless they carry one, --instruction (`hamster-dataset` shows what the
bags give before training). Every bag that gives no sample is named on stderr with the reason.
The run folder gets checkpoint-<step>/ folders, final/ (load it with `<policy>.checkpoint: DIR/final`),
train_log.jsonl and train_summary.json; the last line printed is the summary as JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from hamster_apps.dataset import add_dataset_arguments, options_from_args


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", type=Path, help="training config YAML")
    parser.add_argument("--out", help="run folder (overrides the config's out)")
    parser.add_argument("--steps", type=int, help="total optimizer steps")
    parser.add_argument("--data", nargs="+", help="bag folders (override the config's data)")
    parser.add_argument("--conditioning", help="override policy_config.conditioning")
    parser.add_argument("--resume", action="store_true", help="continue from the run folder's latest checkpoint")
    parser.add_argument("--no-progress", action="store_true")
    add_dataset_arguments(parser)       # --seed also seeds training
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    options = options_from_args(args, parser)

    from hamster_core.training import TrainConfig, train
    from hamster_bag.demonstration_dataset import load_demonstrations
    try:
        config = TrainConfig.load(args.config, out=args.out, steps=args.steps, seed=args.seed,
                                  data=args.data)
        if args.conditioning:
            config = TrainConfig.from_dict({**config.to_dict(), "policy_config": {
                **config.policy_config, "conditioning": args.conditioning}})
        if not config.data:
            raise ValueError("no data: give bag folders in the config's data or with --data")
        samples, summary = load_demonstrations(config.data, progress=not args.no_progress, frames=config.sample_frames,
                                               options=options)
        for bag, reason in summary["skipped"].items():
            print(f"hamster-train: skipped {bag}: {reason}", file=sys.stderr, flush=True)
        if not samples:
            raise ValueError(f"no training samples from {summary['bags']} bag(s); the reasons are above")
        result = train(config, samples, resume=args.resume, progress=not args.no_progress, data_summary={
            k: v for k, v in summary.items() if k != "skipped"} | {"skipped": len(summary["skipped"])})
    except ValueError as error:
        parser.error(str(error))
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
