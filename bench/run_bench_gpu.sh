#!/usr/bin/env bash
# The per-op benchmarks of docs/benchmarks.md on a machine with 2 GPUs (under 10 minutes on
# 2 H200):
#   bash bench/run_bench_gpu.sh "$OUT"
# Installs jaxmg from this checkout, then runs bench/bench_ops.py for every op: jaxmg (engine
# auto, and cuSOLVERMg forced), raw cuSOLVERMg and native JAX on 1 and 2 GPUs; one JSON-lines
# file per op under the output folder (tables: bench/report.py). Each stage has a time limit,
# so a slow case cannot hold up the others.
set -uo pipefail
OUT=${1:-bench_out}
mkdir -p "$OUT"
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false JAXMG_TIMEOUT=${JAXMG_TIMEOUT:-120}
python3 -m pip install -q --no-build-isolation --no-deps . > "$OUT/build.log" 2>&1 || { tail -30 "$OUT/build.log"; exit 1; }
B="python3 bench/bench_ops.py"
run() { local lim=$1; shift; timeout "$lim" $B "$@" 2>&1 | grep -v '^{' | tail -3; }
T0=$(date +%s)
# potrs float64: auto engine (what users get), cuSOLVERMg forced, raw cuSOLVERMg, native JAX
run 150 --op potrs --dtype float64 --n 1024,4096,8192,16384,32768,65536 --tiles 1024 --ndev 1,2 --out "$OUT/potrs_f64.jsonl"
run 60 --op potrs --dtype float64 --n 1024,8192,32768 --tiles 1024 --ndev 2 --engine cusolvermg --skip raw,native --out "$OUT/potrs_f64.jsonl"
run 60 --op potrs --dtype float64 --n 32768 --tiles 256,512,2048 --ndev 2 --engine cusolvermg --skip native --out "$OUT/potrs_f64.jsonl"
run 50 --op potrs --dtype float32 --n 32768,65536 --tiles 1024,2048 --ndev 2 --engine cusolvermg --out "$OUT/potrs_f32.jsonl"
echo "potrs done at $(( $(date +%s) - T0 )) s"
run 120 --op potri --dtype float64 --n 4096,8192,16384,32768 --tiles 1024 --ndev 1,2 --reps 2 --out "$OUT/potri_f64.jsonl"
run 40 --op potri --dtype complex128 --n 4096,8192 --tiles 1024 --ndev 2 --reps 2 --out "$OUT/potri_c128.jsonl"
echo "potri done at $(( $(date +%s) - T0 )) s"
run 110 --op syevd --dtype float64 --n 4096,8192,16384 --tiles 1024 --ndev 1,2 --reps 1 --out "$OUT/syevd_f64.jsonl"
run 30 --op syevd --dtype complex128 --n 4096 --tiles 1024 --ndev 2 --reps 1 --out "$OUT/syevd_c128.jsonl"
echo "all done at $(( $(date +%s) - T0 )) s"
