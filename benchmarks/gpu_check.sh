#!/usr/bin/env bash
# The GPU check of `nmt train` (about 7 minutes on one H200, data preparation included):
# transformer_big, bf16, batches of about 25,000 tokens, 6 per update (the preset's --update-freq), 300 updates on
# synthetic data.
# Prints target tokens/s, MFU against the GPU's measured bf16 matmul peak, peak memory, and decoding sentences/s
# (beam 4, bf16, 500 sentences; and with a constraint per sentence, against it); writes them to
# $OUT/gpu_check.json (OUT defaults to /tmp/gpu-check). Extra arguments go to benchmarks/gpu_check.py.
#
#   bash benchmarks/gpu_check.sh                      # on the GPU machine, from the repository root
#   bash benchmarks/gpu_check.sh --updates 500        # longer
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
exec python3 benchmarks/gpu_check.py --out "${OUT:-/tmp/gpu-check}" "$@"
