"""hamster-train's core: config validation, periodic checkpoints policy_node can load, and exact resume."""
import json
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from hamster_core.executor import Keyframe
from hamster_core.geometry import Pose, quaternion_angle, top_down_orientation
from hamster_core.policies.base import POLICIES, Observation
from hamster_core.policies.conditioning import SceneConfig, SceneMotion, prepare_inputs
from hamster_core.training import TrainConfig, latest_checkpoint, learning_rate, make_batch, moved_target, train
from scenes import scene_observation

TINY_RVT2 = dict(num_points=128, image_size=16, patch_size=4, dim=16, depth=1, heads=2, rotation_bins=12)
TINY_DDA = dict(num_points=64, dim=24, heads=2, scene_layers=0, denoiser_layers=1, diffusion_steps=20,
                inference_steps=2)


@dataclass
class Sample:
    observation: Observation
    target: Keyframe
    closed: bool
    done: bool
    step: int = 0


def samples() -> list[Sample]:
    observation = scene_observation()
    return [Sample(observation, Keyframe(Pose(np.array([0.5, 0.05 * i, 0.1]), top_down_orientation(0.3 * i))),
                   bool(i % 2), i == 2, i) for i in range(3)]


def config(tmp_path, policy="rvt2", **changes) -> TrainConfig:
    values = dict(policy=policy, policy_config=dict(TINY_RVT2 if policy == "rvt2" else TINY_DDA), out=str(tmp_path),
                  steps=4, batch_size=2, checkpoint_every=2, log_every=1, warmup_steps=1)
    return TrainConfig(**(values | changes))


@pytest.mark.parametrize("changes, named", [
    (dict(policy="act"), "policy"),
    (dict(policy_config={"num_layers": 2}), "num_layers"),
    (dict(policy_config={"checkpoint": "x"}), "checkpoint"),
    (dict(steps=0), "steps"),
    (dict(batch_size=2.5), "batch_size"),
    (dict(learning_rate=5.0), "learning_rate"),
    (dict(lr_schedule="step"), "lr_schedule"),
    (dict(data=[""]), "data"),
    (dict(augment_translation=[0.1, 0.1]), "augment_translation"),
    (dict(augment_translation=[0.1, -0.1, 0.0]), "augment_translation"),
    (dict(sample_frames="all"), "sample_frames"),
])
def test_bad_config_values_are_named(changes, named):
    with pytest.raises(ValueError, match=named):
        TrainConfig(**changes)


def test_config_file_keys_are_checked(tmp_path):
    (tmp_path / "train.yaml").write_text("policy: rvt2\nsteps: 10\nbatch: 4\n")
    with pytest.raises(ValueError, match="unknown training config keys: batch"):
        TrainConfig.load(tmp_path / "train.yaml")
    (tmp_path / "train.yaml").write_text("policy: 3dda\nsteps: 10\ndata: runs/demos\n")
    loaded = TrainConfig.load(tmp_path / "train.yaml", steps=20)
    assert loaded.steps == 20 and loaded.data == ("runs/demos",) and loaded.policy == "3dda"


def test_shipped_configs_are_valid():
    for name in ("train_rvt2", "train_3dda"):
        loaded = TrainConfig.load(f"config/{name}.yaml")
        POLICIES.get(loaded.policy).config_class(**loaded.policy_config)   # every field is a valid value



