#!/usr/bin/env bash
# The GPU checks, in one go (under 10 minutes on an H100/H200): the fast-path and compiled-step tests, CUDA-graph
# tests included, a real CUDA out-of-memory error, then example 2 on each engine (eager steps, CUDA graph, compiled
# step captured in a CUDA graph) against hand-written loops, the hand-written compiled + graphed functional step
# first (the limit), and through the service with FITSERVE_COMPILE off and on (when its wheels are there); the
# 1,024-member sweep of the cubic MLP (2,000 epochs, 1,000 points) through the service with FITSERVE_COMPILE off
# and on. Paste the output into bench/RESULTS.md. Without a GPU the CUDA tests skip and the example 2 benchmark
# runs its CPU rows, shortened; the sweeps and the search need the GPU.
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
# each step has its own time limit, so one that runs long still leaves the others their turn (the GPU
# machine is lent for minutes); a step that runs out says so and the script goes on
step() {
    local limit=$1; shift
    echo; echo "### $* (limit ${limit}s)"; local t0=$SECONDS rc=0
    timeout "$limit" "$@" || rc=$?
    echo "### exit $rc after $((SECONDS - t0)) s"
}
step 90 "$PY" -m pytest -q -p no:cacheprovider tests/workers/engines/test_fast_path.py \
    tests/workers/engines/test_early_stopping.py tests/workers/engines/test_compiled.py -k "cuda or graph"
# out of memory for real: this process holds most of the GPU, a job fails naming cuda:0 and its estimate, the
# same worker trains the next (and the forced CPU case beside it)
step 90 "$PY" -m pytest -q -p no:cacheprovider tests/workers/test_devices.py -k out_of_memory
step 170 "$PY" -m bench.gpu_training --epochs-scale "$scale"
if [ "$scale" = "1.0" ]; then
    for mode in off on; do
        step 75 "$PY" -m bench.sweeps --epochs 2000 --sizes "" --batched-only 1024 --models "cubic MLP" --compile $mode
    done
    # adaptive search (asha, pbt, tpe, random) vs Optuna TPE + Hyperband (and Ray Tune ASHA where ray is
    # installed; its wheels are too large to carry to the GPU machine), every tool training on the GPU; last, as
    # the check the least about this GPU's limit
    step 90 "$PY" -m bench.search --trials 27 --epochs 300 --problems cubic --device cuda
fi
