#!/usr/bin/env bash
# On a CUDA machine, in one go: the CUDA tests, the training-step benchmark on the GPU, then Table 1 cells of
# PROFILE (default paper: 150,000 SGD steps at batch 256, 150k parameters) trained side by side, one process per
# cell and seed, for at most MINUTES minutes. Finished cells become artifacts under results/table1/<profile>/;
# unfinished ones leave checkpoints under results/runs/table1/<profile>/ that the same command continues from later.
#   bash scripts/gpu_check.sh                         (python3 with torch; MNIST in data/mnist)
#   MINUTES=30 CELLS="R-cnn R-st-cnn-affine" bash scripts/gpu_check.sh
#   PROFILE=adam SEEDS="0 1 2" TESTS=0 BENCH=0 bash scripts/gpu_check.sh   (another profile; one process per cell and seed)
# Everything it writes is also packed into $OUT/gpu-results.tar.gz (OUT defaults to _build/gpu).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
OUT=${OUT:-_build/gpu}
MINUTES=${MINUTES:-6}
CELLS=${CELLS:-"R-cnn R-st-cnn-affine RTS-cnn RTS-st-cnn-affine R-st-cnn-projective RTS-st-cnn-projective"}
PROFILE=${PROFILE:-paper}
SEEDS=${SEEDS:-0}
export PYTHONUNBUFFERED=1
mkdir -p "$OUT/logs"
t0=$(date +%s)
stamp() { echo "[$(( $(date +%s) - t0 )) s] $*"; }

# MNIST: the raw files, or their gzipped copies in data/mnist-gz (smaller to carry to a remote machine)
if [ ! -f data/mnist/train-images-idx3-ubyte ] && [ -d data/mnist-gz ]; then
  mkdir -p data/mnist
  for f in data/mnist-gz/*.gz; do gunzip -c "$f" > "data/mnist/$(basename "$f" .gz)"; done
fi
"$PY" -m stnlib.data verify mnist --root data || { echo "gpu_check.sh: MNIST missing or corrupt in data/mnist" >&2; exit 1; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | tee "$OUT/gpu.txt"
"$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(0))'

if [ "${TESTS:-1}" = 1 ]; then stamp "CUDA tests"
"$PY" -m pytest -q -p no:cacheprovider -o addopts="" tests/test_cuda.py 2>&1 | tee "$OUT/logs/cuda-tests.log" | tail -15
fi

if [ "${BENCH:-1}" = 1 ]; then
  stamp "benchmarks on the GPU: sampler, training step of every model, ST overhead, breakdown"
  "$PY" -m stnbook.cost.bench all --device cuda --rounds 5 --no-compile --out "$OUT" 2>&1 | grep -v -i warn | tail -40
fi

stamp "$PROFILE-profile cells, seeds $SEEDS, one process each, at most $MINUTES min: $CELLS"
pids=()
for seed in $SEEDS; do
  for cell in $CELLS; do
    "$PY" -m stnbook run table1 --profile "$PROFILE" --seed "$seed" --cells "$cell" --max-minutes "$MINUTES" --quiet \
      > "$OUT/logs/$cell-seed$seed.log" 2>&1 &
    pids+=($!)
  done
done
sleep 60
stamp "after a minute:"
nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader 2>/dev/null
for p in "${pids[@]}"; do wait "$p"; done
stamp "cells:"
for seed in $SEEDS; do
  for cell in $CELLS; do tail -1 "$OUT/logs/$cell-seed$seed.log"; done
  "$PY" -m stnbook status table1 --profile "$PROFILE" --seed "$seed" --cells $CELLS | tee -a "$OUT/status.txt"
done
tar czf "$OUT/gpu-results.tar.gz" $(ls -d results/table1/"$PROFILE"* results/runs/table1/"$PROFILE"* 2>/dev/null) \
  "$OUT/logs" "$OUT"/*.json "$OUT"/*.txt 2>/dev/null
stamp "packed $OUT/gpu-results.tar.gz"