def test_translated_inputs_move_points_and_tcp_but_keep_image_features():
    """Augmentation moves the scene and the TCP together; colour/path/mask features stay where the camera saw
    each point (sampling them at the shifted position would pair features with the wrong points)."""
    scene = SceneConfig(conditioning="path_channels", num_points=256, workspace_min=(-5.0, -5.0, -5.0),
                        workspace_max=(5.0, 5.0, 5.0))  # a box that crops nothing, so both keep the same points
    offset = np.array([0.03, -0.05, 0.01])
    plain = prepare_inputs(scene_observation(), scene, rng=np.random.default_rng(3))
    moved = prepare_inputs(scene_observation(), scene, rng=np.random.default_rng(3),
                           motion=SceneMotion(translation=tuple(offset)))
    np.testing.assert_allclose(moved.points, plain.points + offset, atol=1e-6)
    np.testing.assert_array_equal(moved.features, plain.features)
    np.testing.assert_allclose(moved.proprio[:3], plain.proprio[:3] + offset, atol=1e-6)
    np.testing.assert_array_equal(moved.proprio[3:], plain.proprio[3:])
    # Turned about a vertical axis: the points and the TCP turn together, heights and features stay.
    turn = SceneMotion(yaw=np.radians(30), pivot=(0.5, 0.0, 0.0))
    turned = prepare_inputs(scene_observation(), scene, rng=np.random.default_rng(3), motion=turn)
    np.testing.assert_allclose(turned.points, turn.apply(plain.points), atol=1e-6)
    np.testing.assert_array_equal(turned.features, plain.features)
    np.testing.assert_allclose(turned.points[:, 2], plain.points[:, 2], atol=1e-6)
    np.testing.assert_allclose(turn.invert(turned.points), plain.points, atol=1e-6)
    tcp = scene_observation().tcp_pose
    assert quaternion_angle(turned.proprio[3:7], tcp.orientation) == pytest.approx(np.radians(30), abs=1e-5)


def test_augmented_batches_shift_target_and_tcp_by_the_same_offset():
    policy_config = POLICIES.get("rvt2").config_class(**TINY_RVT2)
    data = samples()
    plain = make_batch(data, [0, 1, 2], policy_config, np.random.default_rng(0), TrainConfig())
    shifted = make_batch(data, [0, 1, 2], policy_config, np.random.default_rng(0),
                         TrainConfig(augment_translation=(0.05, 0.05, 0.0)))
    moved_tcp = shifted["proprio"][:, :3] - plain["proprio"][:, :3]
    moved_target = shifted["target_position"][:, 0] - plain["target_position"][:, 0]
    torch.testing.assert_close(moved_target, moved_tcp)
    assert torch.all(moved_tcp[:, 2] == 0) and torch.any(moved_tcp[:, :2].abs() > 1e-3)
    assert torch.all(moved_tcp[:, :2].abs() <= 0.05 + 1e-6)
    torch.testing.assert_close(shifted["target_quaternion"], plain["target_quaternion"])
    # A shift that would push the target out of the workspace is not applied.
    edge = [Sample(d.observation, Keyframe(Pose(np.array([policy_config.workspace_max[0] - 0.001, 0.0, 0.1]),
                                                 d.target.pose.orientation)), d.closed, d.done) for d in data]
    unshifted = [make_batch(edge, [0], policy_config, np.random.default_rng(seed),
                            TrainConfig(augment_translation=(0.05, 0.0, 0.0)))
                 ["target_position"][0, 0, 0].item() for seed in range(20)]
    assert all(abs(x - (policy_config.workspace_max[0] - 0.001)) < 1e-6 or x < policy_config.workspace_max[0]
               for x in unshifted)
    assert any(abs(x - (policy_config.workspace_max[0] - 0.001)) < 1e-6 for x in unshifted)


