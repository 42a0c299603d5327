"""Training loop of the learned keyframe policies (rvt2, 3dda) on demonstration samples. ROS-free: samples
come in as (Observation, next Keyframe, gripper closed there, done) and go through the same
`conditioning.prepare_inputs` / `collate` / `add_targets` the policies use at inference.

A run folder holds `checkpoint-<step>/` every `checkpoint_every` steps and `final/`; each is a
`save_pretrained` folder policy_node loads via `<policy>.checkpoint`, plus `training_state.safetensors`
(optimizer moments, RNG states) and `trainer_state.json` (step, optimizer hyper-parameters, numpy RNG) so a
run resumes exactly where it stopped: the same steps give the same weights whether or not it was
interrupted (test/policies/test_training.py). `train_log.jsonl` has the losses, `train_summary.json` time and sizes.

Scaling: `device` (cpu, cuda, cuda:N, mps), `precision` (fp32, or bf16/fp16 autocast; fp16 with a gradient scaler
on CUDA), `num_workers` (processes preparing batches; 0 prepares them in the loop, the only setting that resumes
bit-exactly) and data-parallel training under torch's launcher: `torchrun --nproc_per_node N -m hamster_apps.train
CONFIG` runs N processes that each sample `batch_size` with their own seed and average gradients (gloo on CPU,
nccl on CUDA, each rank on cuda:LOCAL_RANK); rank 0 writes the run folder. config/train_*_large.yaml are sized
for a GPU.
"""
from __future__ import annotations

import json
import math
import os
import time
from contextlib import nullcontext
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from hamster_core.geometry import Pose, quaternion_multiply, quaternion_to_matrix
from hamster_core.keyframes import SAMPLE_FRAMES
from hamster_core.policies.base import POLICIES
from hamster_core.policies.conditioning import SceneMotion, add_targets, collate, prepare_inputs
from hamster_core.policies.learned import LearnedPolicy

