#!/usr/bin/env bash
# Clothing-1M with DivideMix (Prune4ReL settings): ImageNet-pretrained ResNet50, 224-pixel
# crops, 1 warm-up epoch, 10 epochs, batch 32, lr 0.002, weight decay 1e-3, MultiStepLR,
# --lambda-u 0.1 --alpha 0.5, Prune4Rel with --tau 0.8 --eta 1, balanced, fractions
# 0.01-0.2. The clean validation set picks the best epoch, the clean test set is reported.
# The reference's MultiStepLR kept its default milestone (epoch 50) with 10 epochs, so
# its learning rate never decayed; here it decays x0.1 at half time (MILESTONE).
# Offline: put torchvision's ResNet-50 ImageNet weights in WEIGHTS (a state dict file);
# without it torchvision downloads them.
#
#   DATA=/data/clothing1m GPUS=0,1,2,3 WORKERS=8 bash scripts/clothing1m_dividemix.sh
set -euo pipefail

DATA=${DATA:-data/clothing1m}           # official lists + images/, or noisy_train.txt + clean_val.txt
OUT=${OUT:-runs/clothing1m_dividemix}
SEEDS=${SEEDS:-"0 1 2"}
GPUS=${GPUS:-0,1,2,3}
EPOCH_SCALE=${EPOCH_SCALE:-1}
NOISE_TYPES=${NOISE_TYPES:-real}
FRACTIONS=${FRACTIONS:-"0.01 0.05 0.1 0.2"}
METHODS=${METHODS:-"Uniform SmallLoss Uncertainty Forgetting GraNd EL2N Moderate Prune4Rel"}
WEIGHTS=${WEIGHTS:-}
WORKERS=${WORKERS:-8}

source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

if [ -n "$WEIGHTS" ]; then PRETRAINED=(--model-path "$WEIGHTS"); else PRETRAINED=(--pre-trained True); fi
MILESTONE=${MILESTONE:-$(scaled 5)}

sweep --dataset Clothing1M --data_path "$DATA" --n-class 14 --model ResNet50 "${PRETRAINED[@]}" \
  --image-size 224 --workers "$WORKERS" \
  --robust-learner DivideMix --lambda-u 0.1 --alpha 0.5 \
  -se "$(scaled 1)" --epochs "$(scaled 10)" --batch-size 32 --lr 0.002 -wd 1e-3 \
  --scheduler MultiStepLR --milestone "$MILESTONE" \
  --uncertainty LeastConfidence --tau 0.8 --eta 1 --balance True
report
