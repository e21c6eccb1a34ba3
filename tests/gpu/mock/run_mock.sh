#!/usr/bin/env bash
# The CUDA backend's orchestration on host memory (no GPU): builds src/gpu + src/common with
# the CUDA headers against tests/gpu/mock/mock_cuda.c and reference LAPACK, under
# ASan/UBSan, and runs tests/gpu/mock/test_mock.c. Needs the CUDA toolkit's headers only.
set -euo pipefail
cd "$(dirname "$0")/../../.."
CUDA_INC=${CUDA_INC:-/usr/local/cuda/include}
OUT=${1:-build/mock}
mkdir -p "$OUT"
JAXLIB_INCLUDE=$(${PYTHON:-python3} -c 'import jaxlib, os; print(os.path.join(os.path.dirname(jaxlib.__file__), "include"))')
cc -std=c11 -O1 -g -Wall -Wextra -Werror -pedantic -Wno-unused-parameter \
  -D_POSIX_C_SOURCE=200809L -DDISABLE_CUSOLVERMG_DEPRECATED=1 \
  -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined \
  -Iinclude -Isrc -Itests/include -isystem "$CUDA_INC" -isystem "$JAXLIB_INCLUDE" \
  src/common/status.c src/common/ops.c src/common/layout.c src/common/rendezvous.c \
  src/gpu/*.c tests/gpu/mock/mock_cuda.c tests/gpu/mock/test_mock.c \
  -o "$OUT/test_mock" -llapack -lblas -lpthread -lm
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  "$OUT/test_mock"
