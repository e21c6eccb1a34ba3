#!/usr/bin/env bash
# The cuSOLVERMp engine on the GPUs of one process against the cuSOLVERMg engine and native
# JAX (docs/benchmarks.md, "The cuSOLVERMp engine"; under 10 minutes on one H100). jaxmg
# must be installed already, built with the engine (tests/gpu/run_gpu.sh, after
# pip install --no-deps of the nvidia-cusolvermp-cu13 wheel):
#   bash bench/run_mp_gpu.sh "$OUT" [ndev]          # -> $OUT/mp.jsonl
# Then one process per GPU through the launcher (the same op checks, all four dtypes).
# Each stage has a time limit, so a slow case cannot hold up the others.
set -uo pipefail
OUT=${1:-bench_out}
NDEV=${2:-1}
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
R="$OUT/mp.jsonl"
run() { local lim=$1; shift; timeout "$lim" python3 bench/bench_ops.py --out "$R" --ndev "$NDEV" "$@" 2>&1 | grep -v '^{' | tail -3; }
T0=$(date +%s)
for e in cusolvermp cusolvermg; do
  run 100 --op potrs --dtype float64 --n 16384,32768 --engine $e --skip raw,native --reps 3
  run 100 --op potrs --dtype float32 --n 32768,65536 --engine $e --skip raw,native --reps 3
done
run 60 --op potrs --dtype float64 --n 16384,32768 --skip raw,jaxmg --reps 3
run 60 --op potrs --dtype float32 --n 32768,65536 --skip raw,jaxmg --reps 3
echo "potrs done at $(( $(date +%s) - T0 )) s"
for e in cusolvermp cusolvermg; do
  run 120 --op syevd --dtype float64 --n 16384 --engine $e --skip raw,native --reps 2
done
run 60 --op syevd --dtype float64 --n 16384 --skip raw,jaxmg --reps 2
echo "syevd done at $(( $(date +%s) - T0 )) s"
timeout 120 python3 -m jaxmg.launch -n "$NDEV" tests/gpu/multiprocess/check_cusolvermp.py 2048 2>&1 | tail -12
echo "launcher check: status $? at $(( $(date +%s) - T0 )) s"
