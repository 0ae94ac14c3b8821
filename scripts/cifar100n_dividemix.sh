#!/usr/bin/env bash
# CIFAR-100N with DivideMix as the Prune4ReL paper ran it (the reference's
# scripts/dividemix_CF100.sh): --protocol reference, PreActResNet18, 30 warm-up epochs on a
# cosine schedule sized on the 300-epoch run, 300 epochs, --lambda-u 1, fractions 0.2-0.8,
# Prune4Rel with --uncertainty LeastConfidence --tau 0.95 --eta 1 on the strong-view
# signals; --balance True only where the reference's --balance worked (see cifar10n_sop.sh).
# Still differs from the paper: DivideMix keeps the authors' 30-epoch CE warm-up and lambda-u
# ramp-up inside training, which the reference drops (--warmup-epochs 0 --reference-rampup
# True reproduce it); PreActResNet18 is deep_core.nets'.
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
METHODS=${METHODS:-"Uniform Uncertainty kCenterGreedy Forgetting GraNd Glister Moderate SmallLoss Prune4Rel"}
BALANCE_METHODS=${BALANCE_METHODS:-"Prune4Rel Forgetting Glister"}
LAMBDA_U=${LAMBDA_U:-1}

source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

sweep --protocol reference --dataset CIFAR100 --data_path "$DATA" --n-class 100 \
  --model PreActResNet18 --robust-learner DivideMix --lambda-u "$LAMBDA_U" \
  --warmup-epochs "$(scaled 30)" -se "$(scaled 30)" --epochs "$(scaled 300)" \
  --uncertainty LeastConfidence --tau 0.95 --eta 1 --save-log True
report
