#!/usr/bin/env bash
# Download, here, the wheels of the pure-Python packages the GPU machine lacks into .whl/ at the
# repository root (ignored through .git/info/exclude), for `run` to carry (see benchmarks/README.md,
# "GPU"). The machine has torch 2.11, transformers 5.17, peft, accelerate, pyarrow, pandas, xxhash,
# fsspec... but not trl, datasets (and datasets' dill and multiprocess). Pins:
#   trl 1.16.0      medvl's GRPO needs trl>=1.16,<2; Requires-Dist transformers>=4.56.2,
#                   accelerate>=1.10.1, datasets>=4.7.0 (the machine has accelerate 1.15).
#   datasets 5.2.0  the version medvl's venv tests with; dill<0.4.2, multiprocess<0.70.20.
#   pydicom 3.0.2, nibabel 5.4.2   medvl's image loading imports them during SFT data preparation
#                   even for PNG records (seen in a dry run's sys.modules); nibabel needs only numpy,
#                   packaging, typing-extensions (there).
#   liger-kernel 0.8.5   the fused linear cross-entropy medvl's output layer uses on CUDA when it
#                   is importable (needs torch and triton: both on the machine); MEDVL_LIGER=0
#                   turns it off, which is how the benchmark compares the two paths.
#   pytest 8.x      to run tests/integration/test_gpu.py there (with pluggy, iniconfig).
# medvl's other pure-Python dependencies (fastapi, uvicorn, openai, nltk, rouge-score, ...) are
# imported lazily and the benchmark never reaches them (checked the same way), so they stay here.
set -euo pipefail
cd "$(git -C "$(dirname "$0")" rev-parse --show-toplevel)"
grep -qxF '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
PY=${PYTHON:-.venv/bin/python}
rm -rf .whl && mkdir -p .whl
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform any -d .whl \
  trl==1.16.0 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 \
  pydicom==3.0.2 nibabel==5.4.2 liger-kernel==0.8.5 \
  pytest==8.4.2 pluggy iniconfig pygments
ls -l .whl
du -sh .whl
