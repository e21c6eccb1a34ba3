#!/usr/bin/env bash
# Every test jaxmg has that runs without a GPU: installs the package and its test tools into
# a virtual environment, builds and runs the C unit tests (under ASan/UBSan, then TSan), the
# CUDA backend against its host-memory mock, then the Python tests on virtual CPU devices.
# GPU tests (tests/gpu) skip themselves when no GPU is present. Each phase prints its time.
#
#   bash tests/run_all.sh [pytest arguments]
#
# Environment:
#   PYTHON              the interpreter the environment is made from (default python3)
#   JAXMG_TEST_VENV     the environment: default the active one ($VIRTUAL_ENV) or else
#                       build/venv-<python version> (created on first use); "none" installs
#                       into $PYTHON itself
#   JAXMG_TEST_REQS     what is installed besides jaxmg (default: the newest jax and NetKet,
#                       an optional test dependency: tests/python/test_netket.py)
#   JAXMG_TEST_PHASES   which phases run (default "c mock python")
#   JAXMG_TEST_PATHS    what pytest runs (default "tests/python tests/gpu")
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${JAXMG_TEST_VENV:-${VIRTUAL_ENV:-build/venv-$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')}}
REQS=${JAXMG_TEST_REQS:-jax>=0.10.2 netket}
PHASES=" ${JAXMG_TEST_PHASES:-c mock python} "
PIP_Q=(-q --disable-pip-version-check)
t_start=$(date +%s)
phase() {
  local name=$1 t0
  shift
  t0=$(date +%s)
  echo "=== $name"
  "$@"
  echo "=== $name: done in $(( $(date +%s) - t0 )) s (total $(( $(date +%s) - t_start )) s)"
}
wants() { [[ "$PHASES" == *" $1 "* ]]; }

setup() {
  if [ "$VENV" != none ]; then
    [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
    PY=$VENV/bin/python
  fi
  # shellcheck disable=SC2086  # REQS is a list of requirements
  "$PY" -m pip install "${PIP_Q[@]}" "scikit-build-core>=0.10" scipy numpy pytest hypothesis $REQS
  "$PY" -m pip install "${PIP_Q[@]}" --no-build-isolation .
  "$PY" -c 'import sys, jax, jaxmg; print("python", sys.version.split()[0], "| jax", jax.__version__, "| jaxmg", jaxmg.__version__, "from", jaxmg.__file__)'
}

c_tests() {
  local inc
  inc=$("$PY" -c 'import jaxlib, os; print(os.path.join(os.path.dirname(jaxlib.__file__), "include"))')
  mkdir -p build
  cmake -S . -B build/ctest -DJAXMG_BUILD_TESTS=ON -DJAXMG_SANITIZE=ON -DJAXMG_CUDA=OFF \
    -DCMAKE_BUILD_TYPE=Debug -DJAXMG_FFI_INCLUDE="$inc" > build/ctest.log
  cmake --build build/ctest -j 2 >> build/ctest.log
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ./build/ctest/jaxmg_c_tests
  # The same tests under ThreadSanitizer: the only build that sees data races between the
  # per-device threads of one call.
  cmake -S . -B build/ctest-tsan -DJAXMG_BUILD_TESTS=ON -DJAXMG_SANITIZE_THREAD=ON \
    -DJAXMG_CUDA=OFF -DCMAKE_BUILD_TYPE=Debug -DJAXMG_FFI_INCLUDE="$inc" > build/ctest-tsan.log
  cmake --build build/ctest-tsan -j 2 >> build/ctest-tsan.log
  TSAN_OPTIONS=halt_on_error=1 ./build/ctest-tsan/jaxmg_c_tests
}

# The CUDA backend's orchestration against a host-memory stand-in of CUDA/cuSOLVERMg
# (needs only the toolkit's headers).
mock_tests() {
  if [ -f "${CUDA_INC:-/usr/local/cuda/include}/cusolverMg.h" ]; then
    PYTHON="$PY" bash tests/gpu/mock/run_mock.sh build/mock
  else
    echo "no CUDA toolkit headers (cusolverMg.h): the mock tests need them and do not run"
  fi
}

python_tests() {
  # shellcheck disable=SC2086  # JAXMG_TEST_PATHS is a list of paths
  "$PY" -m pytest -q ${JAXMG_TEST_PATHS:-tests/python tests/gpu} "$@"
}

phase "environment ($VENV)" setup
if wants c; then phase "C unit tests (ASan/UBSan, TSan)" c_tests; fi
if wants mock; then phase "CUDA backend on the host-memory mock" mock_tests; fi
if wants python; then phase "Python tests" python_tests "$@"; fi
echo "=== all phases passed in $(( $(date +%s) - t_start )) s"