def test_turned_batches_turn_target_and_tcp_together_and_fold_the_grasp_heading():
    policy_config = POLICIES.get("rvt2").config_class(**TINY_RVT2)
    data = samples()
    plain = make_batch(data, [0, 1, 2], policy_config, np.random.default_rng(0), TrainConfig())
    turned = make_batch(data, [0, 1, 2], policy_config, np.random.default_rng(0),
                        TrainConfig(augment_rotation=45.0))
    centre = (np.array(policy_config.workspace_min) + np.array(policy_config.workspace_max)) / 2
    for k in range(3):   # TCP and target keep their distances to the vertical axis through the centre, and height
        for key in ("proprio", "target_position"):
            before = plain[key].reshape(3, -1)[k, :3].numpy()
            after = turned[key].reshape(3, -1)[k, :3].numpy()
            assert np.linalg.norm(after[:2] - centre[:2]) == pytest.approx(np.linalg.norm(before[:2] - centre[:2]),
                                                                           abs=1e-5)
            assert after[2] == pytest.approx(before[2], abs=1e-6)
    assert not torch.allclose(turned["proprio"][:, :2], plain["proprio"][:, :2])
    # Folding: a grasp turned past the demonstrator's range comes back by whole turns of the symmetry.
    target = Keyframe(Pose(np.array([0.5, 0.0, 0.1]), top_down_orientation(np.radians(40))))
    for yaw, expected in ((30, -20), (-30, 10), (-100, 30)):
        folded = moved_target(target, SceneMotion(yaw=np.radians(yaw), pivot=(0.5, 0.0, 0.0)), yaw_symmetry=90)
        assert quaternion_angle(folded.pose.orientation, top_down_orientation(np.radians(expected))) < 1e-6
    unfolded = moved_target(target, SceneMotion(yaw=np.radians(30), pivot=(0.5, 0.0, 0.0)))
    assert quaternion_angle(unfolded.pose.orientation, top_down_orientation(np.radians(70))) < 1e-6

def test_learning_rate_warms_up_then_decays():
    c = TrainConfig(steps=100, warmup_steps=10, learning_rate=1e-3)
    assert learning_rate(c, 0) == pytest.approx(1e-4) and learning_rate(c, 9) == pytest.approx(1e-3)
    assert learning_rate(c, 99) == pytest.approx(1e-4, rel=0.01) and learning_rate(c, 50) < 1e-3


@pytest.mark.parametrize("policy", ["rvt2", "3dda"])
def test_resumed_training_ends_with_the_same_weights(tmp_path, policy):
    straight = train(config(tmp_path / "straight", policy), samples(), progress=False)
    assert straight["steps"] == 4 and straight["parameters"] > 0
    train(config(tmp_path / "resumed", policy, steps=2), samples(), progress=False)
    resumed = train(config(tmp_path / "resumed", policy), samples(), resume=True, progress=False)
    assert resumed["resumed_from"].endswith("checkpoint-000002") and resumed["steps"] == 4
    a = load_file(str(tmp_path / "straight" / "final" / "model.safetensors"))
    b = load_file(str(tmp_path / "resumed" / "final" / "model.safetensors"))
    initial = POLICIES.create(policy, **config(tmp_path, policy).policy_config).model.state_dict()
    assert set(a) == set(b)
    for name in a:
        assert torch.equal(a[name], b[name]), name
    assert any(not torch.equal(a[name], initial[name]) for name in a)      # training changed the weights
    assert latest_checkpoint(tmp_path / "straight").name == "checkpoint-000004"


def test_checkpoints_load_as_policies_and_runs_do_not_clobber(tmp_path):
    train(config(tmp_path, steps=2), samples(), progress=False)
    policy = POLICIES.get("rvt2")(checkpoint=str(tmp_path / "checkpoint-000002"))
    assert policy.config.dim == TINY_RVT2["dim"] and "warning" not in policy.select_action(scene_observation()).info
    with pytest.raises(ValueError, match="not empty"):
        train(config(tmp_path, steps=2), samples(), progress=False)
    with pytest.raises(ValueError, match="nothing to resume"):
        train(config(tmp_path / "new"), samples(), resume=True, progress=False)
    log = (tmp_path / "train_log.jsonl").read_text().splitlines()
    assert len(log) == 2 and all(np.isfinite(_loss(line)) for line in log)


def test_resume_refuses_a_changed_config(tmp_path):
    """Regression: --resume with another learning rate or augmentation silently continued the old run."""
    train(config(tmp_path, steps=2), samples(), progress=False)
    with pytest.raises(ValueError, match="changed config .*learning_rate: 0.001 -> 0.01"):
        train(config(tmp_path, learning_rate=1e-2), samples(), resume=True, progress=False)
    with pytest.raises(ValueError, match="augment_translation"):
        train(config(tmp_path, augment_translation=(0.05, 0.05, 0.0)), samples(), resume=True, progress=False)
    # A run saved before a config key existed resumes with that key at its default.
    state_file = latest_checkpoint(tmp_path) / "trainer_state.json"
    state = json.loads(state_file.read_text())
    del state["train_config"]["augment_translation"]
    state_file.write_text(json.dumps(state))
    resumed = train(config(tmp_path, steps=3, log_every=3), samples(), resume=True, progress=False)
    assert resumed["steps"] == 3


