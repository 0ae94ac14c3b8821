#!/usr/bin/env bash
# The researcher's loop on real data, sized for a 2-core CPU: CIFAR-10N "realW" labels
# (worst of three annotators, 40.2% noise), every registered selection method at
# fractions 0.2 / 0.5 / 0.8, one learner (CE), one seed, then deepcore-report's table and
# plot. Reduced schedule (NOT the paper's): ResNet8, the first N_TRAIN training images,
# WARMUP_EPOCHS warm-up epochs (shared by all methods through the signal cache) and
# EPOCHS training epochs, batch 128, cosine LR from 0.05.
#
#   python ../shared/tools/make_cifar10.py /tmp/cifar
#   DATA=/tmp/cifar bash benchmarks/researcher_loop.sh
set -euo pipefail

DATA=${DATA:-/tmp/cifar}                # holds cifar-10-batches-py
OUT=${OUT:-/tmp/researcher_loop}
SEEDS=${SEEDS:-0}
GPUS=${GPUS:-cpu}
EPOCH_SCALE=${EPOCH_SCALE:-1}
NOISE_TYPES=${NOISE_TYPES:-realW}
FRACTIONS=${FRACTIONS:-"0.2 0.5 0.8"}
METHODS=${METHODS:-}                    # default: every registered method
N_TRAIN=${N_TRAIN:-20000}
WARMUP_EPOCHS=${WARMUP_EPOCHS:-8}
EPOCHS=${EPOCHS:-8}
LEARNER=${LEARNER:-CE}

source "$(dirname "${BASH_SOURCE[0]}")/../scripts/common.sh"

if [ -z "$METHODS" ]; then
  METHODS=$(PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" -m deep_core.cli.select --list \
    | awk '{print $1}')
fi

start=$(date +%s)
sweep --dataset CIFAR10 --data_path "$DATA" --model ResNet8 --n-train "$N_TRAIN" \
  --robust-learner "$LEARNER" -se "$(scaled "$WARMUP_EPOCHS")" --epochs "$(scaled "$EPOCHS")" \
  --lr 0.05 --batch-size 128 --balance True --progress False
echo "sweep wall time: $(( $(date +%s) - start )) s" >&2
report robust_learner,selection,fraction
