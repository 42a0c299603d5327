"""A checkpoint that cannot be loaded ends with one error naming the folder and the reason (issue 21): policy_node
then exits 2 with one FATAL line instead of a traceback that never says which checkpoint."""
import json
import os
import subprocess
import sys

import pytest
from safetensors.torch import load_file, save_file

from hamster_core.policies.base import POLICIES
from tiny_models import TINY_RVT2


@pytest.fixture
def checkpoint(tmp_path):
    return POLICIES.create("rvt2", **TINY_RVT2).save_pretrained(tmp_path / "checkpoint")


def truncate(folder):
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:200])


def reshape(folder):
    state = load_file(str(folder / "model.safetensors"))
    name = sorted(state)[0]
    state[name] = state[name].flatten()[:3].clone()
    save_file(state, str(folder / "model.safetensors"))


def poison(folder):
    state = load_file(str(folder / "model.safetensors"))
    name = next(name for name in sorted(state) if state[name].is_floating_point())
    state[name] = state[name].clone()
    state[name].view(-1)[0] = float("nan")
    save_file(state, str(folder / "model.safetensors"))


def corrupt_config(folder):
    (folder / "config.json").write_text("{not json")


def wrong_field_type(folder):
    config = json.loads((folder / "config.json").read_text())
    config["num_points"] = "many"
    (folder / "config.json").write_text(json.dumps(config))


@pytest.mark.parametrize("damage, says", [(truncate, "SafetensorError"), (reshape, "size mismatch"),
                                          (poison, "non-finite weights"), (corrupt_config, "JSONDecodeError"),
                                          (wrong_field_type, "num_points")])
def test_a_damaged_checkpoint_is_one_error_naming_it(checkpoint, damage, says):
    damage(checkpoint)
    with pytest.raises(ValueError, match="cannot load checkpoint") as error:
        POLICIES.create("rvt2", checkpoint=str(checkpoint))
    assert str(checkpoint) in str(error.value) and says in str(error.value), error.value
    assert len(str(error.value)) < 600 and "\n" not in str(error.value)


@pytest.mark.graph
def test_policy_node_exits_2_with_one_fatal_line_on_a_corrupt_checkpoint(checkpoint, tmp_path):
    truncate(checkpoint)
    env = dict(os.environ, ROS_DOMAIN_ID=str(200 + os.getpid() % 30), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
    run = subprocess.run([sys.executable, "-m", "policy_node.node", "--ros-args", "-p", "policy:=rvt2",
                          "-p", f"rvt2.checkpoint:={checkpoint}"], env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 2, run.stderr
    assert "Traceback" not in run.stderr, run.stderr
    fatal = [line for line in run.stderr.splitlines() if line.startswith("[FATAL]")]
    assert len(fatal) == 1 and str(checkpoint) in fatal[0] and "SafetensorError" in fatal[0], run.stderr
