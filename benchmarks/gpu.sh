#!/usr/bin/env bash
# The GPU checks of issue 11, in one run of under 5 minutes on a machine with a CUDA device:
#   1. the GPU tests (pytest -m gpu);
#   2. opu-sim frames per second at d = 10^3 -> D = 10^6 with the full camera model (target >= 2000 frames/s);
#   3. the training-step ratios of benchmarks/step.py on the GPU (target: DFA opu-sim <= 1.2 x DFA digital).
# Usage: benchmarks/gpu.sh [--dry]
#   --dry: the same steps on the CPU at tiny sizes (GPU tests only collected); `make test` runs this so the script
#          cannot rot. PY selects the interpreter (default .venv/bin/python).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
if [[ "${1:-}" == "--dry" ]]; then
    echo "== gpu.sh --dry: GPU tests (collected only)"
    "$PY" -m pytest -q --collect-only -m gpu -p no:cacheprovider tests/sim tests/test_opu_projector.py | tail -1
    echo "== opu-sim frames per second (CPU, tiny)"
    "$PY" -m benchmarks.gpu --dry --rounds 1
    echo "== step ratios (CPU, one round of one step)"
    "$PY" -m benchmarks.step --rounds 1 --repeats 1 --threads 1
    exit 0
fi
"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'gpu.sh: no CUDA device (torch.cuda.is_available() is False); run with --dry')"
echo "== GPU tests"
timeout 150 "$PY" -m pytest -q -m gpu -p no:cacheprovider tests
echo "== opu-sim frames per second"
timeout 150 "$PY" -m benchmarks.gpu --torch-device cuda
echo "== step ratios on the GPU"
timeout 90 "$PY" -m benchmarks.step --torch-device cuda --rounds 3 --repeats 10
