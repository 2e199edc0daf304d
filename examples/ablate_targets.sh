#!/usr/bin/env bash
# Which distillation targets make the best pretraining? Pretrain once per target set, fine-tune each with the
# same budget on 10 % of the labels (where pretraining matters most), evaluate side by side.
# About 20 minutes on 2 CPU cores.   bash examples/ablate_targets.sh [OUT_DIR]   (default runs/ablation)
set -euo pipefail
OUT=${1:-runs/ablation}
SEED=7
PRE_STEPS=${PRE_STEPS:-400}
FT_STEPS=${FT_STEPS:-250}
binlearn simulate "$OUT/data" --clips 600 --seed $SEED --workers 2 --resume -q
models=()
for t in gcc ipd ild gcc+ipd+ild; do
  name=${t//+/_}
  [ -f "$OUT/pre_$name.pt" ] || binlearn pretrain "$OUT/data" --out "$OUT/pre_$name.pt" --targets "$t" --steps $PRE_STEPS --seed $SEED -q
  [ -f "$OUT/$name.pt" ] || binlearn finetune "$OUT/data" --out "$OUT/$name.pt" --init "$OUT/pre_$name.pt" --steps $FT_STEPS --label-fraction 0.1 --seed $SEED -q
  models+=(--model "$OUT/$name.pt")
done
[ -f "$OUT/none.pt" ] || binlearn finetune "$OUT/data" --out "$OUT/none.pt" --steps $FT_STEPS --label-fraction 0.1 --seed $SEED -q
binlearn evaluate "$OUT/data" "${models[@]}" --model "$OUT/none.pt" --baselines "" --out "$OUT/eval" -q
