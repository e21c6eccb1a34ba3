#!/usr/bin/env bash
# Checks a built wheel on the GPU machine (one command there, carry the dist/ folder):
#
#   bash tools/check_wheel_gpu.sh [dist]
#
# Installs dist/jaxmg-*manylinux*.whl with --no-deps --no-index (no package index there),
# takes the CUDA libraries from the NVIDIA wheels when they are installed (else the
# default search), prints where each library came from, runs a small potrs and then the
# GPU tests against the installed wheel (tests/gpu/run_gpu.sh with JAXMG_INSTALLED=1).
# Logs go to $OUT (default ./wheel_check).
set -uo pipefail
DIST=${1:-dist}
OUT=${OUT:-wheel_check}
mkdir -p "$OUT"
python3 -m pip install --no-deps --no-index --force-reinstall "$DIST"/jaxmg-*manylinux*.whl > $OUT/pip.log 2>&1; tail -2 $OUT/pip.log
SP=$(python3 -c 'import site;print(site.getsitepackages()[0])'); ls $SP/nvidia/ 2>&1 | head; ls $SP/nvidia/cu13/lib 2>/dev/null | head -30
if ls $SP/nvidia/cu13/lib/libcusolverMg.so* >/dev/null 2>&1; then export JAXMG_CUDA_LIBS=wheels; else export JAXMG_CUDA_LIBS=auto; fi; echo JAXMG_CUDA_LIBS=$JAXMG_CUDA_LIBS
(cd / && timeout 200 python3 - <<'PY'
import numpy as np, jax, jax.numpy as jnp, jaxmg
from jaxmg import _ffi, _cuda_libs
print(jax.__version__, jax.devices())
_ffi.ensure_registered("gpu"); print(_cuda_libs.report())
n=1024; a=np.random.default_rng(0).standard_normal((n,n)); a=a@a.T+n*np.eye(n); b=np.ones((n,1))
x=jaxmg.potrs(jnp.asarray(a,jnp.float32), jnp.asarray(b,jnp.float32), T_A=256)
print("potrs rel residual", np.linalg.norm(a@np.asarray(x,np.float64)-b)/np.linalg.norm(b))
import jaxmg.linalg as L
print("cho_solve", float(jnp.abs(L.solve(jnp.asarray(a), jnp.asarray(b), assume_a="pos")-np.linalg.solve(a,b)).max()))
PY
) 2>&1 | tee $OUT/wheel_smoke.log
JAXMG_STAGE_S=300 JAXMG_INSTALLED=1 JAXMG_GPU_SETS=0 bash tests/gpu/run_gpu.sh "$OUT/gpu_wheel.log" > /dev/null 2>&1; tail -25 $OUT/gpu_wheel.log
