#!/usr/bin/env bash
# Issue 22: the checkpoints shipped in checkpoints/{rvt2,3dda} and every result their READMEs and the README give,
# the exact commands. Two jobs at a time, niced, one torch thread each (the machine has 2 cores). Steps whose output
# exists are skipped, so the script resumes.
#   bash bench/shipped_checkpoints.sh      # RUNS=runs/issue22 by default
# 1. 256 scripted-expert demonstrations on `base`, episode seeds 0-255 (four recorders of 64, two at a time);
# 2. training with the shipped configs (config/train_rvt2_c2f.yaml, config/train_3dda.yaml: the keyframe step as an
#    input, translation and rotation augmentation): rvt2 with RVT2_CONDITIONING (the shipped one) and with
#    `none` (the baseline without a path), with `path_channels` and with `path_points` (each half of the shipped
#    conditioning alone), 3dda with masks; the shipped two are copied to checkpoints/<policy>;
# 3. in-process closed loop, 20 episodes per set, episode seeds 1000-1019 (scene seeds from 1,000,000: new):
#    rvt2 (shipped, no-path and each path view alone) on every variation set, 3dda on base, and the shipped ones on
#    base with the release gate off: bench/results_learned_policies.{json,md,png};
# 4. `hamster-demo --policy P --seed N` in the ROS graph over seeds 100-109 with the shipped defaults:
#    bench/results_learned_policies_demo.{json,md}. The demo's scene of seed N is sample_scene(N); a demonstration
#    of `base` episode i used sample_scene(1000 * i + k) for a small k, so 100-109 are new scenes.
set -euo pipefail
export OMP_NUM_THREADS=1 MUJOCO_GL=egl HF_HUB_OFFLINE=1
BIN=${BIN:-.venv/bin}
RUNS=${RUNS:-runs/issue22}
STEPS=${STEPS:-5000}
EPISODES=${EPISODES:-20}
RVT2_CONDITIONING=${RVT2_CONDITIONING:-path_channels_points}
SETS="base unseen_combos colors sizes distractors table_lighting camera_shift"
NICE="nice -n 10"
mkdir -p "$RUNS"

record() {  # first episode seed
  [ -f "$RUNS/demos_$1/index.json" ] || \
    $NICE "$BIN/hamster-record-demonstrations" --out "$RUNS/demos_$1" --episodes 64 --seed "$1" --set base \
      --no-progress > "$RUNS/demos_$1.log" 2>&1
}
(record 0 && record 128) &
(record 64 && record 192) &
wait
DATA=("$RUNS/demos_0" "$RUNS/demos_64" "$RUNS/demos_128" "$RUNS/demos_192")

train() {  # name config conditioning
  [ -f "$RUNS/train/$1/final/model.safetensors" ] || \
    $NICE "$BIN/hamster-train" "config/$2.yaml" --data "${DATA[@]}" --out "$RUNS/train/$1" \
      --conditioning "$3" --steps "$STEPS" --no-progress > "$RUNS/train_$1.log" 2>&1
}
ship() {  # policy run
  mkdir -p "checkpoints/$1"
  cp "$RUNS/train/$2/final/config.json" "$RUNS/train/$2/final/model.safetensors" "checkpoints/$1/"
  cp "$RUNS/train/$2/train_summary.json" "checkpoints/$1/train_summary.json"
}
evaluate() {  # name sets models...
  local name=$1 sets=$2
  shift 2
  [ -f "$RUNS/eval_$name/results.json" ] || \
    $NICE "$BIN/hamster-eval-sim" "${@/#/--model=}" --sets $sets --episodes "$EPISODES" --seed 1000 \
      --out "$RUNS/eval_$name" --no-progress > "$RUNS/eval_$name.log" 2>&1
}
demo() {  # policy
  [ -f "$RUNS/demo_$1.json" ] || \
    $NICE "$BIN/python" bench/demo_learned_policies.py --policies "$1" --seeds $(seq 100 109) \
      --out "$RUNS/demo_$1" --domain-id "$2" > "$RUNS/demo_$1.log" 2>&1
}

train "rvt2_$RVT2_CONDITIONING" train_rvt2_c2f "$RVT2_CONDITIONING" &
train 3dda_masks train_3dda masks &
wait
ship rvt2 "rvt2_$RVT2_CONDITIONING"
ship 3dda 3dda_masks
train rvt2_none train_rvt2_c2f none &
demo rvt2 "${ROS_DOMAIN_ID:-90}" && demo 3dda "${ROS_DOMAIN_ID:-90}" &
wait
# Each view of the path alone, same recipe: what path_channels_points' two halves do on their own.
train rvt2_path_channels train_rvt2_c2f path_channels &
train rvt2_path_points train_rvt2_c2f path_points &
wait
NO_GATE="?release_confirmations=1,release_threshold=0.5"
evaluate rvt2 "$SETS" "rvt2=rvt2:checkpoints/rvt2" "rvt2_none=rvt2:$RUNS/train/rvt2_none/final" &
evaluate base "base" "3dda=3dda:checkpoints/3dda" "rvt2_no_gate=rvt2:checkpoints/rvt2$NO_GATE" \
  "3dda_no_gate=3dda:checkpoints/3dda$NO_GATE" &
wait
evaluate path_channels "$SETS" "rvt2_path_channels=rvt2:$RUNS/train/rvt2_path_channels/final" &
evaluate path_points "$SETS" "rvt2_path_points=rvt2:$RUNS/train/rvt2_path_points/final" &
wait

"$BIN/hamster-eval-sim" --merge "$RUNS/eval_rvt2" "$RUNS/eval_path_channels" "$RUNS/eval_path_points" \
  "$RUNS/eval_base" --out "$RUNS/eval"
for ext in json md png; do
  src="$RUNS/eval/results.$ext"
  [ "$ext" = png ] && src="$RUNS/eval/success.png"
  cp "$src" "bench/results_learned_policies.$ext"
done
"$BIN/python" bench/demo_learned_policies.py --merge "$RUNS/demo_rvt2.json" "$RUNS/demo_3dda.json" \
  --out bench/results_learned_policies_demo
