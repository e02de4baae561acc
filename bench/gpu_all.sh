#!/usr/bin/env bash
# Every GPU figure of bench/ in one go: about 6-8 minutes on an H200.
#
#   bash ../shared/tools/device-bundle.sh      # once, here: Ray/Optuna/MLflow wheels -> .devbundle/
#   # then on the GPU machine (device tool: run with carry [".devbundle"], timeout_s 600):
#   bash bench/gpu_all.sh
#
# JSON lines go to stdout and to $OUT/gpu.jsonl (/tmp/mixtune-bench-out/ when OUT is unset); each script's
# stderr to $OUT/gpu_all.log. Each script has its own time limit, so one that hangs cannot
# take the others' time. Without .devbundle the Ray figure (packed trials) is skipped.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-/tmp/mixtune-bench-out}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 RAY_AUTH_MODE=disabled PYTHONPATH=$PWD
if [ -f .devbundle/bundle.tar.xz ]; then
  mkdir -p /tmp/b /tmp/site && tar xJf .devbundle/bundle.tar.xz -C /tmp/b \
    && python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site /tmp/b/w/*.whl \
    && export PYTHONPATH=/tmp/site:$PWD
fi
nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.max.sm --format=csv,noheader >"$out/gpu_all.log" 2>&1

run() {  # run LIMIT_S script args...
  local limit=$1; shift
  echo "== $* (limit ${limit}s)" >&2
  timeout "$limit" python3 "$@" 2>>"$out/gpu_all.log" | tee -a "$out/gpu.jsonl"
  local rc=${PIPESTATUS[0]}
  [ "$rc" = 0 ] || echo "{\"figure\": \"error\", \"script\": \"$1\", \"rc\": $rc}" | tee -a "$out/gpu.jsonl"
}

run 90  bench/clustering.py --device cuda
run 160 bench/gpu_epoch.py
run 140 bench/core_epoch.py --device cuda
if python3 -c "import ray" 2>/dev/null; then
  run 100 bench/packed.py
else
  echo '{"figure": "packed_trials", "skipped": "Ray not importable: run ../shared/tools/device-bundle.sh first"}' | tee -a "$out/gpu.jsonl"
fi
