"""hamster-record-demonstrations: scripted-expert demonstrations in the simulator, one rosbag2 per episode on the topics
of a live run, recorded in-process (world + expert + the real executor core, no DDS).

    hamster-record-demonstrations --out runs/demos/base --episodes 50 [--seed 0] [--set base] [--camera-hz 2] [--perturb 0.02]

Episode i uses the scene `hamster_sim.variations.scene_for(set, seed + i)` and goes to OUT/episode-<seed+i>/.
The expert's keyframes run one at a time through CartesianExecutor, holding `--pause` seconds at each so that
hamster_core.keyframes finds every one as a stop; the bag's /hamster/path is the executed trajectory projected
into the first frame (RDP-simplified), its /hamster/masks the simulator's segmentation. OUT/index.json lists
every episode (success, keyframes, simulated and wall seconds); failed ones are kept but marked, and
hamster-train skips them. With `--perturb SIGMA` the expert executes noisy keyframes (ExpertPolicy) and the
bag's metadata lists them with their planned poses (`expert_keyframes`), which training uses as targets.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path


def record(out: Path, episodes: int, seed: int = 0, variation_set: str = "base", camera_hz: float = 2.0,
           pause_sec: float = 0.4, storage: str = "mcap", progress: bool = True, perturbation: float = 0.0) -> dict:
    os.environ.setdefault("MUJOCO_GL", "egl")
    from tqdm import tqdm

    from hamster_bag.demonstration_recording import BagEpisodeWriter
    from hamster_sim.rollout import ExpertPolicy, RolloutSettings, run_episode
    from hamster_sim.variations import scene_for, variation
    from hamster_sim.world import FrankaWorld

    spec = variation(variation_set)
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    ExpertPolicy(scene_for(variation_set, seed), perturbation=perturbation)  # a bad value fails before any bag
    out.mkdir(parents=True, exist_ok=True)
    existing = [out / f"episode-{seed + i:05d}" for i in range(episodes) if (out / f"episode-{seed + i:05d}").exists()]
    if existing:
        raise ValueError(f"{existing[0]} already exists: choose another --out or --seed")
    settings = RolloutSettings(pause_sec=pause_sec)
    records, started = [], time.monotonic()
    world, stopped = None, None
    try:
        for i in tqdm(range(episodes), desc=f"demos {variation_set}", unit="episode", disable=not progress):
            episode_seed = seed + i
            scene = scene_for(variation_set, episode_seed)
            if world is None:
                world = FrankaWorld(scene, **spec.world)
            else:
                world.reset(scene)
            begun = time.monotonic()
            writer = BagEpisodeWriter(out / f"episode-{episode_seed:05d}", camera_rate_hz=camera_hz, storage=storage,
                                      metadata=dict(command="hamster-record-demonstrations", policy="expert",
                                                    variation_set=variation_set, seed=episode_seed,
                                                    scene_seed=scene.seed, pause_sec=pause_sec,
                                                    perturbation=perturbation,
                                                    camera_hz=camera_hz, scene=json.loads(scene.to_json())))
            expert = ExpertPolicy(scene, perturbation=perturbation, seed=episode_seed)
            result = run_episode(world, expert, settings=settings, observer=writer)
            bag = writer.close(success=result.success, message=result.message, instruction=result.instruction,
                               episode_seconds=round(result.sim_seconds, 3), expert_keyframes=expert.plan_record())
            records.append({"bag": str(bag), "seed": episode_seed, **result.to_json(),
                            "wall_seconds": round(time.monotonic() - begun, 2)})
    except BaseException as error:  # Ctrl-C or a failing episode: the bags already written stay listed
        stopped = f"episode {seed + len(records)}: {type(error).__name__}: {error}"
        raise
    finally:
        if world is not None:
            world.close()
        summary = _write_index(out, records, episodes, variation_set, camera_hz, pause_sec, storage,
                               time.monotonic() - started, stopped)
    return summary


def _write_index(out: Path, records: list, episodes: int, variation_set: str, camera_hz: float, pause_sec: float,
                 storage: str, wall: float, stopped: str | None) -> dict:
    """Append this run to OUT/index.json (the bags it wrote, and why it stopped early if it did)."""
    done = max(1, len(records))
    summary = {"variation_set": variation_set, "episodes": episodes, "recorded": len(records),
               "successes": sum(r["success"] for r in records),
               "wall_seconds": round(wall, 1), "wall_seconds_per_episode": round(wall / done, 2),
               "sim_seconds_per_episode": round(sum(r["sim_seconds"] for r in records) / done, 2),
               "camera_hz": camera_hz, "pause_sec": pause_sec, "storage": storage, "records": records}
    if stopped:
        summary["stopped"] = stopped
    index = out / "index.json"
    previous = json.loads(index.read_text()) if index.is_file() else {"runs": []}
    previous["runs"].append(summary)
    index.write_text(json.dumps(previous, indent=1) + "\n")
    return summary


def main(argv=None) -> int:
    from hamster_sim.variations import VARIATIONS

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="folder for the episode bags and index.json")
    parser.add_argument("--episodes", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0, help="first episode seed")
    parser.add_argument("--set", dest="variation_set", default="base", choices=sorted(VARIATIONS),
                        help="variation set of the scenes (training uses base)")
    parser.add_argument("--camera-hz", type=float, default=2.0,
                        help="camera frames per simulated second besides the one at every keyframe")
    parser.add_argument("--pause", type=float, default=0.4, help="hold at each keyframe (s)")
    parser.add_argument("--perturb", type=float, default=0.0, metavar="SIGMA",
                        help="DART-style noise (m) on the expert's keyframes without a gripper change; "
                             "training samples keep the planned keyframes as targets (0 = none)")
    parser.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    try:
        summary = record(args.out, args.episodes, args.seed, args.variation_set, args.camera_hz, args.pause,
                         args.storage, progress=not args.no_progress, perturbation=args.perturb)
    except ValueError as error:
        parser.error(str(error))
    print(json.dumps({k: v for k, v in summary.items() if k != "records"}), flush=True)
    return 0 if summary["successes"] == summary["episodes"] else 1


if __name__ == "__main__":
    sys.exit(main())
