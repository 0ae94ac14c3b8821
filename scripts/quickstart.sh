#!/usr/bin/env bash
# Quickstart on the embedded default data (scikit-learn's 8x8 digits, 40% symmetric label
# noise), offline: Uniform, SmallLoss and Prune4Rel at fractions 0.2 and 0.5 with CE and
# SOP+, then the comparison table and plot (12 runs, 1-2 minutes on a 2-core CPU).
# FULL=1 sweeps every registered method at three fractions (132 runs); the runs already
# done are reused.
#
#   bash scripts/quickstart.sh              # -> runs/quickstart/report.md and report.png
#   FULL=1 bash scripts/quickstart.sh       # every method at 0.2 0.5 0.8
#   EXTRA="--n-train 1000" bash scripts/quickstart.sh   # any deepcore-run flag, for every run
set -euo pipefail

FULL=${FULL:-0}
OUT=${OUT:-runs/quickstart}
SEEDS=${SEEDS:-0}
GPUS=${GPUS:-auto}
EPOCH_SCALE=${EPOCH_SCALE:-1}
JOBS=${JOBS:-$(n=$(nproc 2>/dev/null || echo 2); echo $((n < 8 ? n : 8)))}  # small CPU runs: one per core
NOISE_TYPES=${NOISE_TYPES:-sym}
NOISE_RATE=${NOISE_RATE:-0.4}
if [ "$FULL" = 1 ]; then
  FRACTIONS=${FRACTIONS:-"0.2 0.5 0.8"}
  METHODS=${METHODS:-}                  # every registered method
else
  FRACTIONS=${FRACTIONS:-"0.2 0.5"}
  METHODS=${METHODS:-"Uniform SmallLoss Prune4Rel"}
fi
EPOCHS=${EPOCHS:-10}
WARMUP_EPOCHS=${WARMUP_EPOCHS:-5}

source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

if [ -z "$METHODS" ]; then
  METHODS=$(PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" -m deep_core.cli.select --list \
    | awk '{print $1}')
fi

# Class-balanced budgets (--balance True) as in the paper scripts; methods without the
# option report it as unused. Batches of 32: a Digits subset holds 270-670 images, and 10
# epochs of batch 128 would be 30-60 SGD steps, too few to train (test accuracy ~45%).
common=(--noise-rate "$NOISE_RATE" -se "$(scaled "$WARMUP_EPOCHS")" --epochs "$(scaled "$EPOCHS")"
        --balance True --batch-size 32 --progress False)
sweep "${common[@]}" --robust-learner CE
sweep "${common[@]}" --robust-learner SOP -rc 0.9 -rb 0.1
report robust_learner,selection,fraction
