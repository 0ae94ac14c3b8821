#!/usr/bin/env bash
# CIFAR-100N with SOP+ as the Prune4ReL paper ran it (the reference's scripts/sop_CF100.sh):
# --protocol reference, PreActResNet18, 30 warm-up epochs on a cosine schedule sized on the
# 300-epoch run, 300 epochs, -rc 0.9 -rb 0.1 --lr-u 1, fractions 0.2-0.8, Prune4Rel with
# --uncertainty LeastConfidence --tau 0.95 --eta 1 on the strong-view signals; --balance True
# only where the reference's --balance worked (BALANCE_METHODS; see cifar10n_sop.sh).
# Still differs from the paper: PreActResNet18 and the SOP+ strong view are those of
# deep_core.nets and deep_core.augment (the README says how close they are).
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
METHODS=${METHODS:-"Uniform Uncertainty kCenterGreedy Forgetting GraNd Glister Moderate SmallLoss Prune4Rel"}
BALANCE_METHODS=${BALANCE_METHODS:-"Prune4Rel Forgetting Glister"}

source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

sweep --protocol reference --dataset CIFAR100 --data_path "$DATA" --n-class 100 \
  --model PreActResNet18 --robust-learner SOP -rc 0.9 -rb 0.1 --lr-u 1 \
  -se "$(scaled 30)" --epochs "$(scaled 300)" \
  --uncertainty LeastConfidence --tau 0.95 --eta 1 --save-log True
report
