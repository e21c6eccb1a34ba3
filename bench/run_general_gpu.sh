#!/usr/bin/env bash
# The general dense ops against their JAX counterparts on one GPU (docs/benchmarks.md,
# "General dense ops"; under 10 minutes on one H100). jaxmg must be installed already
# (tests/gpu/run_gpu.sh does it):
#   bash bench/run_general_gpu.sh "$OUT"        # -> $OUT/general.jsonl
# Each stage has a time limit, so a slow case cannot hold up the others.
set -uo pipefail
OUT=${1:-bench_out}
mkdir -p "$OUT"
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
R="$OUT/general.jsonl"
B="python3 bench/bench_general.py --out $R"
run() { local lim=$1; shift; timeout "$lim" $B "$@" 2>&1 | grep -v '^{' | tail -3; }
T0=$(date +%s)
run 150 --ops lu_factor,solve_gen,det,cholesky,qr,eigh_subset,eigvalsh_subset,eigh_gen --n 4096,8192,16384 --reps 2
echo "factorizations and eigenproblems done at $(( $(date +%s) - T0 )) s"
run 90 --ops lu_factor,solve_gen,cholesky,qr,det --n 32768 --reps 2
echo "N = 32768 done at $(( $(date +%s) - T0 )) s"
run 200 --ops svdvals,polar,lstsq,svd --n 4096,8192 --reps 2
echo "all done at $(( $(date +%s) - T0 )) s"
