#!/usr/bin/env bash
# The ratios of docs/benchmarks.md's "Status against the targets" on a machine with 2 GPUs
# (under 10 minutes on 2 H200; jaxmg must be installed already, e.g. by tests/gpu/run_gpu.sh):
# jaxmg / raw cuSOLVERMg for potrs at N = 32768, potrs against native JAX at small and
# medium N (engine auto), potri against raw cuSOLVERMg and native JAX.
#
#   bash bench/run_targets_gpu.sh "$OUT"     # -> $OUT/targets.jsonl
#
# Every row compares, in the same process and on the same GPUs, jaxmg with raw cuSOLVERMg
# (bench/raw_mg.c) and native JAX on one GPU, as bench/run_bench_gpu.sh does.
set -uo pipefail
OUT=${1:-bench_out}
mkdir -p "$OUT"
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false JAXMG_TIMEOUT=${JAXMG_TIMEOUT:-120}
B="python3 bench/bench_ops.py"
R="$OUT/targets.jsonl"
run() { local lim=$1; shift; timeout "$lim" $B "$@" 2>&1 | grep -v '^{' | tail -3; }
T0=$(date +%s)
# jaxmg / raw: potrs on 2 GPUs through cuSOLVERMg, N = 32768
run 120 --op potrs --dtype float64 --n 32768 --tiles 1024,2048 --ndev 2 --engine cusolvermg --out "$R"
run 90 --op potrs --dtype float32 --n 32768 --tiles 1024,2048 --ndev 2 --engine cusolvermg --skip native --out "$R"
echo "potrs 32768 done at $(( $(date +%s) - T0 )) s"
# against native JAX, what auto picks: small and medium N on 2 GPUs
run 90 --op potrs --dtype float64 --n 1024,8192,16384 --tiles 1024 --ndev 2 --reps 5 --out "$R"
echo "potrs small done at $(( $(date +%s) - T0 )) s"
# potri against raw cuSOLVERMg (2x target) and native
run 170 --op potri --dtype float64 --n 16384,32768 --tiles 1024 --ndev 2 --reps 2 --out "$R"
echo "potri done at $(( $(date +%s) - T0 )) s"
echo "all done at $(( $(date +%s) - T0 )) s"
