# Shared by the sweep scripts in this folder; each script sets its variables, then
# sources this file and calls `sweep` and `report`. Not meant to be run on its own.
#
# Variables read here (all may be set in the environment):
#   PYTHON       the interpreter with deep_core installed            (default: python)
#   GPUS         "0", "0,1,2,3" (several: one DDP process per GPU via torch.distributed.run),
#                "cpu", or "auto" (CUDA when available)              (default: 0;
#                on a machine without a GPU set GPUS=cpu)
#   EXTRA        more deepcore-run flags for every run, after the script's own (so they win),
#                e.g. EXTRA="--n-train 2000 --workers 4"
#   EPOCH_SCALE  multiplies every epoch count (-se, --epochs, --milestone), e.g. 0.1 for a
#                quick pass; results are then not the paper's         (default: 1)
#   JOBS         runs at a time (default 1: one GPU, one run); with JOBS > 1 each run gets
#                OMP_NUM_THREADS=1 unless set, which suits small CPU runs (quickstart), and
#                each line of its log is prefixed with the run, e.g. "[sym SmallLoss fr0.5 s0]"
#   OUT          folder of the run directories, the report and the plot
#   NOISE_TYPES FRACTIONS METHODS SEEDS   the sweep's loops (outer to inner)
#   BALANCE_METHODS  methods that get --balance True (the paper balanced only where the
#                reference's --balance worked)                       (default: none)

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON=${PYTHON:-python}
GPUS=${GPUS:-0}
EPOCH_SCALE=${EPOCH_SCALE:-1}
JOBS=${JOBS:-1}
read -r -a EXTRA_FLAGS <<<"${EXTRA:-}"

# scaled N: round(N * EPOCH_SCALE), at least 1 unless N is 0.
scaled() {
  awk -v e="$1" -v s="$EPOCH_SCALE" 'BEGIN {
    if (s !~ /^[0-9]*\.?[0-9]+$/ || s <= 0) { print "EPOCH_SCALE must be a positive number" > "/dev/stderr"; exit 2 }
    if (e == 0) { print 0; exit }
    v = int(e * s + 0.5); print (v < 1 ? 1 : v) }'
}
scaled 1 >/dev/null  # fail fast on a bad EPOCH_SCALE (an error inside "$(scaled N)" would not stop us)

case "$GPUS" in
  cpu | auto)
    LAUNCH=("$PYTHON")
    DEVICE=("--device" "$GPUS")
    ;;
  *,*)
    export CUDA_VISIBLE_DEVICES="$GPUS"
    LAUNCH=("$PYTHON" -m torch.distributed.run --standalone
            --nproc_per_node "$(awk -F, '{print NF}' <<<"$GPUS")")
    DEVICE=("--device" "cuda")
    ;;
  *)
    export CUDA_VISIBLE_DEVICES="$GPUS"
    LAUNCH=("$PYTHON")
    DEVICE=("--device" "cuda:0")
    ;;
esac
if [ "$GPUS" != cpu ] && [ "$GPUS" != auto ] && ! command -v nvidia-smi >/dev/null; then
  echo "note: GPUS=$GPUS but no NVIDIA driver here (nvidia-smi not found); on a CPU-only" \
    "machine run with GPUS=cpu" >&2
fi

# run_one ARGS...: one run. A run whose summary.json exists is skipped and an
# interrupted one is resumed from its checkpoint, so a re-started sweep continues.
run_one() {
  "${LAUNCH[@]}" "$REPO/main_label_noise.py" "$@" "${DEVICE[@]}" --out-dir "$OUT" \
    --skip-complete True ${EXTRA_FLAGS[@]+"${EXTRA_FLAGS[@]}"}
}

# prefix TEXT: copy stdin to stderr, TEXT before every line (parallel runs stay readable).
prefix() {
  awk -v p="$1" '{ print p $0; fflush() }' >&2
}

if ! [[ "$JOBS" =~ ^[1-9][0-9]*$ ]]; then echo "JOBS must be a positive integer" >&2; exit 2; fi
if [ "$JOBS" -gt 1 ]; then
  export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
  trap 'kill $(jobs -p) 2>/dev/null || true' EXIT  # a failed run stops the others too
fi
running=0

# sweep ARGS...: run_one ARGS for every noise type, fraction, method and seed, JOBS at a
# time; the first failure stops the sweep (set -e).
sweep() {
  local noise fraction method seed
  local -a balance
  for noise in $NOISE_TYPES; do
    for fraction in $FRACTIONS; do
      for method in $METHODS; do
        balance=()
        if [[ " ${BALANCE_METHODS:-} " == *" $method "* ]]; then balance=(--balance True); fi
        for seed in $SEEDS; do
          echo "== $(basename "$0"): $method, fraction $fraction, noise $noise, seed $seed" >&2
          if [ "$JOBS" -eq 1 ]; then
            run_one "$@" ${balance[@]+"${balance[@]}"} --noise-type "$noise" \
              --fraction "$fraction" --selection "$method" --seed "$seed"
            continue
          fi
          if [ "$running" -ge "$JOBS" ]; then
            wait -n
            running=$((running - 1))
          fi
          run_one "$@" ${balance[@]+"${balance[@]}"} --noise-type "$noise" \
            --fraction "$fraction" --selection "$method" --seed "$seed" 2>&1 \
            | prefix "[$noise $method fr$fraction s$seed] " &
          running=$((running + 1))
        done
      done
    done
  done
  while [ "$running" -gt 0 ]; do
    wait -n
    running=$((running - 1))
  done
}

# report [GROUP_BY]: the table ($OUT/report.md, also printed) and the plot ($OUT/report.png).
report() {
  local group_by=${1:-noise_type,selection,fraction}
  PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" -m deep_core.cli.report "$OUT" \
    --group-by "$group_by" --output "$OUT/report.md" --plot "$OUT/report.png"
  cat "$OUT/report.md"
}
