#!/usr/bin/env bash
# CIFAR-10N with SOP+ (Prune4ReL settings): PreActResNet18, 10 warm-up epochs, 300 epochs,
# -rc 0.9 -rb 0.1 --lr-u 10, Prune4Rel with --tau 0.975 --eta 1, class-balanced budgets.
# Unlike the reference script, the noise list has no stray commas and --seed is passed.
#
#   DATA=~/data GPUS=0 SEEDS="0 1 2" bash scripts/cifar10n_sop.sh
set -euo pipefail

DATA=${DATA:-data}                      # holds cifar10/cifar-10-batches-py or cifar-10-batches-py
OUT=${OUT:-runs/cifar10n_sop}
SEEDS=${SEEDS:-"0 1 2"}
GPUS=${GPUS:-0}
EPOCH_SCALE=${EPOCH_SCALE:-1}
NOISE_TYPES=${NOISE_TYPES:-"real1 real2 real3 realW"}
FRACTIONS=${FRACTIONS:-"0.2 0.4 0.6 0.8"}
METHODS=${METHODS:-"Uniform SmallLoss Uncertainty Forgetting GraNd EL2N Moderate CCS Prune4Rel"}

source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

sweep --dataset CIFAR10 --data_path "$DATA" --n-class 10 --model PreActResNet18 \
  --robust-learner SOP -rc 0.9 -rb 0.1 --lr-u 10 \
  -se "$(scaled 10)" --epochs "$(scaled 300)" \
  --uncertainty LeastConfidence --tau 0.975 --eta 1 --balance True
report
