#!/usr/bin/env bash
# The one command for the GPU machine (see benchmarks/README.md, "GPU"): carry .whl, then
#   bash benchmarks/gpu/run.sh            (timeout_s 600; the benchmark itself stops by ~7.5 min)
# Installs the carried wheels, prints the machine, runs bench_gpu.py; results.json, bench.log
# (the children's output) and run.log land in $OUT. BENCH_ARGS=--dry-run tries it on a CPU.
set -uo pipefail
OUT=${OUT:-/tmp/gpu-out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false TQDM_DISABLE=1
{
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || echo "WARNING: wheel install failed (TRL side will fail)"
  export PYTHONPATH=$PWD/src:/tmp/site
  nvidia-smi
  python3 -c 'import sys, torch; print(sys.version); print("torch", torch.__version__, "cuda",
torch.version.cuda, torch.cuda.get_device_name(0) if torch.cuda.is_available() else "NO GPU")'
  python3 -m pip list 2>/dev/null | grep -iE \
    '^(transformers|peft|accelerate|trl|datasets|pyarrow|fsspec|huggingface.hub|tokenizers|dill|multiprocess) '
  python3 -c 'import trl, datasets; print("trl", trl.__version__, "datasets", datasets.__version__)'
  if [[ -z "${SKIP_TESTS:-}" ]]; then  # the gpu tier of the test suite (Liger vs PyTorch included)
    timeout 150 python3 -m pytest -q -p no:cacheprovider -o addopts= -m gpu \
      tests/integration/test_gpu.py 2>&1 | tail -15
  fi
  timeout 560 python3 benchmarks/gpu/bench_gpu.py --out "$OUT" --budget "${BUDGET:-430}" ${BENCH_ARGS:-}
  echo "bench exit $?"
  nvidia-smi --query-gpu=memory.used,clocks.sm --format=csv
} 2>&1 | tee "$OUT/run.log"
