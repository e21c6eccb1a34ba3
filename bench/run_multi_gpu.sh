#!/usr/bin/env bash
# The 4- and 8-GPU figures of docs/benchmarks.md (scaling, the largest potrs), on a machine
# with more than 2 GPUs, in two groups of stages:
#
#   bash bench/run_multi_gpu.sh "$OUT" tests suite        # GPU tests + suite
#   bash bench/run_multi_gpu.sh "$OUT" scaling large      # scaling curves, big N
#
# Stages (any order, any subset):
#   tests    tests/gpu on all GPUs (installs jaxmg first through tests/gpu/run_gpu.sh)
#   suite    bench/bench_ops.py for every op on all GPUs (jaxmg, raw cuSOLVERMg, native)
#   scaling  potri complex128 and syevd float64 on 1, 2, 4, ... GPUs, engine auto and cusolvermg,
#            beside raw cuSOLVERMg and native JAX on one GPU
#   large    potrs float32 at the largest N of JAXMG_LARGE_CASES (ndev:N,...), donated
# jaxmg is installed by the tests stage, or by the first stage when "tests" is not asked for.
# Every stage has a time limit (JAXMG_<STAGE>_S) so a slow case cannot hold up the others.
set -uo pipefail
OUT=${1:-bench_out}
shift || true
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false JAXMG_TIMEOUT=${JAXMG_TIMEOUT:-120}
NGPU=$(nvidia-smi -L | wc -l)
ALL=$(seq -s, 0 $((NGPU - 1)))
# 1, 2, 4, 8 ... up to the GPUs present
SCALE=$(python3 -c "n=$NGPU; print(','.join(str(1<<k) for k in range(8) if (1<<k) <= n))")
B="python3 bench/bench_ops.py"
run() { local lim=$1; shift; timeout "$lim" $B "$@" 2>&1 | grep -v '^{' | tail -3; }
T0=$(date +%s)
installed=0
install() {
  [ $installed = 1 ] && return
  python3 -m pip install -q --no-build-isolation --no-deps . > "$OUT/build.log" 2>&1 \
    || { tail -30 "$OUT/build.log"; exit 1; }
  installed=1
}
echo "=== $NGPU GPUs, scaling over $SCALE, $(date -u +%FT%TZ)"
for stage in "$@"; do
  echo "=== stage $stage at $(( $(date +%s) - T0 )) s"
  case $stage in
    tests)
      JAXMG_GPU_SETS=$ALL JAXMG_STAGE_S=${JAXMG_TESTS_S:-330} \
        bash tests/gpu/run_gpu.sh "$OUT/gpu_tests_${NGPU}gpu.log" -q > /dev/null 2>&1
      echo "tests exit $?"; tail -5 "$OUT/gpu_tests_${NGPU}gpu.log"
      installed=1 ;;
    suite)
      install
      R="$OUT/suite_${NGPU}gpu.jsonl"
      run 120 --op potrs --dtype float64 --n 1024,8192,16384,32768,65536 --tiles 1024 --ndev $NGPU --out "$R"
      run 90 --op potrs --dtype float32 --n 32768,65536 --tiles 1024,2048 --ndev $NGPU --engine cusolvermg --skip native --out "$R"
      run 120 --op potri --dtype float64 --n 8192,16384,32768 --tiles 1024 --ndev $NGPU --reps 2 --skip native --out "$R"
      run 90 --op syevd --dtype float64 --n 4096,8192 --tiles 1024 --ndev $NGPU --reps 1 --skip native --out "$R"
      ;;
    scaling)
      install
      R="$OUT/scaling_${NGPU}gpu.jsonl"
      run ${JAXMG_SCALING_POTRI_S:-240} --op potri --dtype complex128 --n 8192,16384 --tiles 1024 --ndev $SCALE --reps 2 --out "$R"
      run 120 --op potri --dtype complex128 --n 8192,16384 --tiles 1024 --ndev $SCALE --reps 2 --engine cusolvermg --skip raw,native --out "$R"
      run ${JAXMG_SCALING_SYEVD_S:-240} --op syevd --dtype float64 --n 8192,16384 --tiles 1024 --ndev $SCALE --reps 1 --out "$R"
      run 120 --op syevd --dtype float64 --n 8192,16384 --tiles 1024 --ndev $SCALE --reps 1 --engine cusolvermg --skip raw,native --out "$R"
      ;;
    large)
      install
      XLA_PYTHON_CLIENT_MEM_FRACTION=0.95 timeout ${JAXMG_LARGE_S:-200} python3 bench/bench_memory.py \
        --dtype float32 --cases "${JAXMG_LARGE_CASES:-$NGPU:262144}" --out "$OUT/large_${NGPU}gpu.jsonl" 2>&1 | tail -3 ;;
    *) echo "unknown stage $stage"; exit 2 ;;
  esac
done
echo "=== all done at $(( $(date +%s) - T0 )) s"
