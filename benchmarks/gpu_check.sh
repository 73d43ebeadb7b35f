#!/usr/bin/env bash
# The GPU check, under 8 minutes on one GPU: the `gpu` tests, then benchmarks/gpu_check.py's table.
#   bash benchmarks/gpu_check.sh            (after: python3 -m venv .venv && .venv/bin/pip install -e ".[test]")
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'gpu_check: no CUDA device visible')" || exit 2
timeout 200 "$PY" -m pytest -m gpu -q -p no:cacheprovider tests/test_gpu.py
tests=$?
timeout 420 "$PY" benchmarks/gpu_check.py --budget 300
table=$?
echo "gpu tests exit $tests, table exit $table"
exit $(( tests || table ))
