#!/usr/bin/env bash
# CIFAR-100N with DivideMix (Prune4ReL settings): PreActResNet18, 30 warm-up epochs, 300
# epochs, --lambda-u 1, Prune4Rel with --tau 0.95 --eta 1, class-balanced budgets.
#
#   DATA=~/data GPUS=0 SEEDS="0 1 2" bash scripts/cifar100n_dividemix.sh
set -euo pipefail

DATA=${DATA:-data}
OUT=${OUT:-runs/cifar100n_dividemix}
SEEDS=${SEEDS:-"0 1 2"}
GPUS=${GPUS:-0}
EPOCH_SCALE=${EPOCH_SCALE:-1}
NOISE_TYPES=${NOISE_TYPES:-real}
FRACTIONS=${FRACTIONS:-"0.2 0.4 0.6 0.8"}
METHODS=${METHODS:-"Uniform SmallLoss Uncertainty Forgetting GraNd EL2N Moderate CCS Prune4Rel"}
LAMBDA_U=${LAMBDA_U:-1}

source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

sweep --dataset CIFAR100 --data_path "$DATA" --n-class 100 --model PreActResNet18 \
  --robust-learner DivideMix --lambda-u "$LAMBDA_U" \
  -se "$(scaled 30)" --epochs "$(scaled 300)" \
  --uncertainty LeastConfidence --tau 0.95 --eta 1 --balance True
report
