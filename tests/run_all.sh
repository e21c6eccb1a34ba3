#!/usr/bin/env bash
# Every test jaxmg has that runs without a GPU: installs the package and its test tools,
# builds and runs the C unit tests (under ASan/UBSan), then the Python tests on virtual CPU
# devices. GPU tests (tests/gpu) skip themselves when no GPU is present.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

# NetKet: an optional test dependency (tests/python/test_netket.py runs its drivers on jaxmg).
"$PY" -m pip install -q --disable-pip-version-check "scikit-build-core>=0.10" "jax>=0.10" scipy numpy pytest hypothesis netket
"$PY" -m pip install -q --disable-pip-version-check --no-build-isolation .

JAXLIB_INCLUDE=$("$PY" -c 'import jaxlib, os; print(os.path.join(os.path.dirname(jaxlib.__file__), "include"))')
cmake -S . -B build/ctest -DJAXMG_BUILD_TESTS=ON -DJAXMG_SANITIZE=ON -DJAXMG_CUDA=OFF \
  -DCMAKE_BUILD_TYPE=Debug -DJAXMG_FFI_INCLUDE="$JAXLIB_INCLUDE" > build/ctest.log
cmake --build build/ctest -j 2 >> build/ctest.log
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ./build/ctest/jaxmg_c_tests
# The same tests under ThreadSanitizer: the only build that sees data races between the
# per-device threads of one call.
cmake -S . -B build/ctest-tsan -DJAXMG_BUILD_TESTS=ON -DJAXMG_SANITIZE_THREAD=ON -DJAXMG_CUDA=OFF \
  -DCMAKE_BUILD_TYPE=Debug -DJAXMG_FFI_INCLUDE="$JAXLIB_INCLUDE" > build/ctest-tsan.log
cmake --build build/ctest-tsan -j 2 >> build/ctest-tsan.log
TSAN_OPTIONS=halt_on_error=1 ./build/ctest-tsan/jaxmg_c_tests

# The CUDA backend's orchestration against a host-memory stand-in of CUDA/cuSOLVERMg
# (needs only the toolkit's headers; skipped without them).
if [ -f "${CUDA_INC:-/usr/local/cuda/include}/cusolverMg.h" ]; then
  bash tests/gpu/mock/run_mock.sh build/mock
fi

"$PY" -m pytest -q tests/python tests/gpu "$@"
