"""`hamster-demo --policy P --seed N` (the real graph: simulator, VLM, perception and policy processes over DDS)
for each learned policy with its default, shipped checkpoint, over seeds no demonstration used. Writes
OUT.json (every episode's result line, minus paths) and OUT.md (the table); prints the table.

    .venv/bin/python bench/demo_learned_policies.py --policies rvt2 3dda --seeds 100 101 ... \
        --out bench/results_learned_policies_demo [--domain-id 90]
    .venv/bin/python bench/demo_learned_policies.py --merge A.json B.json --out OUT   # one table from runs
"""
import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

KEEP = ("success", "seed", "policy_success", "policy_message", "instruction", "episode_seconds", "demo_seconds",
        "error")


def run(policy: str, seed: int, out: str, domain_id: int, extra: list[str]) -> dict:
    command = [sys.executable, "-m", "hamster_apps.demo", "--policy", policy, "--seed", str(seed), "--out", out,
               "--domain-id", str(domain_id), *extra]
    process = subprocess.run(command, capture_output=True, text=True, timeout=900,
                             env=dict(os.environ, OMP_NUM_THREADS="1"))
    lines = process.stdout.strip().splitlines()
    if not lines:
        return {"success": False, "seed": seed, "error": f"no result line (exit {process.returncode}): "
                                                         f"{process.stderr.strip()[-300:]}"}
    result = json.loads(lines[-1])
    return {key: result[key] for key in KEEP if key in result}


def markdown(report: dict) -> str:
    seeds = report["seeds"]
    lines = ["| policy | checkpoint | " + " | ".join(str(s) for s in seeds) + " | successes |",
             "|---|---|" + "---|" * (len(seeds) + 1)]
    for policy, episodes in report["episodes"].items():
        cells = ["yes" if e["success"] else "no" for e in episodes]
        lines.append(f"| {policy} | {report['checkpoints'][policy]} | " + " | ".join(cells)
                     + f" | {sum(e['success'] for e in episodes)}/{len(episodes)} |")
    failures = [f"- {policy} seed {e['seed']}: {e.get('policy_message') or e.get('error', '')}"
                for policy, episodes in report["episodes"].items() for e in episodes if not e["success"]]
    return "\n".join(lines) + "\n" + ("\nFailures:\n" + "\n".join(failures) + "\n" if failures else "")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--policies", nargs="+", default=["rvt2", "3dda"])
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(100, 110)),
                        help="demo scene seeds (sample_scene(N)); base demonstrations use 1000 * i + k")
    parser.add_argument("--out", type=Path, required=True, help="OUT.json and OUT.md are written")
    parser.add_argument("--domain-id", type=int, default=int(os.environ.get("ROS_DOMAIN_ID", "90")))
    parser.add_argument("--demo-args", default="", help="more hamster-demo options, e.g. '--params-file X.yaml'")
    parser.add_argument("--merge", nargs="+", type=Path, metavar="JSON", help="combine earlier runs' OUT.json")
    args = parser.parse_args()
    if args.merge:
        reports = [json.loads(path.read_text()) for path in args.merge]
        if any(r["seeds"] != reports[0]["seeds"] for r in reports):
            parser.error("cannot merge runs over different seeds")
        report = {"command": [r["command"] for r in reports], "seeds": reports[0]["seeds"],
                  "checkpoints": {k: v for r in reports for k, v in r["checkpoints"].items()},
                  "weights_sha256": {k: v for r in reports for k, v in r.get("weights_sha256", {}).items()},
                  "episodes": {k: v for r in reports for k, v in r["episodes"].items()},
                  "wall_seconds": sum(r["wall_seconds"] for r in reports)}
        return write(report, args.out)
    checkpoints = {p: used_checkpoint(p, args.demo_args.split()) for p in args.policies}
    report = {"command": "bench/demo_learned_policies.py " + " ".join(sys.argv[1:]), "seeds": args.seeds,
              "checkpoints": checkpoints, "weights_sha256": {p: weights_sha256(c) for p, c in checkpoints.items()},
              "episodes": {}}
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as out:
        for policy in args.policies:
            report["episodes"][policy] = []
            for seed in args.seeds:
                result = run(policy, seed, out, args.domain_id, args.demo_args.split())
                report["episodes"][policy].append(result)
                print(json.dumps({"policy": policy, **result}), file=sys.stderr, flush=True)
    report["wall_seconds"] = round(time.monotonic() - started, 1)
    return write(report, args.out)


def used_checkpoint(policy: str, demo_args: list[str]) -> str:
    """The checkpoint the demo's policy_node loads: a --params-file's `<policy>.checkpoint`, else runtime.yaml's."""
    import yaml
    files = [Path(__file__).resolve().parents[1] / "config" / "runtime.yaml"]
    files += [Path(demo_args[i + 1]) for i, arg in enumerate(demo_args[:-1]) if arg == "--params-file"]
    checkpoint = ""
    for path in files:
        parameters = (yaml.safe_load(path.read_text()) or {}).get("policy_node", {}).get("ros__parameters", {})
        checkpoint = parameters.get(policy, {}).get("checkpoint", checkpoint)
    return checkpoint


def weights_sha256(checkpoint: str) -> str | None:
    """The weights' digest, so a table names exactly what ran (a copied checkpoint has the same one)."""
    from hamster_core.policies.learned import WEIGHTS_NAME, resolve_checkpoint
    path = Path(resolve_checkpoint(checkpoint)) / WEIGHTS_NAME if checkpoint else None
    return hashlib.sha256(path.read_bytes()).hexdigest() if path is not None and path.is_file() else None


def write(report: dict, out: Path) -> int:
    out.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
    table = markdown(report)
    out.with_suffix(".md").write_text(table)
    print(table, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
