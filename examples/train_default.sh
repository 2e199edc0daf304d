#!/usr/bin/env bash
# Train the model bundled as binlearn/models/default.pt (about 20 minutes on 2 CPU cores).
# Built-in simulator only: random analytic spherical heads, built-in speech-like talkers, no measured HRTFs,
# so the bundled model's generalisation to real heads stays measurable.
#   bash examples/train_default.sh [OUT_DIR]      (default runs/default)
set -euo pipefail
OUT=${1:-runs/default}
SEED=1234
binlearn simulate "$OUT/data" --clips 1200 --seed $SEED --workers 2 --resume -q
binlearn pretrain "$OUT/data" --out "$OUT/pretrained.pt" --steps 1500 --seed $SEED -q
binlearn finetune "$OUT/data" --out "$OUT/doa.pt" --init "$OUT/pretrained.pt" --steps 1200 --seed $SEED -q
binlearn evaluate "$OUT/data" --model "$OUT/doa.pt" --out "$OUT/eval" -q
# Ship only what inference needs: weights and configs (no optimiser state).
python - "$OUT/doa.pt" binlearn/models/default.pt <<'PY'
import sys
from binlearn.checkpoint import load_checkpoint, save_checkpoint
ck = load_checkpoint(sys.argv[1], kind="doa")
keep = {k: ck[k] for k in ("kind", "model_config", "feature_config", "azimuth_grid", "state_dict", "train_config")}
keep["summary"] = {k: v for k, v in ck["summary"].items() if k != "history"}
keep["recipe"] = "examples/train_default.sh"
save_checkpoint(sys.argv[2], keep)
print(f"wrote {sys.argv[2]}")
PY
