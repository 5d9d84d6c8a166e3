#!/usr/bin/env bash
# A GPU session for gpuivp in two prepared device commands (issue 20). A session has 15 minutes
# of device time, the machine's start (a few minutes) and idle time included, so the first
# command's steps are limited to 360 s in all and the second's to 180 s, each step under its
# own `timeout`, each command writing at most 6 files under $OUT (what comes back):
#
#   bash benchmarks/gpu_session.sh 1   # versions, smoke run, RK4 f32 2^20/2^23 against the
#                                      # CUDA C reference with the issue bound, cupy GPU tests,
#                                      # core cuda agreement tests
#   bash benchmarks/gpu_session.sh 2   # only while the machine is still warm: the adaptive
#                                      # cases (RK45/Tsit5, f32/f64) at 2^20 and 2^23, and the
#                                      # cuda backend's REFILL option A/B (gpu_smoke.py --refill)
#
# Then give the machine back. Diffrax/torchdiffeq, scale.py and the full GPU test matrix
# belong to a later session. What needs no GPU runs in CI instead (ptxas_report.py, the PTX
# of every fun: tests/test_cuda_*.py). Back here, merge the JSON into benchmarks/RESULTS.md:
#
#   python benchmarks/gpu.py --from-json OUT/rk4.json OUT/adaptive.json --markdown
#
# DRY=1 prints the plan (limit, name, files) instead of running it: tests/test_gpu_session.py
# checks the limits and file counts from it. Nothing is installed: the GPU image's numpy,
# numba-cuda, CuPy and pytest are used, with this checkout on PYTHONPATH.
set -uo pipefail
phase=${1:?"usage: gpu_session.sh 1|2"}
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu_out}
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 \
    NUMBA_CUDA_LOW_OCCUPANCY_WARNINGS=0
PY=${PYTHON:-python3}
PYTEST="$PY -m pytest -q -p no:cacheprovider -rs --durations=8"

step() {  # step LIMIT_S NAME FILES COMMAND...: run under a limit, log to $OUT/NAME.log
    local limit=$1 name=$2 files=$3
    shift 3
    if [ "${DRY:-0}" = 1 ]; then
        echo "step $limit $name $files $(type -t "$1")"  # the command: file, not function
        return
    fi
    local t0=$SECONDS
    timeout -k 5 "$limit" "$@" >"$OUT/$name.log" 2>&1
    local rc=$?
    echo "== $name: exit $rc$([ $rc = 124 ] && echo ' (time limit)') in $((SECONDS - t0)) s"
    tail -n 16 "$OUT/$name.log"
}

versions() {
    nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,memory.total --format=csv
    which nvcc ptxas cuobjdump nvdisasm
    $PY - <<'EOF'
from importlib import metadata
for d in ("numpy", "numba", "numba-cuda", "cuda-bindings", "cuda-core", "nvidia-nvjitlink",
          "nvidia-cuda-nvrtc", "cupy-cuda13x", "cupy-cuda12x", "pytest"):
    try:
        print(d, metadata.version(d))
    except metadata.PackageNotFoundError:
        print(d, "-")
from numba.cuda.cudadrv import nvvm
print("NVVM", nvvm.NVVM().get_version())
EOF
    $PY -m gpuivp info
}
export -f versions  # `timeout` runs commands, not functions: `bash -c versions` below
export PY

case $phase in
1)
    step 20 env 1 bash -c versions
    step 80 smoke 1 "$PY" benchmarks/gpu_smoke.py
    step 80 rk4 2 "$PY" benchmarks/gpu.py --cases RK4-f32 --sizes 20,23 --only cuda,reference \
        --repeats 3 --time-limit 40 --json "$OUT/rk4.json"
    step 60 cupy_tests 1 $PYTEST tests/gpu/test_gpu_cupy.py
    # The float64 agreement test compiles a kernel per problem and method (NVVM: 3-13 s
    # each): Lorenz with RK45 and Tsit5 only here; every other test of the file runs.
    step 120 cuda_tests 1 $PYTEST tests/gpu/test_gpu_agreement.py \
        -k "(lorenz and not DOP853) or not agrees_with_numba_and_scipy"
    ;;
2)
    # (gpu.py rewrites its JSON after every row: a time limit keeps the rows done.)
    step 140 adaptive 2 "$PY" benchmarks/gpu.py --cases RK45-f32,Tsit5-f32,RK45-f64,Tsit5-f64 \
        --sizes 20,23 --only cuda,cupy,reference --repeats 2 --time-limit 25 --no-bound \
        --json "$OUT/adaptive.json"
    # REFILL off/on, rho sorted/shuffled, 2^20 RK45 float32: decides its default.
    step 40 refill 1 "$PY" benchmarks/gpu_smoke.py --refill
    ;;
*)
    echo "unknown phase $phase (1 or 2)" >&2
    exit 2
    ;;
esac