def _loss(line: str) -> float:
    import json
    return float(json.loads(line)["loss"])


@pytest.mark.parametrize("name", ["train_rvt2_large", "train_3dda_large"])
def test_the_large_configs_build_and_run_one_step_on_the_cpu(name, tmp_path):
    """The GPU-sized configs: same model code, one optimizer step on the CPU (device overridden), with the file's
    precision (bf16 autocast) and batch 1 so it fits a test machine."""
    loaded = TrainConfig.load(f"config/{name}.yaml")
    assert loaded.device == "cuda" and loaded.precision == "bf16" and loaded.num_workers > 0
    run = TrainConfig.from_dict({**loaded.to_dict(), "device": "cpu", "num_workers": 0, "steps": 1, "batch_size": 1,
                                 "warmup_steps": 0, "out": str(tmp_path / "run"), "num_threads": 1})
    summary = train(run, samples(), progress=False)
    assert summary["steps"] == 1 and np.isfinite(summary["final_loss"]) and summary["precision"] == "bf16"
    big = POLICIES.get(loaded.policy).from_pretrained(tmp_path / "run" / "final")
    assert big.num_parameters() > 2_000_000 and big.config == POLICIES.get(loaded.policy).config_class(
        **loaded.policy_config, checkpoint=str(tmp_path / "run" / "final"))


def test_workers_and_mixed_precision_train_and_save(tmp_path):
    """num_workers > 0 prepares batches in DataLoader processes (seeded per worker); bf16 autocast on the CPU."""
    summary = train(config(tmp_path, num_workers=2, precision="bf16"), samples(), progress=False)
    assert summary["num_workers"] == 2 and np.isfinite(summary["final_loss"])
    assert (tmp_path / "final" / "model.safetensors").is_file()


@pytest.mark.parametrize("changes, named", [(dict(device="gpu"), "device"), (dict(device="cuda:x"), "device"),
                                            (dict(precision="fp8"), "precision"), (dict(num_workers=-1), "num_workers")])
def test_bad_scaling_values_are_named(changes, named):
    with pytest.raises(ValueError, match=named):
        TrainConfig(**changes)


@pytest.mark.slow
def test_torchrun_trains_data_parallel_with_one_writer(tmp_path):
    """torch's launcher (`torchrun --nproc_per_node 2`, as for hamster-train): two gloo ranks sample different
    batches (gradients averaged across them), and only rank 0 writes the run folder."""
    import os
    import subprocess
    import sys
    from pathlib import Path
    script = tmp_path / "ddp.py"
    script.write_text(
        "import json, sys\nfrom pathlib import Path\nimport torch.distributed as dist\n"
        f"sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})\n"
        "from policies.test_training import config, samples\n"
        "from hamster_core.training import train\n"
        f"summary = train(config(Path({str(tmp_path / 'run')!r}), steps=3, checkpoint_every=3), samples(), "
        "progress=False)\n"
        f"Path({str(tmp_path)!r}, f'rank{{dist.get_rank()}}.json').write_text(json.dumps({{'rank': dist.get_rank(), "
        "'world': summary['world_size'], 'loss': summary['final_loss']}))\n")
    process = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                              str(script)], capture_output=True, text=True, timeout=600,
                             env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert process.returncode == 0, process.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in (0, 1)]   # stdout interleaves
    assert sorted(r["rank"] for r in ranks) == [0, 1] and all(r["world"] == 2 for r in ranks)
    assert ranks[0]["loss"] != ranks[1]["loss"]          # each rank trained on its own batches
    assert (tmp_path / "run" / "final" / "model.safetensors").is_file()
    assert len((tmp_path / "run" / "train_log.jsonl").read_text().splitlines()) == 3   # one writer
