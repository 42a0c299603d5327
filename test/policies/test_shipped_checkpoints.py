"""The trained checkpoints shipped in checkpoints/<policy>: committed (not LFS pointers, a few MB), the defaults of
config/runtime.yaml, and loadable from a fresh copy of the repository from any working directory."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from hamster_core.policies.base import POLICIES
from hamster_core.policies.learned import PROJECT_ROOT
from scenes import scene_observation

ROOT = Path(__file__).resolve().parents[2]
LEARNED = ["rvt2", "3dda"]


def runtime_checkpoint(policy: str) -> str:
    section = yaml.safe_load((ROOT / "config" / "runtime.yaml").read_text())["policy_node"]["ros__parameters"]
    return section[policy]["checkpoint"]


@pytest.mark.parametrize("policy", LEARNED)
def test_the_shipped_checkpoint_is_committed_small_and_documented(policy):
    folder = ROOT / runtime_checkpoint(policy)
    tracked = subprocess.run(["git", "ls-files", str(folder)], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.split()
    assert {f"checkpoints/{policy}/{name}" for name in ("config.json", "model.safetensors", "README.md")} <= \
        set(tracked)
    weights = folder / "model.safetensors"
    assert 100_000 < weights.stat().st_size < 20_000_000
    assert not weights.read_bytes()[:40].startswith(b"version https://git-lfs")
    readme = (folder / "README.md").read_text()
    assert "hamster-train" in readme and "hamster-record-demonstrations" in readme
    assert json.loads((folder / "config.json").read_text())["checkpoint"] == ""


@pytest.mark.parametrize("policy", LEARNED)
def test_the_runtime_default_loads_the_shipped_checkpoint_from_any_directory(policy, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)         # relative to the project, not to where the user stands
    loaded = POLICIES.create(policy, checkpoint=runtime_checkpoint(policy))
    assert loaded.config.checkpoint == str(PROJECT_ROOT / "checkpoints" / policy) and loaded.init_note is None
    output = loaded.select_action(scene_observation())
    assert len(output.keyframes) >= 1 and "warning" not in output.info
    assert np.all(np.isfinite(output.keyframes[0].pose.position))


@pytest.mark.parametrize("policy", LEARNED)
def test_a_fresh_copy_of_the_committed_tree_loads_it(policy, tmp_path):
    """`git archive HEAD` is what a clone checks out: the checkpoint and the code that reads it, nothing from
    this working tree's runs/."""
    clone = tmp_path / "clone"
    clone.mkdir()
    archive = subprocess.run(["git", "archive", "HEAD", "hamster_core", "config", "checkpoints"], cwd=ROOT,
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(clone)], input=archive, check=True)
    module = {"rvt2": "hamster_core.policies.rvt2:RVT2Policy", "3dda": "hamster_core.policies.dda:DDAPolicy"}[policy]
    script = (f"import importlib, json, yaml\n"
              f"m, c = '{module}'.split(':')\n"
              f"cls = getattr(importlib.import_module(m), c)\n"
              f"path = yaml.safe_load(open('{clone}/config/runtime.yaml'))['policy_node']['ros__parameters']"
              f"['{policy}']['checkpoint']\n"
              f"p = cls(checkpoint=path)\n"
              f"print(json.dumps([cls.__module__ and importlib.import_module(m).__file__, p.config.checkpoint, "
              f"p.init_note, p.num_parameters()]))\n")
    run = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": str(clone), "OMP_NUM_THREADS": "1"})
    assert run.returncode == 0, run.stderr[-2000:]
    source, checkpoint, note, parameters = json.loads(run.stdout.strip().splitlines()[-1])
    assert source.startswith(str(clone)) and checkpoint == str(clone / "checkpoints" / policy)
    assert note is None and parameters > 100_000
