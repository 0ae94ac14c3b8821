#!/usr/bin/env bash
# One check of a GPU machine, all figures in one JSON file (under 10 minutes of GPU time).
#
#   1. the CUDA-marked tests (pytest -m cuda);
#   2. training samples/s of CE, SOP+ and DivideMix (PreActResNet18, CIFAR-10, batch 128,
#      AMP, channels_last) and of the input pipeline alone (benchmarks/bench_learners.py);
#   3. one short real cell: CIFAR-10N worst, SOP+, Prune4Rel vs Uniform at fraction 0.2.
#
# Usage (from the repository root):
#   benchmarks/gpu_check.sh [--device cuda] [--data DIR] [--out DIR]
#                           [--epochs 30] [--selection-epochs 10] [--steps 30]
#                           [--n-train N] [--model PreActResNet18] [--batch-size 128]
# CPU smoke run with tiny sizes (what tests/test_gpu_check.py runs):
#   benchmarks/gpu_check.sh --device cpu --n-train 256 --model ResNet8 --batch-size 32 \
#       --steps 2 --epochs 1 --selection-epochs 1
#
# The default cell (a 10-epoch warm-up on 50,000 images, then 2 × 30 epochs on 10,000)
# is sized from the CPU figures for an H100-class GPU at ~5-8k images/s; lower --epochs
# if the throughput figures of step 2 come out lower.
# --data: a folder holding cifar-10-batches-py; default: built from
# ../shared/data/cifar10-jpeg.zip with ../shared/tools/make_cifar10.py into OUT/cifar.
# The CIFAR-10N worst labels ship with the package (data/cifar10n.npz).
# Output: OUT/gpu_check.json (default OUT=gpu_check).
set -euo pipefail

DEVICE=cuda
DATA=""
OUT=gpu_check
EPOCHS=30
SE=10
STEPS=30
NTRAIN=""
MODEL=PreActResNet18
BS=128
while [[ $# -gt 0 ]]; do
  case "$1" in
    --device) DEVICE=$2; shift 2 ;;
    --data) DATA=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --epochs) EPOCHS=$2; shift 2 ;;
    --selection-epochs) SE=$2; shift 2 ;;
    --steps) STEPS=$2; shift 2 ;;
    --n-train) NTRAIN=$2; shift 2 ;;
    --model) MODEL=$2; shift 2 ;;
    --batch-size) BS=$2; shift 2 ;;
    *) echo "error: unknown option $1" >&2; exit 2 ;;
  esac
done

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-python}
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
T0=$(date +%s)

if [[ -z "$DATA" ]]; then
  DATA="$OUT/cifar"
  "$PY" "$ROOT/../shared/tools/make_cifar10.py" "$DATA" >/dev/null
fi
AMP=True
[[ "$DEVICE" == cpu ]] && AMP=False  # AMP is a GPU setting (CPU bf16: --amp bf16)

# 1. CUDA-marked tests (they skip without a GPU)
set +e
(cd "$ROOT" && "$PY" -m pytest -q -m cuda -p no:cacheprovider tests >"$OUT/cuda_tests.log" 2>&1)
TESTS_RC=$?
set -e

# 2. throughput
NT=()
[[ -n "$NTRAIN" ]] && NT=(--n-train "$NTRAIN")
"$PY" "$ROOT/benchmarks/bench_learners.py" --throughput --dataset CIFAR10 --data_path "$DATA" \
  --noise realW "${NT[@]}" --model "$MODEL" --batch-size "$BS" --steps "$STEPS" \
  --device "$DEVICE" --amp "$AMP" --channels-last True --threads "$(nproc)" \
  --json "$OUT/throughput.json" >"$OUT/throughput.log"

# 3. the cell: both selections share one warm-up (signals cache)
for SEL in Prune4Rel Uniform; do
  "$PY" -m deep_core.cli.run --dataset CIFAR10 --data_path "$DATA" --noise-type realW \
    "${NT[@]}" --model "$MODEL" --robust-learner SOP -rc 0.9 -rb 0.1 --selection "$SEL" \
    --fraction 0.2 --epochs "$EPOCHS" -se "$SE" -b "$BS" --device "$DEVICE" --amp "$AMP" \
    --progress False --out-dir "$OUT/runs" >>"$OUT/cell.log" 2>&1
done

"$PY" - "$OUT" "$TESTS_RC" "$T0" <<'EOF'
import json, re, sys, time
from pathlib import Path

out, rc, t0 = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
log = (out / "cuda_tests.log").read_text()
counts = {k: int(v) for v, k in re.findall(r"(\d+) (passed|failed|skipped|deselected|error)", log)}
cell = {}
for s in sorted((out / "runs").glob("*/summary.json")):
    d = json.loads(s.read_text())
    cell[d["selection"]] = {k: d.get(k) for k in (
        "last_acc", "best_acc", "best_by", "subset_size", "subset_noise_rate", "epochs",
        "warmup_seconds", "selection_seconds", "train_seconds", "model")}
report = {
    "cuda_tests": {"exit_code": rc, **counts},
    "throughput": json.loads((out / "throughput.json").read_text()),
    "cell": cell,
    "wall_seconds": round(time.time() - t0, 1),
}
(out / "gpu_check.json").write_text(json.dumps(report, indent=2))
print(json.dumps(report, indent=2))
EOF
# a failing CUDA test fails the check (after every figure was written)
[[ $TESTS_RC -eq 0 || $TESTS_RC -eq 5 ]]
