#!/usr/bin/env bash
# jaxmg with engine="auto" against native JAX (bench/auto_vs_native.py) for two versions of
# the package in one call on the GPU machine: this checkout ("new") and an older source tree
# ("old"), each built and installed into its own folder, measured one after the other on the
# same GPUs, ROUNDS times (default 1) in the order old, new.
#
#   git archive <older commit> src include python CMakeLists.txt pyproject.toml README.md \
#       | (mkdir -p .old && tar -x -C .old)          # on the CPU machine, .old ignored by git
#   bash bench/run_compare_gpu.sh "$OUT" .old <older commit> [auto_vs_native.py arguments]
#
# Results: $OUT/auto_vs_native.jsonl (one line per case and version), build logs next to it.
# NEW_INSTALLED=1 measures the jaxmg already installed (e.g. by tests/gpu/run_gpu.sh from this
# checkout) as "new" instead of building it again.
set -uo pipefail
OUT=${1:-bench_out}
OLD=${2:?the older source tree}
OLD_COMMIT=${3:-old}
shift 3 || shift $#
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
OLD="$(cd "$OLD" && pwd)"
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 JAXMG_TIMEOUT=${JAXMG_TIMEOUT:-120}
NEW_COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo new)
for v in new old; do
  [ "$v" = new ] && [ "${NEW_INSTALLED:-0}" = 1 ] && { rm -rf /tmp/jaxmg_new; mkdir -p /tmp/jaxmg_new; continue; }
  src=.; [ "$v" = old ] && src="$OLD"
  rm -rf "/tmp/jaxmg_$v"
  t0=$(date +%s)
  if ! python3 -m pip install -q --no-build-isolation --no-deps --target "/tmp/jaxmg_$v" "$src" \
      > "$OUT/build_$v.log" 2>&1; then
    echo "build of $v failed:"; tail -30 "$OUT/build_$v.log"; exit 1
  fi
  echo "built $v in $(( $(date +%s) - t0 )) s"
done
for round in $(seq "${ROUNDS:-1}"); do
  for v in old new; do
    commit=$NEW_COMMIT; [ "$v" = old ] && commit=$OLD_COMMIT
    t0=$(date +%s)
    PYTHONPATH="/tmp/jaxmg_$v" timeout "${CASE_S:-280}" python3 bench/auto_vs_native.py \
      --label "$v" --commit "$commit" --out "$OUT/auto_vs_native.jsonl" "$@" \
      | python3 -c 'import json, sys
for line in sys.stdin:
    r = json.loads(line)
    print(r["label"], r["op"], r["dtype"], r["n"], r.get("engine"), "ratio %.3f" % r["ratio_median"] if "ratio_median" in r else r.get("error"))'
    echo "round $round $v took $(( $(date +%s) - t0 )) s"
  done
done