TRAINING_STATE = "training_state.safetensors"
TRAINER_STATE = "trainer_state.json"
LEARNED_POLICIES = ("rvt2", "3dda")
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class TrainConfig:
    """One training run; a YAML file with these keys is the documented source of truth (config/train_*.yaml)."""

    policy: str = "rvt2"                      # rvt2 | 3dda
    policy_config: dict = field(default_factory=dict)   # fields of the policy's config (RVT2Config / DDAConfig)
    data: tuple = ()                          # bag folders, or folders of bags (hamster-record-demonstrations output)
    sample_frames: str = "keyframes"          # keyframes | moving (also the frames on the way to each keyframe;
                                              # did not help with 60 demonstrations:
                                              # bench/results_learned_policies_ablation.md)
    out: str = "runs/train"                   # run folder: checkpoints, final/, logs
    steps: int = 2000                         # optimizer steps in total (a resumed run continues to this)
    batch_size: int = 16
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    lr_schedule: str = "cosine"               # constant | cosine (to 10 % of learning_rate at `steps`)
    warmup_steps: int = 50
    grad_clip: float = 1.0                    # max gradient norm (0: off)
    checkpoint_every: int = 500               # steps between checkpoint-<step> folders (and at the end)
    log_every: int = 25
    seed: int = 0                             # batch sampling, point sampling, augmentation, weight init
    num_threads: int = 1                      # torch CPU threads
    augment_translation: tuple = (0.0, 0.0, 0.0)  # m: per sample the scene, TCP and target move together by up to
                                              # this much per axis (PerAct/RVT-style; a shift that would take the
                                              # TCP or target out of the workspace is not applied); 0: off
    augment_rotation: float = 0.0             # degrees: and turn them together by up to this much about the
                                              # vertical axis through the workspace centre (RVT / PerAct: 45); 0: off
    yaw_symmetry: float = 0.0                 # degrees: a turned target's heading is folded into [-s/2, s/2), the
                                              # range the demonstrator picks grasps from (the scripted expert: 90,
                                              # a cube grasped across either pair of faces); 0: no folding
    device: str = "cpu"                       # cpu | cuda | cuda:N | mps (under torchrun: cuda:LOCAL_RANK)
    precision: str = "fp32"                   # fp32 | bf16 | fp16 (autocast; fp16 scales gradients on CUDA)
    num_workers: int = 0                      # batch-preparing processes (0: in the loop; resumes bit-exactly)

    def __post_init__(self):
        if self.policy not in LEARNED_POLICIES:
            raise ValueError(f"policy must be one of {', '.join(LEARNED_POLICIES)}, got {self.policy!r}")
        if not isinstance(self.policy_config, dict):
            raise ValueError(f"policy_config must be a mapping of config fields, got {self.policy_config!r}")
        config_class = POLICIES.get(self.policy).config_class
        known = {f.name for f in fields(config_class)}
        unknown = sorted(set(self.policy_config) - known)
        if unknown:
            raise ValueError(f"policy_config has unknown {config_class.__name__} fields: {', '.join(unknown)}")
        for name in ("checkpoint",):
            if self.policy_config.get(name):
                raise ValueError(f"policy_config.{name} cannot be set for training (resume a run instead)")
        data = (self.data,) if isinstance(self.data, str) else tuple(self.data)
        if not all(isinstance(d, str) and d for d in data):
            raise ValueError(f"data must be a list of bag folders, got {self.data!r}")
        object.__setattr__(self, "data", data)
        if self.sample_frames not in SAMPLE_FRAMES:
            raise ValueError(f"sample_frames must be one of {', '.join(SAMPLE_FRAMES)}, got {self.sample_frames!r}")
        if not isinstance(self.out, str) or not self.out:
            raise ValueError(f"out must be a folder path, got {self.out!r}")
        for name, low, high in (("steps", 1, 10_000_000), ("batch_size", 1, 4096), ("warmup_steps", 0, 10_000_000),
                                ("checkpoint_every", 1, 10_000_000), ("log_every", 1, 10_000_000),
                                ("seed", 0, 2**32 - 1), ("num_threads", 1, 256)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ValueError(f"{name} must be an integer in [{low}, {high}], got {value!r}")
        for name, low, high in (("learning_rate", 1e-7, 1.0), ("weight_decay", 0.0, 1.0), ("grad_clip", 0.0, 1e6)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
                raise ValueError(f"{name} must be a number in [{low}, {high}], got {value!r}")
        if not isinstance(self.device, str) or not (self.device in ("cpu", "cuda", "mps") or (
                self.device.startswith("cuda:") and self.device[5:].isdigit())):
            raise ValueError(f"device must be cpu, cuda, cuda:N or mps, got {self.device!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if isinstance(self.num_workers, bool) or not isinstance(self.num_workers, int) or not 0 <= self.num_workers <= 64:
            raise ValueError(f"num_workers must be an integer in [0, 64], got {self.num_workers!r}")
        if self.lr_schedule not in ("constant", "cosine"):
            raise ValueError(f"lr_schedule must be constant or cosine, got {self.lr_schedule!r}")
        shift = self.augment_translation
        if isinstance(shift, (str, bytes)) or not hasattr(shift, "__len__") or len(shift) != 3 or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and 0.0 <= v <= 1.0 for v in shift):
            raise ValueError(f"augment_translation must be 3 numbers in [0, 1] m, got {shift!r}")
        object.__setattr__(self, "augment_translation", tuple(float(v) for v in shift))
        for name, high in (("augment_rotation", 180.0), ("yaw_symmetry", 360.0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= high:
                raise ValueError(f"{name} must be a number of degrees in [0, {high:g}], got {value!r}")

    @classmethod
    def from_dict(cls, values: dict, **overrides) -> "TrainConfig":
        if not isinstance(values, dict):
            raise ValueError(f"a training config must be a mapping, got {type(values).__name__}")
        values = {**values, **{k: v for k, v in overrides.items() if v is not None}}
        unknown = sorted(set(values) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown training config keys: {', '.join(unknown)}")
        return cls(**values)

    @classmethod
    def load(cls, path, **overrides) -> "TrainConfig":
        import yaml
        try:
            values = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as error:
            raise ValueError(f"cannot read training config {path}: {error}") from error
        return cls.from_dict(values, **overrides)

    def to_dict(self) -> dict:
        return {f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v for f in fields(self)}


def learning_rate(config: TrainConfig, step: int) -> float:
    """Linear warm-up, then constant or cosine down to 10 % at the last step."""
    if step < config.warmup_steps:
        return config.learning_rate * (step + 1) / config.warmup_steps
    if config.lr_schedule == "constant":
        return config.learning_rate
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    return config.learning_rate * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def make_batch(samples, indices, policy_config, rng: np.random.Generator, config: TrainConfig) -> dict:
    inputs, targets = [], []
    for i in indices:
        sample = samples[i]
        motion = _motion(sample, policy_config, rng, config)
        inputs.append(prepare_inputs(sample.observation, policy_config, rng=rng, train=True, motion=motion,
                                     step=sample.step))
        targets.append([moved_target(sample.target, motion, config.yaw_symmetry)])
    return add_targets(collate(inputs), targets, [samples[i].done for i in indices],
                       [[samples[i].closed] for i in indices])


def moved_target(target, motion: SceneMotion, yaw_symmetry: float = 0.0):
    """The target keyframe moved with its sample; a turned one gets its heading (the hand's x axis about the base
    z axis) folded by whole turns of `yaw_symmetry` degrees into [-s/2, s/2), so one object pose never has two
    targets that differ by the object's symmetry."""
    pose = motion.apply_pose(target.pose)
    if yaw_symmetry > 0 and motion.yaw != 0:
        x_axis = quaternion_to_matrix(pose.orientation)[:, 0]
        heading, period = math.atan2(x_axis[1], x_axis[0]), math.radians(yaw_symmetry)
        turn = (heading + period / 2) % period - period / 2 - heading
        pose = Pose(pose.position, quaternion_multiply([0.0, 0.0, math.sin(turn / 2), math.cos(turn / 2)],
                                                       pose.orientation))
    return replace(target, pose=pose)


def _motion(sample, policy_config, rng: np.random.Generator, config: TrainConfig) -> SceneMotion:
    """A random turn of up to augment_rotation about the vertical axis through the workspace centre and a shift
    of up to augment_translation per axis, or none where it would move the TCP or the target out of the workspace
    (the views and the predictions cover only that box)."""
    limits, degrees = np.asarray(config.augment_translation), config.augment_rotation
    if not any(limits) and not degrees:
        return SceneMotion()
    low, high = np.asarray(policy_config.workspace_min), np.asarray(policy_config.workspace_max)
    motion = SceneMotion(translation=tuple(rng.uniform(-1.0, 1.0, 3) * limits),
                         yaw=math.radians(float(rng.uniform(-degrees, degrees))) if degrees else 0.0,
                         pivot=tuple((low + high) / 2))
    moved = motion.apply(np.array([sample.observation.tcp_pose.position, sample.target.pose.position]))
    return SceneMotion() if np.any(moved < low) or np.any(moved > high) else motion


# What a resumed run may change: how long it runs and how it reports; anything else would silently mix two runs.
RESUMABLE_CHANGES = ("steps", "checkpoint_every", "log_every", "num_threads", "out", "device", "num_workers")


def _check_resumable(checkpoint: Path, config: TrainConfig) -> None:
    defaults = json.loads(json.dumps(TrainConfig().to_dict()))  # keys added since the run started: defaults
    saved = {**defaults, **json.loads((checkpoint / TRAINER_STATE).read_text()).get("train_config", {})}
    current = json.loads(json.dumps(config.to_dict()))  # tuples as lists, like the saved copy
    changed = sorted(key for key in set(saved) | set(current)
                     if key not in RESUMABLE_CHANGES and saved.get(key) != current.get(key))
    if changed:
        details = "; ".join(f"{key}: {saved.get(key)!r} -> {current.get(key)!r}" for key in changed)
        raise ValueError(f"cannot resume {checkpoint.parent} with a changed config ({details}); only "
                         f"{', '.join(RESUMABLE_CHANGES)} may change")


def latest_checkpoint(out: Path) -> Path | None:
    found = sorted(out.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]) if
                   p.name.split("-")[1].isdigit() else -1)
    found = [p for p in found if (p / TRAINER_STATE).is_file()]
    return found[-1] if found else None


def _save(policy: LearnedPolicy, optimizer, folder: Path, step: int, rng: np.random.Generator,
          config: TrainConfig) -> None:
    policy.save_pretrained(folder)
    state = optimizer.state_dict()
    tensors = {"torch_rng_state": torch.get_rng_state()}
    scalars = {}
    for index, values in state["state"].items():
        for name, value in values.items():
            if torch.is_tensor(value):
                tensors[f"optimizer.{index}.{name}"] = value.detach().contiguous()
            else:
                scalars[f"{index}.{name}"] = value
    save_file(tensors, str(folder / TRAINING_STATE))
    (folder / TRAINER_STATE).write_text(json.dumps({
        "step": step, "param_groups": state["param_groups"], "optimizer_scalars": scalars,
        "numpy_rng": rng.bit_generator.state, "train_config": config.to_dict()}, indent=1) + "\n")


def _restore(folder: Path, optimizer, rng: np.random.Generator) -> int:
    trainer = json.loads((folder / TRAINER_STATE).read_text())
    tensors = load_file(str(folder / TRAINING_STATE))
    torch.set_rng_state(tensors.pop("torch_rng_state"))
    per_param: dict[int, dict] = {}
    for key, value in tensors.items():
        _, index, name = key.split(".", 2)
        per_param.setdefault(int(index), {})[name] = value
    for key, value in trainer.get("optimizer_scalars", {}).items():
        index, name = key.split(".", 1)
        per_param.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": per_param, "param_groups": trainer["param_groups"]})
    rng.bit_generator.state = trainer["numpy_rng"]
    return int(trainer["step"])


def train(config: TrainConfig, samples: list, *, resume: bool = False, progress: bool = True,
          data_summary: dict | None = None) -> dict:
    """Train on `samples` (hamster_bag.demonstration_dataset.DemonstrationSample or anything with observation, target,
    closed, done and step). Returns the run summary (also written to out/train_summary.json)."""
    from tqdm import tqdm

    if not samples:
        raise ValueError("no training samples")
    out = Path(config.out)
    torch.set_num_threads(config.num_threads)
    rank, world = _distributed(config)
    device = torch.device(f"cuda:{os.environ.get('LOCAL_RANK', '0')}" if world > 1 and config.device.startswith("cuda")
                          else config.device)
    writer = rank == 0
    checkpoint = latest_checkpoint(out) if resume else None
    if resume and checkpoint is None:
        raise ValueError(f"nothing to resume in {out}: no checkpoint-<step> folder with {TRAINER_STATE}")
    if checkpoint is not None:
        _check_resumable(checkpoint, config)
    if writer and not resume and out.exists() and any(out.iterdir()):
        raise ValueError(f"{out} is not empty: resume the run (--resume) or choose another out")
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)             # the same initial weights on every rank
    rng = np.random.default_rng(config.seed if world == 1 else [config.seed, rank])
    if checkpoint is not None:
        policy = POLICIES.get(config.policy)(checkpoint=str(checkpoint))
    else:
        policy = POLICIES.create(config.policy, **config.policy_config, seed=config.seed)
    model = policy.model.to(device)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    step = _restore(checkpoint, optimizer, rng) if checkpoint is not None else 0
    autocast_dtype = PRECISIONS[config.precision]
    scaler = torch.amp.GradScaler("cuda") if config.precision == "fp16" and device.type == "cuda" else None
    batches = _batch_stream(samples, policy.config, config, rng, step, rank)
    if writer:
        (out / "train_config.json").write_text(json.dumps(config.to_dict(), indent=1) + "\n")
    log = (out / "train_log.jsonl").open("a") if writer else open(os.devnull, "w")
    started, step_times = time.monotonic(), []
    bar = tqdm(total=config.steps, initial=step, desc=f"train {config.policy}", unit="step",
               disable=not progress or not writer)
    metrics = {}
    try:
        while step < config.steps:
            begun = time.perf_counter()
            batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in next(batches).items()}
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(config, step)
            with (torch.autocast(device.type, dtype=autocast_dtype) if autocast_dtype else nullcontext()):
                loss, metrics = model.compute_loss(batch)
            optimizer.zero_grad(set_to_none=True)
            (scaler.scale(loss) if scaler else loss).backward()
            if world > 1:
                _average_gradients(model, world)
            if scaler:
                scaler.unscale_(optimizer)
            if config.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            if scaler:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            step += 1
            step_times.append(time.perf_counter() - begun)
            bar.update(1)
            if step % config.log_every == 0 or step == config.steps:
                record = {"step": step, "lr": learning_rate(config, step - 1), "loss": float(loss.detach()),
                          **{k: round(v, 5) for k, v in metrics.items()}}
                log.write(json.dumps(record) + "\n")
                log.flush()
                bar.set_postfix(loss=f"{record['loss']:.4f}")
            if writer and (step % config.checkpoint_every == 0 or step == config.steps):
                model.eval()
                _save(policy, optimizer, out / f"checkpoint-{step:06d}", step, rng, config)
                model.train()
    finally:
        bar.close()
        log.close()
    model.eval()
    model.to("cpu")              # checkpoints and inference are on the CPU
    if writer:
        policy.save_pretrained(out / "final")
    seconds = time.monotonic() - started
    summary = {"policy": config.policy, "conditioning": policy.config.conditioning, "steps": step,
               "resumed_from": str(checkpoint) if checkpoint else None, "samples": len(samples),
               "batch_size": config.batch_size, "epochs": round(len(step_times) * config.batch_size / len(samples), 2),
               "parameters": policy.num_parameters(), "wall_seconds": round(seconds, 1),
               "seconds_per_step": round(float(np.mean(step_times)), 4) if step_times else None,
               "final_loss": float(loss.detach()) if step_times else None, "final": str(out / "final"),
               "data": data_summary or {}, "torch_threads": torch.get_num_threads(), "device": str(device),
               "precision": config.precision, "num_workers": config.num_workers, "world_size": world}
    if writer:
        (out / "train_summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def _distributed(config: TrainConfig) -> tuple[int, int]:
    """(rank, world size): (0, 1) alone; under torchrun (WORLD_SIZE > 1) the process group is joined here."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    import torch.distributed as dist
    if not dist.is_initialized():
        dist.init_process_group("nccl" if config.device.startswith("cuda") else "gloo")
    return dist.get_rank(), world


def _average_gradients(model, world: int) -> None:
    """Data parallel by hand: every rank ends the step with the mean gradient (the same weights stay the same)."""
    import torch.distributed as dist
    for parameter in model.parameters():
        if parameter.grad is not None:
            dist.all_reduce(parameter.grad)
            parameter.grad /= world


class _SampledBatches(torch.utils.data.IterableDataset):
    """Endless training batches for DataLoader workers, each worker sampling with its own seeded generator."""

    def __init__(self, samples, policy_config, config: TrainConfig, start_step: int, rank: int):
        super().__init__()
        self.samples, self.policy_config, self.config = samples, policy_config, config
        self.start_step, self.rank = start_step, rank

    def __iter__(self):
        worker = torch.utils.data.get_worker_info()
        rng = np.random.default_rng([self.config.seed, self.rank, worker.id if worker else 0, self.start_step])
        while True:
            yield _sampled_batch(self.samples, self.policy_config, self.config, rng)


def _sampled_batch(samples, policy_config, config: TrainConfig, rng: np.random.Generator) -> dict:
    indices = rng.choice(len(samples), config.batch_size, replace=len(samples) < config.batch_size)
    return make_batch(samples, indices, policy_config, rng, config)


def _batch_stream(samples, policy_config, config: TrainConfig, rng: np.random.Generator, step: int, rank: int):
    """Batches in the loop from `rng` (num_workers 0: the run's own generator, saved in checkpoints) or from
    DataLoader workers."""
    if config.num_workers == 0:
        while True:
            yield _sampled_batch(samples, policy_config, config, rng)
    loader = torch.utils.data.DataLoader(_SampledBatches(samples, policy_config, config, step, rank), batch_size=None,
                                         num_workers=config.num_workers, persistent_workers=True)
    yield from loader
