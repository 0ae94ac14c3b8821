# Shared by the sweep scripts in this folder; each script sets its variables, then
# sources this file and calls `sweep` and `report`. Not meant to be run on its own.
#
# Variables read here (all may be set in the environment):
#   PYTHON       the interpreter with deep_core installed            (default: python)
#   GPUS         "0", "0,1,2,3" (the GPUs the sweep may use, one run per GPU at a time;
#                see GPUS_PER_RUN), "cpu", or "auto" (CUDA when available) (default: 0;
#                on a machine without a GPU set GPUS=cpu)
#   GPUS_PER_RUN GPUs per run (several: one DDP process per GPU via torch.distributed.run);
#                "all": every GPU in GPUS                            (default: 1)
#   CPUS_PER_RUN CPUs per run, also its OMP_NUM_THREADS              (default: 1)
#   EXTRA        more deepcore-run flags for every run, after the script's own (so they win),
#                e.g. EXTRA="--n-train 2000 --workers 4"
#   EPOCH_SCALE  multiplies every epoch count (-se, --epochs, --milestone), e.g. 0.1 for a
#                quick pass; results are then not the paper's         (default: 1)
#   JOBS         at most this many runs at a time        (default: as many as GPUS/CPUs hold)
#   ENGINE       ray or local (Ray tasks, or subprocesses of deepcore-sweep)
#                                                        (default: ray when installed)
#   ADDRESS      the Ray cluster to join, e.g. auto (default: a local Ray instance)
#   MAX_RETRIES  new attempts, each resuming from the checkpoint, for a failed run (default: 2)
#   OUT          folder of the run directories, the report and the plot
#   NOISE_TYPES FRACTIONS METHODS SEEDS   the sweep's grid axes (outer to inner)
#   BALANCE_METHODS  methods that get --balance True (the paper balanced only where the
#                reference's --balance worked)                       (default: none)

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON=${PYTHON:-python}
GPUS=${GPUS:-0}
EPOCH_SCALE=${EPOCH_SCALE:-1}
read -r -a EXTRA_FLAGS <<<"${EXTRA:-}"

# scaled N: round(N * EPOCH_SCALE), at least 1 unless N is 0.
scaled() {
  awk -v e="$1" -v s="$EPOCH_SCALE" 'BEGIN {
    if (s !~ /^[0-9]*\.?[0-9]+$/ || s <= 0) { print "EPOCH_SCALE must be a positive number" > "/dev/stderr"; exit 2 }
    if (e == 0) { print 0; exit }
    v = int(e * s + 0.5); print (v < 1 ? 1 : v) }'
}
scaled 1 >/dev/null  # fail fast on a bad EPOCH_SCALE (an error inside "$(scaled N)" would not stop us)

SWEEP_ARGS=(--cpus-per-run "${CPUS_PER_RUN:-1}" --max-retries "${MAX_RETRIES:-2}")
case "$GPUS" in
  cpu) SWEEP_ARGS+=(--gpus-per-run 0) ;;
  auto) ;;
  *)
    export CUDA_VISIBLE_DEVICES="$GPUS"
    per_run=${GPUS_PER_RUN:-1}
    if [ "$per_run" = all ]; then per_run=$(awk -F, '{print NF}' <<<"$GPUS"); fi
    SWEEP_ARGS+=(--gpus-per-run "$per_run")
    ;;
esac
if [ "$GPUS" != cpu ] && [ "$GPUS" != auto ] && ! command -v nvidia-smi >/dev/null; then
  echo "note: GPUS=$GPUS but no NVIDIA driver here (nvidia-smi not found); on a CPU-only" \
    "machine run with GPUS=cpu" >&2
fi
if [ -n "${JOBS:-}" ]; then SWEEP_ARGS+=(--jobs "$JOBS"); fi
if [ -n "${ENGINE:-}" ]; then SWEEP_ARGS+=(--engine "$ENGINE"); fi
if [ -n "${ADDRESS:-}" ]; then SWEEP_ARGS+=(--address "$ADDRESS"); fi

# yaml_list WORD...: the words as a YAML flow list of quoted strings.
yaml_list() {
  local w sep=""
  for w in "$@"; do printf '%s"%s"' "$sep" "$(sed 's/[\\"]/\\&/g' <<<"$w")"; sep=", "; done
}

n_sweeps=0
# sweep ARGS...: every run of NOISE_TYPES x FRACTIONS x METHODS x SEEDS (outer to inner)
# with ARGS, by deepcore-sweep; the grid is kept as $OUT/sweepN.yaml. Complete runs are
# skipped, interrupted ones resumed; a failed run is retried from its checkpoint
# MAX_RETRIES times, and if one still fails the script stops (set -e).
sweep() {
  local method grid
  n_sweeps=$((n_sweeps + 1))
  grid="$OUT/sweep$n_sweeps.yaml"
  mkdir -p "$OUT"
  {
    echo "grid:"
    echo "  noise-type: [$(yaml_list $NOISE_TYPES)]"
    echo "  fraction: [$(yaml_list $FRACTIONS)]"
    echo "  selection:"
    for method in $METHODS; do
      if [[ " ${BALANCE_METHODS:-} " == *" $method "* ]]; then
        echo "    - {selection: $(yaml_list "$method"), balance: true}"
      else
        echo "    - $(yaml_list "$method")"
      fi
    done
    echo "  seed: [$(yaml_list $SEEDS)]"
  } >"$grid"
  PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" -m deep_core.cli.sweep "$grid" \
    --out-dir "$OUT" "${SWEEP_ARGS[@]}" -- "$@" ${EXTRA_FLAGS[@]+"${EXTRA_FLAGS[@]}"}
}

# report [GROUP_BY]: the table ($OUT/report.md, also printed) and the plot ($OUT/report.png).
report() {
  local group_by=${1:-noise_type,selection,fraction}
  PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" -m deep_core.cli.report "$OUT" \
    --group-by "$group_by" --output "$OUT/report.md" --plot "$OUT/report.png"
  cat "$OUT/report.md"
}
