#!/usr/bin/env bash
# GPU checks in under 5 minutes: the @pytest.mark.gpu tests, the training-step benchmark and the
# 1.7B mosi-preset step, on CUDA. Prints step time, peak GPU memory and tokens/s.
# Where no CUDA device is visible it says so and exits 0.
#   usage: benchmarks/gpu_check.sh            (PYTHON=/path/to/python to choose the interpreter)
set -uo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 TRANSFORMERS_VERBOSITY=error

if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    echo "gpu_check: no CUDA device visible here (torch.cuda.is_available() is False); nothing to check"
    exit 0
fi
"$PY" -c 'import torch; p = torch.cuda.get_device_properties(0); print(f"gpu_check: {p.name}, {p.total_memory / 2**30:.0f} GiB, torch {torch.__version__}, CUDA {torch.version.cuda}")'
status=0

echo "== 1. @pytest.mark.gpu tests (bf16 step, one-process NCCL DDP run)"
timeout 150 "$PY" -m pytest -q -s -m gpu tests/test_gpu.py -p no:cacheprovider 2>&1 | grep -v "^Writing model shards" || status=1

echo "== 2. training-step benchmark (benchmarks/bench_model.py: SIMS preset shape, batch 32)"
out="$(timeout 90 "$PY" benchmarks/bench_model.py --steps 5 --device cuda 2>&1)" || status=1
echo "$out"
# tokens/s from the mean step time: 32 clips x (39 text + 20 fusion) positions
echo "$out" | awk '/then mean/ { for (i = 1; i <= NF; i++) if ($i == "mean") { t = $(i + 1); printf "tokens/s (32 x 59 positions / mean step): %.0f\n", 32 * 59 / t } }'

echo "== 3. mosi preset on SmolLM2-1.7B shapes (random weights, bf16 LM), batch 4, with/without --checkpoint-layers"
timeout 120 "$PY" benchmarks/bench_scale.py --part model --device cuda --batch 4 2>&1 || status=1

[ "$status" -eq 0 ] && echo "gpu_check: all passed" || echo "gpu_check: something failed (see above)"
exit "$status"
