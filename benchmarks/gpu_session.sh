#!/usr/bin/env bash
# Everything issue 3 asks of a lent GPU, in two commands of under 10 minutes each (the
# device tool's limit; a session has 30 minutes of device time, the machine's start included).
# Run them back to back, from the repository root, on the GPU machine:
#
#   bash benchmarks/gpu_session.sh core      # info, GPU tests, ptxas, gpu.py f32 without Diffrax
#   bash benchmarks/gpu_session.sh compare   # gpu.py: Diffrax (2^20, 2^23), f64 cases; scale.py
#
# Each step has its own time limit (their sum stays under 570 s per phase) and writes its log
# and JSON under $OUT (default ./gpu_out); gpu.py rewrites its JSON after every row, so a
# step stopped by its limit keeps what it measured. Back here, merge the JSON into the
# tables of benchmarks/RESULTS.md:
#
#   python benchmarks/gpu.py --from-json OUT/f32.json OUT/compare.json OUT/f64.json --markdown
#
# Nothing is installed: the GPU image's numpy, numba-cuda, CuPy, JAX/Diffrax, torchdiffeq and
# pytest are used, with this checkout on PYTHONPATH.
set -uo pipefail
phase=${1:?"usage: gpu_session.sh core|compare"}
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu_out}
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
BENCH="$PY benchmarks/gpu.py --repeats 3 --time-limit 60"

step() {  # step LIMIT_S NAME TAIL_LINES COMMAND...: run with a limit, log to $OUT/NAME.log
    local limit=$1 name=$2 lines=$3
    shift 3
    local t0=$SECONDS
    timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
    local rc=$?
    echo "== $name: exit $rc$([ $rc = 124 ] && echo ' (time limit)') in $((SECONDS - t0)) s"
    tail -n "$lines" "$OUT/$name.log"
}

case $phase in
core)
    step 20 smi 3 nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,memory.total \
        --format=csv
    step 60 info 30 "$PY" -m gpuivp info
    step 200 gpu_tests 15 "$PY" -m pytest -q -m gpu tests/gpu -p no:cacheprovider -rs
    step 40 ptxas 20 "$PY" benchmarks/ptxas_report.py
    step 240 f32 25 $BENCH --cases RK4-f32,Tsit5-f32,RK45-f32 --sizes 10,14,18,20,22,23 \
        --only cuda,cupy,reference,torchdiffeq --json "$OUT/f32.json"
    ;;
compare)
    step 270 compare 20 $BENCH --cases RK4-f32,Tsit5-f32,RK45-f32,Tsit5-f64,RK45-f64 \
        --sizes 20,23 --only cuda,diffrax --no-bound --json "$OUT/compare.json"
    step 180 f64 20 $BENCH --cases Tsit5-f64,RK45-f64 --sizes 10,14,18,20,22,23 \
        --only cuda,cupy,reference --no-bound --json "$OUT/f64.json"
    step 100 scale 20 "$PY" benchmarks/scale.py --backend cuda --json "$OUT/scale.json"
    ;;
*)
    echo "unknown phase $phase (core or compare)" >&2
    exit 2
    ;;
esac
