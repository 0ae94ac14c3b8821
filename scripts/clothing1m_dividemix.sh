#!/usr/bin/env bash
# Clothing-1M with DivideMix as the Prune4ReL paper ran it (the reference's
# scripts/dividemix_c1m.sh): --protocol reference, ImageNet-pretrained ResNet50, 224-pixel
# crops, 1 selection warm-up epoch, 10 epochs, batch 32, lr 0.002, weight decay 1e-3,
# MultiStepLR (x0.1 at half time), --lambda-u 0.1 --alpha 0.5, fractions 0.01-0.2, Prune4Rel
# with --uncertainty LeastConfidence --tau 0.8 --eta 1 on the strong-view signals; --balance
# True only where the reference's --balance worked (see cifar10n_sop.sh). DivideMix itself
# warms up 1 epoch with the confidence penalty, as its authors train Clothing-1M. The clean
# validation set picks the best epoch, the clean test set is reported.
# Still differs from the paper: the reference loaded a warm-up saved by an earlier run
# (--pre-warmuped True; give one with --pre-warmuped True --pre-warmed-filename FILE) and its
# second network's MultiStepLR milestone (150) never fired; EPOCH_SCALE keeps at least
# 2 epochs so that DivideMix leaves its warm-up.
# Offline: put torchvision's ResNet-50 ImageNet weights in WEIGHTS (a state dict file);
# without it torchvision downloads them.
#
#   DATA=/data/clothing1m GPUS=0,1,2,3 WORKERS=8 bash scripts/clothing1m_dividemix.sh
set -euo pipefail

DATA=${DATA:-data/clothing1m}           # official lists + images/, or noisy_train.txt + clean_val.txt
OUT=${OUT:-runs/clothing1m_dividemix}
SEEDS=${SEEDS:-"0 1 2"}
GPUS=${GPUS:-0,1,2,3}
GPUS_PER_RUN=${GPUS_PER_RUN:-all}      # each run on every GPU in GPUS (DDP)
EPOCH_SCALE=${EPOCH_SCALE:-1}
NOISE_TYPES=${NOISE_TYPES:-real}
FRACTIONS=${FRACTIONS:-"0.01 0.05 0.1 0.2"}
METHODS=${METHODS:-"Uniform Uncertainty kCenterGreedy Forgetting GraNd Glister Moderate SmallLoss Prune4Rel"}
BALANCE_METHODS=${BALANCE_METHODS:-"Prune4Rel Forgetting Glister"}
WEIGHTS=${WEIGHTS:-}
WORKERS=${WORKERS:-8}

source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

if [ -n "$WEIGHTS" ]; then PRETRAINED=(--model-path "$WEIGHTS"); else PRETRAINED=(--pre-trained True); fi
EPOCHS=$(scaled 10)
if [ "$EPOCHS" -lt 2 ]; then EPOCHS=2; fi

sweep --protocol reference --dataset Clothing1M --data_path "$DATA" --n-class 14 \
  --model ResNet50 "${PRETRAINED[@]}" --resolution 224 --workers "$WORKERS" \
  --robust-learner DivideMix --lambda-u 0.1 --alpha 0.5 --warmup-epochs 1 \
  --confidence-penalty True -se "$(scaled 1)" --epochs "$EPOCHS" --batch-size 32 \
  --lr 0.002 -wd 1e-3 --scheduler MultiStepLR \
  --uncertainty LeastConfidence --tau 0.8 --eta 1 --save-log True
report
