#!/usr/bin/env bash
# The GPU checks, in one go (a few minutes on an H100/H200): the fast-path tests, CUDA-graph tests
# included, then example 2 through the trainer's CUDA graph vs its eager steps vs hand-written eager
# and CUDA-graph loops (and through the service when its wheels are there). Paste the output into
# bench/RESULTS.md. Without a GPU the CUDA tests skip and the benchmark runs its CPU rows, shortened.
#
# On the CPU machine first: ../shared/device/fetch-wheels   (fills .whl/; carry it to the GPU machine)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] && [ -z "${PYTHON:-}" ] && PY=.venv/bin/python
if [ -d .whl ] && ! "$PY" -c "import fastapi, sqlalchemy, pydantic_settings" 2>/dev/null; then
    site=$(mktemp -d)
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" .whl/*.whl
    export PYTHONPATH="$PWD:$site"
fi
export PYTHONUNBUFFERED=1
if "$PY" -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then
    "$PY" -c "import torch; print(torch.__version__, torch.cuda.get_device_name())"
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
    scale=1.0
else
    echo "no CUDA GPU: CUDA tests skip, benchmark rows on the CPU at 2% of the epochs"
    scale=0.02
fi
"$PY" -m pytest -q -p no:cacheprovider tests/workers/test_fast_path.py
"$PY" -m bench.gpu_training --epochs-scale "$scale"
if [ "$scale" = "1.0" ]; then
    "$PY" -m bench.sweeps --epochs 2000 --sizes 64 --batched-only 1024
    # adaptive search (asha, pbt, tpe, random) vs Ray Tune ASHA and Optuna TPE + Hyperband, on the GPU
    "$PY" -m bench.search --trials 81 --epochs 1000 --device cuda
fi
