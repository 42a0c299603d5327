#!/usr/bin/env bash
# Issue 22: the checkpoints shipped in checkpoints/{rvt2,3dda} and their results, the exact commands. One heavy job
# at a time, niced, one torch thread (the machine has 2 cores shared with other work). Steps whose output exists are
# skipped, so the script resumes.
#   bash bench/shipped_checkpoints.sh      # RUNS=runs/issue22 DEMOS=<see below> by default
# 1. scripted-expert demonstrations on `base`, seeds 0..DEMOS-1 (deterministic per seed);
# 2. rvt2 (coarse-to-fine) and 3dda, both with masks (4/10 and 1/10 in the demo, where rvt2 path_channels got
#    1/10 and 3dda path_points 0/10) trained on them, copied to checkpoints/<policy>; each run, demo and eval is
#    named by policy and conditioning, so an older run with another conditioning is never taken for this one;
# 3. `hamster-demo --policy P --seed N` in the ROS graph over seeds 100-109 with the shipped defaults:
#    bench/results_learned_policies_demo.{json,md}. The demo's scene of seed N is sample_scene(N); a demonstration
#    of `base` episode i used sample_scene(1000 * i + k) for a small k (1002 is episode 1's), so 100-109 are new;
# 4. in-process closed loop on `base` episode seeds 1000-1019 (scene seeds from 1,000,000: new), the release gate
#    on and off (EPISODES per model): bench/results_learned_policies_gate.{json,md}.
set -euo pipefail
export OMP_NUM_THREADS=1 MUJOCO_GL=egl HF_HUB_OFFLINE=1
BIN=${BIN:-.venv/bin}
RUNS=${RUNS:-runs/issue22}
DEMOS=${DEMOS:-64}
RVT2_STEPS=${RVT2_STEPS:-2000}
DDA_STEPS=${DDA_STEPS:-1500}
EPISODES=${EPISODES:-20}
NICE="nice -n 10"
mkdir -p "$RUNS"

[ -f "$RUNS/demos_0/episode-$(printf %05d $((DEMOS - 1)))/metadata.yaml" ] || \
  $NICE "$BIN/hamster-record-demonstrations" --out "$RUNS/demos_0" --episodes "$DEMOS" --seed 0 --set base \
    --no-progress > "$RUNS/demos_0.log" 2>&1

train() {  # policy config conditioning steps
  local run="$RUNS/train/$1_$3"
  [ -f "$run/final/model.safetensors" ] || \
    $NICE "$BIN/hamster-train" "config/$2.yaml" --data "$RUNS/demos_0" --out "$run" --conditioning "$3" \
      --steps "$4" --no-progress > "$RUNS/train_$1_$3.log" 2>&1
  mkdir -p "checkpoints/$1"
  cp "$run/final/config.json" "$run/final/model.safetensors" "checkpoints/$1/"
  cp "$run/train_summary.json" "checkpoints/$1/train_summary.json"
}
gate_eval() {  # policy conditioning: the same checkpoint with the release gate (the default) and without it (the
  # knife edge)
  [ -f "$RUNS/eval_gate_$1_$2/results.json" ] || \
    $NICE "$BIN/hamster-eval-sim" --model "$1_gate=$1:checkpoints/$1" \
      --model "$1_no_gate=$1:checkpoints/$1?release_confirmations=1,release_threshold=0.5" \
      --sets base --episodes "$EPISODES" --seed 1000 --out "$RUNS/eval_gate_$1_$2" --no-progress \
      > "$RUNS/eval_gate_$1_$2.log" 2>&1
}
demo() {  # policy conditioning
  [ -f "$RUNS/demo_$1_$2.json" ] || \
    $NICE "$BIN/python" bench/demo_learned_policies.py --policies "$1" --seeds $(seq 100 109) \
      --out "$RUNS/demo_$1_$2" > "$RUNS/demo_$1_$2.log" 2>&1
}
# rvt2 first, measured before 3dda trains: one heavy job at a time.
train rvt2 train_rvt2_c2f masks "$RVT2_STEPS"
demo rvt2 masks
gate_eval rvt2 masks
train 3dda train_3dda masks "$DDA_STEPS"
demo 3dda masks
gate_eval 3dda masks

"$BIN/hamster-eval-sim" --merge "$RUNS/eval_gate_rvt2_masks" "$RUNS/eval_gate_3dda_masks" --out "$RUNS/eval_gate"
cp "$RUNS/eval_gate/results.json" bench/results_learned_policies_gate.json
cp "$RUNS/eval_gate/results.md" bench/results_learned_policies_gate.md
"$BIN/python" bench/demo_learned_policies.py --merge "$RUNS/demo_rvt2_masks.json" "$RUNS/demo_3dda_masks.json" \
  --out bench/results_learned_policies_demo
