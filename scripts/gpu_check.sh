#!/usr/bin/env bash
# On a CUDA machine, in one go: the CUDA tests, the training-step benchmark on the GPU, then training runs side by
# side, one process per run, for at most MINUTES minutes. Finished runs become artifacts under results/<experiment>/
# <profile>/; unfinished ones leave checkpoints under results/runs/<experiment>/<profile>/ that the same command
# continues from later (here or on a CPU).
#   bash scripts/gpu_check.sh                         (python3 with torch; MNIST in data/mnist or data/mnist-gz)
#   MINUTES=30 CELLS="R-cnn R-st-cnn-affine" bash scripts/gpu_check.sh      (Table 1 cells of PROFILE, seeds SEEDS)
#   PROFILE=adam SEEDS="0 1 2" TESTS=0 BENCH=0 bash scripts/gpu_check.sh
#   RUNS="table1:paper:0:R-cnn table1:adam:1:RTS-st-cnn-affine addition:fast:1:2st-fcn-affine" bash scripts/gpu_check.sh
#                                                     (any runs, as experiment:profile:seed:cell)
# The processes run under CUDA MPS (one shared GPU context, so small models' kernels overlap; MPS=0 to run without
# it); where the MPS daemon does not start or does not answer, they run without it, and then RUNS_NO_MPS (when set)
# replaces RUNS: without MPS the processes take turns on the GPU, so fewer of them get further.
# The CUDA tests run beside the training processes. What the runs wrote is packed, one archive per experiment,
# profile and seed, into $OUT (default _build/gpu), with the logs in logs.tar.gz.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
OUT=${OUT:-_build/gpu}
MINUTES=${MINUTES:-6}
CELLS=${CELLS:-"R-cnn R-st-cnn-affine RTS-cnn RTS-st-cnn-affine R-st-cnn-projective RTS-st-cnn-projective"}
PROFILE=${PROFILE:-paper}
DEVICE=${DEVICE:-cuda}  # DEVICE=cpu tries the script itself on a machine without a GPU (BENCH=0 there)
SEEDS=${SEEDS:-0}
if [ -z "${RUNS:-}" ]; then
  RUNS=""
  for seed in $SEEDS; do for cell in $CELLS; do RUNS="$RUNS table1:$PROFILE:$seed:$cell"; done; done
fi
for run in $RUNS ${RUNS_NO_MPS:-}; do
  IFS=: read -r exp prof seed cell <<< "$run"
  if [ -z "$cell" ]; then echo "gpu_check.sh: a run is experiment:profile:seed:cell, got '$run'" >&2; exit 2; fi
done
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
if [ "$DEVICE" != cpu ]; then
  "$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(0))' \
    || { echo "gpu_check.sh: torch sees no CUDA device (DEVICE=cpu tries the script on the CPU)" >&2; exit 1; }
fi

mps=0
if [ "${MPS:-1}" = 1 ] && [ "$DEVICE" != cpu ]; then
  if command -v nvidia-cuda-mps-control > /dev/null && nvidia-cuda-mps-control -d; then
    if timeout 60 "$PY" -c 'import torch; assert float(torch.ones(1000, device="cuda").sum()) == 1000' ; then
      mps=1; stamp "CUDA MPS daemon started; the runs share one GPU context"
    else
      echo quit | timeout 20 nvidia-cuda-mps-control; stamp "CUDA MPS did not answer: stopped, running without it"
    fi
  else
    stamp "no CUDA MPS on this machine: running without it"
  fi
fi
echo "mps=$mps" >> "$OUT/gpu.txt"
[ "$mps" = 0 ] && [ -n "${RUNS_NO_MPS:-}" ] && RUNS=$RUNS_NO_MPS

if [ "${BENCH:-1}" = 1 ]; then
  stamp "benchmarks on the GPU: sampler, training step of every model, ST overhead, breakdown"
  "$PY" -m stnbook.cost.bench all --device cuda --rounds 5 --no-compile --out "$OUT" 2>&1 | grep -v -i warn | tail -40
fi

stamp "$(echo $RUNS | wc -w) runs, one process each, at most $MINUTES min:$RUNS"
pids=()
for run in $RUNS; do
  IFS=: read -r exp prof seed cell <<< "$run"
  "$PY" -m stnbook run "$exp" --profile "$prof" --seed "$seed" --cells "$cell" --max-minutes "$MINUTES" --quiet \
    --device "$DEVICE" --threads "${THREADS:-1}" \
    > "$OUT/logs/$exp-$prof-$cell-seed$seed.log" 2>&1 &
  pids+=($!)
done
tests_pid=""
if [ "${TESTS:-1}" = 1 ]; then
  stamp "CUDA tests, beside the runs"
  "$PY" -m pytest -q -p no:cacheprovider -o addopts="" tests/test_cuda.py > "$OUT/logs/cuda-tests.log" 2>&1 &
  tests_pid=$!
fi
sleep 60
stamp "after a minute:"
nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader 2>/dev/null
if [ -n "$tests_pid" ]; then wait "$tests_pid"; stamp "CUDA tests (exit $?):"; tail -15 "$OUT/logs/cuda-tests.log"; fi
# A run stops itself after MINUTES of training (checkpointed); the analysis of a finished cell follows. Whatever
# still runs two minutes later is stopped (its last checkpoint stays).
deadline=$(( $(date +%s) + ${MINUTES%.*} * 60 + 150 ))
for p in "${pids[@]}"; do
  while kill -0 "$p" 2> /dev/null && [ "$(date +%s)" -lt "$deadline" ]; do sleep 2; done
  kill -0 "$p" 2> /dev/null && { stamp "stopping process $p (past the deadline)"; kill "$p"; }
  wait "$p"
done
[ "$mps" = 1 ] && { echo quit | timeout 20 nvidia-cuda-mps-control; }
stamp "runs:"
for run in $RUNS; do
  IFS=: read -r exp prof seed cell <<< "$run"
  echo "$exp $prof seed $seed $cell: $(tail -1 "$OUT/logs/$exp-$prof-$cell-seed$seed.log")"
  "$PY" -m stnbook status "$exp" --profile "$prof" --seed "$seed" --cells "$cell" | grep -v "^$exp /" \
    | tee -a "$OUT/status.txt"
done
# One archive per experiment, profile and seed (each stays small enough to copy back on its own).
for key in $(for run in $RUNS; do echo "${run%:*}"; done | sort -u); do
  IFS=: read -r exp prof seed <<< "$key"
  paths=()
  for run in $RUNS; do
    IFS=: read -r e p s cell <<< "$run"
    [ "$e:$p:$s" = "$key" ] || continue
    sub=$cell; [ "$seed" = 0 ] || sub=$cell/seed$seed
    for d in results/"$exp"/"$prof"/"$sub" results/runs/"$exp"/"$prof"/"$sub"; do [ -d "$d" ] && paths+=("$d"); done
  done
  [ ${#paths[@]} -gt 0 ] && tar czf "$OUT/$exp-$prof-seed$seed.tar.gz" --exclude=lock "${paths[@]}"
done
tar czf "$OUT/logs.tar.gz" "$OUT/logs" "$OUT"/*.json "$OUT"/*.txt 2>/dev/null
ls -la "$OUT"
stamp "packed into $OUT"
