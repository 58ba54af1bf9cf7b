#!/usr/bin/env bash
# One command for a short loan of one GPU: checks, throughput/MFU, a timed training run.
#   bash bench/gpu_run.sh [--preset gauss8|beta8|sergio|universal_vae|gauss8_cpu|beta8_cpu] [--minutes 5] [--batch 1024|auto] [--init DIR] [--out DIR]
#   bash bench/gpu_run.sh --dry-run --out /tmp/gpu_dry    # every stage at toy size on CPU, seconds
# Output goes to --out, else $OUT; stdout and stderr are also copied to OUT/gpu_run.log.
# Python: the repository's .venv when there is one, else python3 with the repository on PYTHONPATH
# (the GPU machine has torch, numpy, scipy, pyarrow, safetensors, pyyaml... but no Ray, no W&B, no .venv).
# Arguments: bench/gpu_run.py --help.
set -uo pipefail
cd "$(dirname "$0")/.."
if [ -n "${PYTHON:-}" ]; then py=$PYTHON
elif [ -x .venv/bin/python ]; then py=.venv/bin/python
else py=python3
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1

out=${OUT:-}
prev=""
for arg in "$@"; do
  [ "$prev" = "--out" ] && out=$arg
  case "$arg" in --out=*) out=${arg#--out=} ;; esac
  prev=$arg
done
if [ -z "$out" ]; then exec "$py" bench/gpu_run.py "$@"; fi
mkdir -p "$out"
"$py" bench/gpu_run.py "$@" 2>&1 | tee "$out/gpu_run.log"
