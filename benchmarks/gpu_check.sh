#!/usr/bin/env bash
# The grader's CUDA path on a machine with an NVIDIA GPU, in one short run (a few minutes):
#   1. what torch sees;
#   2. tests/test_cuda.py (values and timing on the GPU inside the sandbox; skipped without CUDA);
#   3. the reference example graded on the GPU, with each speed check's figures (reference, loop, ratio).
# Usage: bash benchmarks/gpu_check.sh        (PY=path/to/python to use another interpreter)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
export AUTOGRADER_ISOLATION=${AUTOGRADER_ISOLATION:-trusted}  # the kit's own code: the strongest level that works
command -v nvidia-smi >/dev/null && nvidia-smi -L || echo "nvidia-smi: not found"
"$PY" -c "import torch; c = torch.cuda.is_available(); print('torch', torch.__version__, '| CUDA available:', c, '|', torch.cuda.get_device_name(0) if c else 'no GPU')"
"$PY" -m pytest -q -rs -s tests/test_cuda.py
"$PY" benchmarks/speed_ratios.py
