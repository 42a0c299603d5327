"""hamster-eval-sim: closed-loop episodes of policies in the simulator over named variation sets.

    hamster-eval-sim --model rvt2_path=rvt2:runs/train/rvt2_path/final --model rvt2_none=rvt2:runs/train/rvt2_none/final \
        --sets base colors distractors --episodes 20 --seed 1000 --out runs/eval/rvt2

Each --model is NAME=POLICY[:CHECKPOINT][?FIELD=VALUE,...] (POLICY a registered policy name; a learned one needs
its checkpoint, whose config fixes the conditioning mode; FIELD=VALUE set its deployment fields, e.g.
`?release_confirmations=1,release_threshold=0.5` turns the release gate off to compare).
Every episode runs in-process with the same code policy_node runs:
Policy.select_action on an Observation (cloud, camera, TCP pose, gripper width, the episode's path and masks)
-> CartesianExecutor at 100 Hz -> the world, one prediction after another until one says done, then the
simulator's success check (hamster_sim.rollout). The path is the `oracle` VLM backend's answer on the first
frame (as in hamster-demo), the masks the simulator's segmentation (the `sim_ground_truth` perception backend);
a policy uses what its conditioning selects.

Episode seeds are seed .. seed + episodes - 1 in every set (training demonstrations use 0..N-1 of `base`,
so keep seed >= N for held-out scenes). Everything runs on simulated time and the policies sample with their
own seed, so the same command gives the same results. Writes OUT/results.json, OUT/results.md (the table)
and OUT/success.png.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ModelSpec:
    name: str
    policy: str
    checkpoint: str = ""
    overrides: tuple = ()          # (field, value) deployment settings of a learned policy

    @classmethod
    def parse(cls, text: str) -> "ModelSpec":
        import yaml

        name, sep, rest = text.partition("=")
        rest, _, settings = rest.partition("?")
        if not sep or not name or not rest:
            raise ValueError(f"--model must be NAME=POLICY[:CHECKPOINT][?FIELD=VALUE,...], got {text!r}")
        overrides = []
        for item in filter(None, settings.split(",")):
            key, eq, value = item.partition("=")
            if not eq or not key:
                raise ValueError(f"--model {text!r}: settings after '?' must be FIELD=VALUE, got {item!r}")
            overrides.append((key, yaml.safe_load(value)))
        policy, _, checkpoint = rest.partition(":")
        return cls(name, policy, checkpoint, tuple(overrides))

    def create(self, max_keyframes: int | None = None):
        from hamster_core.policies.base import POLICIES
        from hamster_core.policies.learned import LearnedPolicy

        cls = POLICIES.get(self.policy)
        if issubclass(cls, LearnedPolicy):
            if not self.checkpoint:
                raise ValueError(f"model {self.name}: {self.policy} needs a checkpoint (NAME={self.policy}:DIR)")
            overrides = dict(self.overrides) | ({"max_keyframes": max_keyframes} if max_keyframes else {})
            return cls.from_pretrained(self.checkpoint, **overrides)
        if self.checkpoint or self.overrides:
            raise ValueError(f"model {self.name}: {self.policy} takes no checkpoint or settings")
        return cls()


def describe(policy) -> dict:
    config = getattr(policy, "config", None)
    info = {"conditioning": getattr(config, "conditioning", "path (+masks)")}
    if hasattr(policy, "num_parameters"):
        info["parameters"] = policy.num_parameters()
    return info


def evaluate(models: list[ModelSpec], sets: list[str], episodes: int, seed: int, *, timeout_sec: float = 60.0,
             max_keyframes: int | None = None, progress: bool = True) -> dict:
    os.environ.setdefault("MUJOCO_GL", "egl")
    import torch
    from tqdm import tqdm

    from hamster_sim.rollout import RolloutSettings, oracle_vlm_path, run_episode
    from hamster_sim.variations import scene_for, variation
    from hamster_sim.world import FrankaWorld

    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    if len({m.name for m in models}) != len(models) or not models:
        raise ValueError("give one or more --model with distinct names")
    specs = [variation(name) for name in sets]
    torch.set_num_threads(1)
    policies = {m.name: m.create(max_keyframes) for m in models}
    settings = RolloutSettings(timeout_sec=timeout_sec)
    results = {m.name: {} for m in models}
    started = time.monotonic()
    bar = tqdm(total=len(models) * len(sets) * episodes, desc="eval", unit="episode", disable=not progress)
    try:
        for spec in specs:
            scenes = [scene_for(spec.name, seed + i) for i in range(episodes)]
            with FrankaWorld(scenes[0], **spec.world) as world:
                for model in models:
                    records, begun = [], time.monotonic()
                    for i, scene in enumerate(scenes):
                        world.reset(scene)
                        result = run_episode(world, policies[model.name], path_source=oracle_vlm_path,
                                             settings=settings)
                        records.append({"seed": seed + i, **result.to_json()})
                        bar.update(1)
                        bar.set_postfix(model=model.name, set=spec.name)
                    successes = sum(r["success"] for r in records)
                    results[model.name][spec.name] = {
                        "successes": successes, "episodes": len(records),
                        "success_rate": round(successes / len(records), 3),
                        "wall_seconds": round(time.monotonic() - begun, 1), "episode_results": records}
    finally:
        bar.close()
    return {"command": "hamster-eval-sim", "seed": seed, "episodes": episodes, "sets": list(sets),
            "timeout_sec": timeout_sec,
            "models": {m.name: {"policy": m.policy, "checkpoint": m.checkpoint or None, **dict(m.overrides),
                                **describe(policies[m.name])} for m in models},
            "results": results, "wall_seconds": round(time.monotonic() - started, 1)}


def merge(reports: list[dict]) -> dict:
    """One report from evaluations of different models on the same scenes (one process per core): the same
    seed, episodes and timeout, each model in one of them only. Sets are the union, in order of appearance; a
    model evaluated on fewer of them shows "-" in the others."""
    if not reports:
        raise ValueError("nothing to merge")
    first = reports[0]
    for key in ("seed", "episodes", "timeout_sec"):
        values = [r[key] for r in reports]
        if any(v != values[0] for v in values):
            raise ValueError(f"cannot merge evaluations with different {key}: {values}")
    names = [name for r in reports for name in r["models"]]
    if len(set(names)) != len(names):
        raise ValueError(f"a model is in more than one evaluation: {names}")
    sets = list(dict.fromkeys(name for r in reports for name in r["sets"]))
    return {**{key: first[key] for key in ("command", "seed", "episodes", "timeout_sec")}, "sets": sets,
            "models": {name: model for r in reports for name, model in r["models"].items()},
            "results": {name: result for r in reports for name, result in r["results"].items()},
            "wall_seconds": max(r["wall_seconds"] for r in reports),
            "merged_from": [{"argv": r.get("argv"), "wall_seconds": r["wall_seconds"]} for r in reports]}


def plot(report: dict, path: Path) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    sets, models = report["sets"], list(report["models"])
    width = 0.8 / len(models)
    figure, axes = plt.subplots(figsize=(min(16.0, max(6.0, 0.3 * len(sets) * (len(models) + 1))), 4.5))
    for k, model in enumerate(models):
        cells = report["results"][model]
        rates = [cells[s]["success_rate"] if s in cells else 0.0 for s in sets]
        x = np.arange(len(sets)) + (k - (len(models) - 1) / 2) * width
        bars = axes.bar(x, rates, width, label=f"{model} ({report['models'][model]['conditioning']})")
        for bar, s in zip(bars, sets):
            if s not in cells:
                continue
            cell = cells[s]
            axes.annotate(f"{cell['successes']}/{cell['episodes']}", (bar.get_x() + bar.get_width() / 2,
                                                                     bar.get_height()),
                          ha="center", va="bottom", fontsize=7)
    axes.set_xticks(np.arange(len(sets)), sets, rotation=20)
    axes.set_ylim(0, 1.4)
    axes.set_ylabel("success rate")
    axes.set_title(f"closed-loop success, {report['episodes']} episodes per set (seed {report['seed']})")
    axes.legend(fontsize=7, ncol=3, loc="upper center")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def markdown(report: dict) -> str:
    """The success table: one row per model, one column per set ("successes/episodes", "-" where the model was
    not evaluated), and the sum over the held-out sets (all but `base`, the training set's distribution) for a
    model evaluated on all of them."""
    sets = report["sets"]
    held_out = [s for s in sets if s != "base"]
    lines = ["| model | policy | conditioning | parameters | " + " | ".join(sets) + " | held-out |",
             "|---|---|---|---|" + "---|" * (len(sets) + 1)]
    for name, model in report["models"].items():
        results = report["results"][name]
        cells = [f"{results[s]['successes']}/{results[s]['episodes']}" if s in results else "-" for s in sets]
        totals = [results[s] for s in held_out if s in results]
        total = f"{sum(c['successes'] for c in totals)}/{sum(c['episodes'] for c in totals)}" \
            if totals and len(totals) == len(held_out) else "-"
        lines.append(f"| {name} | {model['policy']} | {model['conditioning']} | {model.get('parameters', '-')} | "
                     + " | ".join(cells) + f" | {total} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    from hamster_sim.variations import VARIATIONS

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", help="NAME=POLICY[:CHECKPOINT]; repeatable")
    parser.add_argument("--merge", nargs="+", type=Path, metavar="DIR",
                        help="instead of evaluating: merge the results.json of these runs (same scenes, other "
                             "models) into --out")
    parser.add_argument("--sets", nargs="+", default=["base"], choices=sorted(VARIATIONS), metavar="SET",
                        help=f"variation sets: {', '.join(VARIATIONS)}")
    parser.add_argument("--episodes", type=int, default=20, help="episodes per set and model")
    parser.add_argument("--seed", type=int, default=1000, help="first episode seed")
    parser.add_argument("--timeout", type=float, default=60.0, help="simulated seconds per episode")
    parser.add_argument("--max-keyframes", type=int, default=None, help="override the policies' max_keyframes")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    if bool(args.model) == bool(args.merge):
        parser.error("give --model (to evaluate) or --merge (to combine earlier runs), not both")
    try:
        if args.merge:
            report = merge([json.loads((folder / "results.json").read_text()) for folder in args.merge])
        else:
            models = [ModelSpec.parse(text) for text in args.model]
            report = evaluate(models, args.sets, args.episodes, args.seed, timeout_sec=args.timeout,
                              max_keyframes=args.max_keyframes, progress=not args.no_progress)
    except (OSError, ValueError) as error:
        parser.error(str(error))
    report["argv"] = sys.argv[1:] if argv is None else list(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(report, indent=1) + "\n")
    plot(report, args.out / "success.png")
    (args.out / "results.md").write_text(markdown(report))
    summary = {m: {s: f"{c['successes']}/{c['episodes']}" for s, c in sets.items()}
               for m, sets in report["results"].items()}
    print(json.dumps({"out": str(args.out), "success": summary, "wall_seconds": report["wall_seconds"]}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
