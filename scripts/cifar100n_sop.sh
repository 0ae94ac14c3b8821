#!/usr/bin/env bash
# CIFAR-100N with SOP+ (Prune4ReL settings): PreActResNet18, 30 warm-up epochs, 300 epochs,
# -rc 0.9 -rb 0.1 --lr-u 1, Prune4Rel with --tau 0.95 --eta 1, class-balanced budgets.
#
#   DATA=~/data GPUS=0 SEEDS="0 1 2" bash scripts/cifar100n_sop.sh
set -euo pipefail

DATA=${DATA:-data}                      # holds cifar100/cifar-100-python or cifar-100-python
OUT=${OUT:-runs/cifar100n_sop}
SEEDS=${SEEDS:-"0 1 2"}
GPUS=${GPUS:-0}
EPOCH_SCALE=${EPOCH_SCALE:-1}
NOISE_TYPES=${NOISE_TYPES:-real}
FRACTIONS=${FRACTIONS:-"0.2 0.4 0.6 0.8"}
METHODS=${METHODS:-"Uniform SmallLoss Uncertainty Forgetting GraNd EL2N Moderate CCS Prune4Rel"}

source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

sweep --dataset CIFAR100 --data_path "$DATA" --n-class 100 --model PreActResNet18 \
  --robust-learner SOP -rc 0.9 -rb 0.1 --lr-u 1 \
  -se "$(scaled 30)" --epochs "$(scaled 300)" \
  --uncertainty LeastConfidence --tau 0.95 --eta 1 --balance True
report
