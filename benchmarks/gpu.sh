#!/usr/bin/env bash
# GPU benchmark of the paper's architecture (random weights, no internet needed): under 8 minutes.
#   bash benchmarks/gpu.sh            # results printed and written to $OUT/gpu.json (default runs/gpu_bench)
#   bash benchmarks/gpu.sh --smoke    # a tiny CPU run of the same code
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
PYTHON="${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
# the script skips what is left after --budget-s (420 s); timeout is the hard stop at 8 minutes
exec timeout 470 "$PYTHON" benchmarks/gpu.py "$@"
