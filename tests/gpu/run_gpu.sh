#!/usr/bin/env bash
# GPU test run, meant for one command on the GPU machine (under 10 minutes on 2 H200):
#
#   bash tests/gpu/run_gpu.sh "$OUT/gpu.log" [extra pytest arguments]
#
# Builds and installs jaxmg from this checkout (no package index: --no-build-isolation
# --no-deps; needs cmake, ninja, scikit-build-core, jax/jaxlib with CUDA and the CUDA
# toolkit with cuSOLVERMg), prints the machine and versions, then runs tests/gpu on 1 GPU
# (CUDA_VISIBLE_DEVICES=0) and on 2 (0,1). Everything goes to the log given as $1 (default
# ./gpu_tests.log) and to stdout. Each stage has a time limit so a hang still leaves a log;
# the exit status is non-zero when any stage failed. JAXMG_INSTALLED=1 skips the build and
# tests the jaxmg already installed (e.g. a wheel from tools/build_wheel.sh, installed with
# --no-deps). Stage limits (seconds): JAXMG_BUILD_S (default 150) and JAXMG_STAGE_S per test
# run (default 210); the build log is written next to the test log. JAXMG_GPU_SETS (default
# "0 0,1") lists the CUDA_VISIBLE_DEVICES values to run, e.g. JAXMG_GPU_SETS=0,1 for the
# 2-GPU run alone; extra arguments go to pytest (e.g. -k potri).
set -uo pipefail
LOG=${1:-gpu_tests.log}
shift || true
mkdir -p "$(dirname "$LOG")"
LOG="$(cd "$(dirname "$LOG")" && pwd)/$(basename "$LOG")"
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python3}
# Rendezvous waits give up after 120 s instead of 300 s: a bug fails fast instead of hanging.
export JAXMG_TIMEOUT=${JAXMG_TIMEOUT:-120}
BUILD_LOG="$(dirname "$LOG")/build_install.log"
status=0

{
  echo "=== jaxmg GPU tests, $(date -u +%Y-%m-%dT%H:%M:%SZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
  nvidia-smi --query-gpu=index,name,memory.total,driver_version --format=csv 2>&1 || true
  nvidia-smi topo -m 2>&1 | head -20 || true
  "$PY" -c 'import sys, jax, jaxlib; print("python", sys.version.split()[0], "| jax", jax.__version__, "| jaxlib", jaxlib.__version__); print("devices", jax.devices())' 2>&1
  ls /usr/local/cuda/lib64/libcusolverMg.so* 2>&1 | head -3
  command -v nvcc >/dev/null && nvcc --version | tail -1

  if [ "${JAXMG_INSTALLED:-0}" = 1 ]; then
    echo "=== JAXMG_INSTALLED=1: the jaxmg already installed is tested (no build)"
  else
    echo "=== build + install"
    t0=$(date +%s)
    if ! timeout "${JAXMG_BUILD_S:-150}" "$PY" -m pip install --no-build-isolation --no-deps -v . > "$BUILD_LOG" 2>&1; then
      echo "BUILD/INSTALL FAILED (last lines of $BUILD_LOG):"
      tail -60 "$BUILD_LOG"
      exit 1
    fi
    grep -E "warning|jaxmg:|Linking" "$BUILD_LOG" | head -20
    echo "build + install took $(( $(date +%s) - t0 )) s"
  fi
  # Import the installed package, not the source tree.
  (cd / && "$PY" -c 'import jaxmg, os; d = os.path.dirname(jaxmg.__file__); print("installed:", d, sorted(f for f in os.listdir(d) if f.endswith(".so")))') || status=1

  # Alone on GPU 0, in fresh processes with JAX's default memory settings (a pytest process
  # would already hold 75 % of the GPU).
  echo "=== jaxmg after a native op of the same size (tests/gpu/after_native.py)"
  for engine in one_device mg; do
    env -u XLA_PYTHON_CLIENT_PREALLOCATE -u XLA_PYTHON_CLIENT_MEM_FRACTION CUDA_VISIBLE_DEVICES=0 \
      timeout 300 "$PY" tests/gpu/after_native.py "$engine" || { echo "FAILED: after_native.py $engine"; status=1; }
  done
  for visible in ${JAXMG_GPU_SETS:-0 0,1}; do
    echo "=== tests/gpu with CUDA_VISIBLE_DEVICES=$visible"
    t0=$(date +%s)
    # -v: one line per test as it finishes, so a run cut by the stage limit still shows
    # how far it got.
    CUDA_VISIBLE_DEVICES=$visible timeout "${JAXMG_STAGE_S:-210}" "$PY" -m pytest tests/gpu \
      -p no:cacheprovider -v --tb=short -rfEs --durations=15 "$@"
    rc=$?
    echo "=== exit status $rc after $(( $(date +%s) - t0 )) s (CUDA_VISIBLE_DEVICES=$visible; 124 = stage time limit)"
    [ $rc -ne 0 ] && status=1
  done
  echo "=== overall status $status"
  exit $status
} 2>&1 | tee "$LOG"
exit "${PIPESTATUS[0]}"
