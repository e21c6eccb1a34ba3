#!/usr/bin/env bash
# One process per GPU (MPMD) on one node: launches 2 (or --nproc) Python processes joined by
# jax.distributed (coordinator on localhost), one GPU each (local_device_ids=[i], every GPU
# visible), and runs tests/python/mpmd_worker.py in them:
#
#   ops-mg     potrs/potri/syevd through cuSOLVERMg (engine="mg": cusolvermg), float32/float64/complex64/
#              complex128, tiles dividing the shard and not (padding), natural and reversed
#              process-to-mesh order, and jaxmg.linalg;
#   ops-auto   the same user code with the default engine (on small matrices the gather
#              engine: NCCL all-gather across processes + cuSOLVER);
#   notpd      a matrix that is not positive definite: same info and NaN in every process;
#   kill-*     process 1 is SIGKILLed while process 0 waits in a call, holding the follower's
#              and the leader's position: process 0 must fail at once, not hang.
#
# Installs nothing (install jaxmg first: pip install --no-build-isolation --no-deps .).
# Every case runs under `timeout`; the whole script takes about 2-4 minutes.
#
#   usage: bash tests/gpu/mpmd/run_mpmd_gpu.sh [LOGDIR]     (default build/mpmd-gpu)
# Prints one line per case and a final "MPMD GPU: PASS" or "MPMD GPU: FAIL"; exit status 0/1.
set -uo pipefail
cd "$(dirname "$0")/../../.."
LOG=${1:-build/mpmd-gpu}
PY=${PYTHON:-python3}
NPROC=${NPROC:-2}
CASE_TIMEOUT=${CASE_TIMEOUT:-240}
WORKER=tests/python/mpmd_worker.py
# MPMD_PLATFORM=cpu dry-runs this script on CPU devices (checks the launcher itself).
PLATFORM=${MPMD_PLATFORM:-gpu}
mkdir -p "$LOG"

# Every process must see every GPU: the leader maps the others' memory.
unset CUDA_VISIBLE_DEVICES
# Leave room on each GPU for the leader's CUDA context and cuSOLVERMg workspaces next to
# the process that owns the GPU.
export XLA_PYTHON_CLIENT_PREALLOCATE=false
export JAXMG_TIMEOUT=${JAXMG_TIMEOUT:-120}
export PYTHONUNBUFFERED=1

ngpu=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
[ "$PLATFORM" = cpu ] && ngpu=$NPROC
if [ "${ngpu:-0}" -lt "$NPROC" ]; then
  echo "MPMD GPU: FAIL (needs $NPROC GPUs, nvidia-smi lists ${ngpu:-0})"
  exit 1
fi
echo "jaxmg MPMD GPU test: $NPROC processes, $("$PY" -c 'import jax; print("jax", jax.__version__)' 2>&1 | tail -1), logs in $LOG"

free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("localhost",0)); print(s.getsockname()[1])'; }

FAILED=0
SEEN_TOKENS=()

# run_case NAME EXPECT(all|survivor) ARGS...
run_case() {
  local name=$1 expect=$2
  shift 2
  local port pids=() rcs=() i t0 t1
  port=$(free_port)
  t0=$(date +%s)
  for ((i = 0; i < NPROC; i++)); do
    timeout -k 10 "$CASE_TIMEOUT" "$PY" "$WORKER" --platform "$PLATFORM" --process-id "$i" \
      --num-processes "$NPROC" --port "$port" "$@" > "$LOG/$name.p$i.log" 2>&1 &
    pids+=($!)
  done
  for i in "${!pids[@]}"; do
    wait "${pids[$i]}"
    rcs+=($?)
  done
  t1=$(date +%s)
  local ok=1 npass=0 nfail=0 checked=$NPROC
  [ "$expect" = survivor ] && checked=1
  for ((i = 0; i < checked; i++)); do
    local f="$LOG/$name.p$i.log"
    npass=$((npass + $(grep -c ' PASS ' "$f" || true)))
    nfail=$((nfail + $(grep -c ' FAIL ' "$f" || true)))
    grep -q ' SUMMARY ' "$f" || ok=0
    [ "${rcs[$i]}" = 0 ] || ok=0
    local tok
    tok=$(sed -n 's/.* TOKEN \([0-9a-f]*\).*/\1/p' "$f" | tail -1)
    [ -n "$tok" ] && SEEN_TOKENS+=("$tok")
  done
  [ "$nfail" = 0 ] && [ "$npass" -gt 0 ] || ok=0
  if [ "$ok" = 1 ]; then
    echo "PASS $name ($npass checks, $((t1 - t0)) s)"
  else
    FAILED=1
    echo "FAIL $name (pass $npass, fail $nfail, exit codes ${rcs[*]}, $((t1 - t0)) s); see $LOG/$name.p*.log"
    for ((i = 0; i < checked; i++)); do
      grep -h ' FAIL ' "$LOG/$name.p$i.log" | head -5
      if ! grep -q ' SUMMARY ' "$LOG/$name.p$i.log"; then
        echo "  --- process $i, last lines:"
        tail -15 "$LOG/$name.p$i.log" | sed 's/^/  /'
      fi
    done
  fi
}

run_case ops-mg all --scenario ops --engine mg --orders natural,reversed
run_case ops-auto all --scenario ops --engine auto --orders reversed --dtypes float32,complex128
run_case notpd all --scenario notpd --engine mg --orders natural,reversed
echo "(the kill cases SIGKILL process 1 on purpose; the shell reports it as Killed)"
run_case kill-follower survivor --scenario kill --orders natural
run_case kill-leader survivor --scenario kill --orders reversed

left=0
for tok in "${SEEN_TOKENS[@]}"; do
  n=$(ls /dev/shm 2>/dev/null | grep -c "^jaxmg-$tok" || true)
  left=$((left + n))
done
if [ "$left" != 0 ]; then
  FAILED=1
  echo "FAIL shared-memory segments left in /dev/shm: $(ls /dev/shm | grep '^jaxmg-' | head -5 | tr '\n' ' ')"
else
  echo "PASS no /dev/shm/jaxmg-<token>-* left behind"
fi

if [ "$FAILED" = 0 ]; then
  echo "MPMD GPU: PASS"
  exit 0
fi
echo "MPMD GPU: FAIL"
exit 1
