#!/usr/bin/env bash
# Issue 5 measurement, the exact commands: scripted-expert demos on `base`, rvt2 and 3dda trained per
# conditioning mode, then closed-loop success per variation set. One process at a time, one torch thread
# (the machine has 2 shared cores). Steps whose output exists are skipped, so the script resumes.
#   bash bench/learned_policies.sh            # RUNS=runs/issue5 EPISODES=20 by default
# Results: $RUNS/eval/results.json and success.png (copied to bench/results_learned_policies.{json,png}).
set -euo pipefail
export OMP_NUM_THREADS=1 MUJOCO_GL=egl
BIN=${BIN:-.venv/bin}
RUNS=${RUNS:-runs/issue5}
EPISODES=${EPISODES:-20}
SETS=${SETS:-base unseen_combos colors sizes distractors table_lighting camera_shift}
RVT2_MODES=${RVT2_MODES:-path_channels none masks}
DDA_MODES=${DDA_MODES:-path_channels none}

[ -f "$RUNS/demos_base/index.json" ] || \
  "$BIN/hamster-record-demos" --out "$RUNS/demos_base" --episodes 60 --seed 0 --set base

for mode in $RVT2_MODES; do
  [ -f "$RUNS/train/rvt2_$mode/final/model.safetensors" ] || \
    "$BIN/hamster-train" config/train_rvt2.yaml --data "$RUNS/demos_base" --out "$RUNS/train/rvt2_$mode" \
      --conditioning "$mode"
done
for mode in $DDA_MODES; do
  [ -f "$RUNS/train/3dda_$mode/final/model.safetensors" ] || \
    "$BIN/hamster-train" config/train_3dda.yaml --data "$RUNS/demos_base" --out "$RUNS/train/3dda_$mode" \
      --conditioning "$mode"
done

MODELS=(--model path_follower=path_follower)
for mode in $RVT2_MODES; do MODELS+=(--model "rvt2_$mode=rvt2:$RUNS/train/rvt2_$mode/final"); done
for mode in $DDA_MODES; do MODELS+=(--model "3dda_$mode=3dda:$RUNS/train/3dda_$mode/final"); done
# Episode seeds from 1000: demonstrations used base seeds 0-59, so every evaluated scene is new.
"$BIN/hamster-eval-sim" "${MODELS[@]}" --sets $SETS --episodes "$EPISODES" --seed 1000 --out "$RUNS/eval"

# rvt2 with RVT-2's coarse-to-fine stage (finer grasp positions), path channels; evaluated on the same scenes.
[ -f "$RUNS/train/rvt2_c2f_path_channels/final/model.safetensors" ] || \
  "$BIN/hamster-train" config/train_rvt2_c2f.yaml --data "$RUNS/demos_base" \
    --out "$RUNS/train/rvt2_c2f_path_channels" --conditioning path_channels --steps 1500
"$BIN/hamster-eval-sim" --model "rvt2_c2f_path_channels=rvt2:$RUNS/train/rvt2_c2f_path_channels/final" \
  --sets $SETS --episodes "$EPISODES" --seed 1000 --out "$RUNS/eval_c2f"
