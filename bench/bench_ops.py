"""Benchmarks of jaxmg side by side with raw cuSOLVERMg and native JAX, in one run.

    python bench/bench_ops.py --op potrs --dtype float64 --n 4096,16384 --tiles 512,1024 \
        --ndev 1,2 --out results.jsonl

For every (ndev, N, T_A) it times, warm (best of --reps):
  (a) jaxmg end to end (`jaxmg.potrs` / `potri` / `syevd`; compile time reported apart), with
      the engine `--engine` names (default "auto"; each record names the engine that ran,
      `engine_used`, and XLA's peak bytes in use on a device so far, `peak_bytes`);
  (b) raw cuSOLVERMg from bench/raw_mg.c on the same GPUs with the data already in the
      block-cyclic layout (the ceiling of any wrapper);
  (c) native JAX on one GPU (cho_factor + cho_solve, jnp.linalg.inv, jnp.linalg.eigh), once per
      N (not per tile or device count).
Inputs are random Hermitian positive definite matrices, never diagonal: a symmetric hash of
(min(i, j), max(i, j)) in [-0.5, 0.5) plus N on the diagonal, generated shard by shard on the
devices (no host copy, no communication). One JSON object per line goes to --out.
"""

from __future__ import annotations

import argparse
import ctypes
import datetime
import json
import os
import platform
import subprocess
import sys
import time

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import jax

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

import jaxmg
try:
    from jaxmg import _engines, _mesh
except ImportError:  # an older version of the package (bench/run_compare_gpu.sh measures it)
    _engines = _mesh = None
from jaxmg._geometry import Geometry

PEAK_TFLOPS = {"H200": 67.0, "H100": 67.0}  # FP64 tensor core and FP32, per GPU
HERE = os.path.dirname(os.path.abspath(__file__))


def flops(op: str, n: int, dtype, nrhs: int = 1) -> float:
    """LAPACK Working Note 41 counts (complex: x4)."""
    f = {
        "potrs": n**3 / 3 + 2 * n**2 * nrhs,
        "potri": n**3,                       # potrf n^3/3 + potri 2n^3/3
        "syevd": 4 * n**3,                   # with vectors: 10/3 n^3 .. 14/3 n^3
        "syevd_n": 4 * n**3 / 3,             # tridiagonal reduction dominates
    }[op]
    return f * (4 if jnp.issubdtype(dtype, jnp.complexfloating) else 1)


def spd_entries(i, j, n: int, dtype):
    """A[i, j] of the benchmark matrix for integer index arrays (broadcasting)."""
    real = jnp.finfo(dtype).dtype.type
    i = i.astype(jnp.uint32)
    j = j.astype(jnp.uint32)
    lo, hi = jnp.minimum(i, j), jnp.maximum(i, j)
    h = lo * jnp.uint32(2654435761) ^ (hi * jnp.uint32(2246822519) + jnp.uint32(3266489917))
    h = h ^ (h >> 15)
    h = h * jnp.uint32(2246822519)
    h = h ^ (h >> 13)
    x = (h & jnp.uint32(0xFFFFFF)).astype(real) / real(2**24) - real(0.5)
    a = x + jnp.where(i == j, real(n), real(0))
    if jnp.issubdtype(dtype, jnp.complexfloating):
        g = (h >> 8) & jnp.uint32(0xFFFF)
        y = g.astype(real) / real(2**16) - real(0.5)
        y = jnp.where(i < j, y, jnp.where(i > j, -y, real(0)))
        a = a + 1j * y
    return a.astype(dtype)


def make_spd(n: int, dtype, sharding):
    """Hermitian, diagonally dominant (so positive definite), dense, reproducible; generated
    in place on the devices (one fused elementwise kernel, no temporaries)."""

    def gen():
        i = jax.lax.broadcasted_iota(jnp.uint32, (n, n), 0)
        j = jax.lax.broadcasted_iota(jnp.uint32, (n, n), 1)
        return spd_entries(i, j, n, dtype)

    return jax.jit(gen, out_shardings=sharding)()


def spd_rows(rows, n: int, dtype):
    """Rows of the benchmark matrix (to check a solution after the matrix was donated)."""
    rows = jnp.asarray(rows, jnp.uint32)[:, None]
    return spd_entries(rows, jnp.arange(n, dtype=jnp.uint32)[None, :], n, dtype)


def timed(fn):
    """Seconds of one call of ``fn``, its results waited for."""
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    return time.perf_counter() - t0


def best_time(fn, reps: int):
    out = fn()
    jax.block_until_ready(out)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        out = fn()
        jax.block_until_ready(out)
        times.append(time.perf_counter() - t0)
    return min(times), out


def peak_bytes(devs) -> int:
    peaks = []
    for d in devs:
        try:
            peaks.append(int(d.memory_stats().get("peak_bytes_in_use", 0)))
        except Exception:
            peaks.append(0)
    return max(peaks) if peaks else 0


# ---- raw cuSOLVERMg -------------------------------------------------------------------------

_RAW = None


def raw_lib():
    global _RAW
    if _RAW is None:
        so = os.path.join(HERE, "libraw_mg.so")
        if not os.path.exists(so):
            cuda = os.environ.get("CUDA_HOME", "/usr/local/cuda")
            subprocess.check_call(
                ["gcc", "-std=c11", "-O2", "-shared", "-fPIC", "-Wno-deprecated-declarations",
                 f"-I{cuda}/include", os.path.join(HERE, "raw_mg.c"), "-o", so,
                 f"-L{cuda}/lib64", "-lcusolverMg", "-lcudart", f"-Wl,-rpath,{cuda}/lib64"])
        _RAW = ctypes.CDLL(so)
        _RAW.raw_mg_run.restype = ctypes.c_int
    return _RAW


def _ptrs(arr):
    shards = sorted(arr.addressable_shards, key=lambda s: s.index[0].start or 0)
    return [s.data.unsafe_buffer_pointer() for s in shards]


def run_raw(op, dtype, devs, n, tile, reps, nrhs=1):
    ndev = len(devs)
    mesh = Mesh(np.array(devs), ("x",))
    sh = NamedSharding(mesh, P("x", None))
    geo = Geometry(n, ndev, tile)
    a = make_spd(n, dtype, sh)
    # Block-cyclic layout: solver column g of device d = original column src(g): permute
    # the columns of the row-sharded array (which is what each device reads column-major).
    a_bc = jax.jit(lambda x: x[:, geo.src], out_shardings=sh)(a)
    del a
    backup = jax.jit(lambda x: x + 0, out_shardings=sh)(a_bc)
    jax.block_until_ready(backup)
    dt = [jnp.float32, jnp.float64, jnp.complex64, jnp.complex128].index(jnp.dtype(dtype).type)
    a_p = (ctypes.c_void_p * ndev)(*_ptrs(a_bc))
    b_p = (ctypes.c_void_p * ndev)(*_ptrs(backup))
    devids = (ctypes.c_int * ndev)(*[d.id for d in devs])
    bvec = bbak = None
    if op == "potrs":
        bvec = jax.device_put(jnp.ones((nrhs, n), dtype), devs[0])
        bbak = jax.device_put(jnp.ones((nrhs, n), dtype), devs[0])
        jax.block_until_ready((bvec, bbak))
    times = (ctypes.c_double * reps)()
    info = ctypes.c_int(0)
    err = ctypes.create_string_buffer(512)
    code = {"potrs": 0, "potri": 1, "syevd": 2, "syevd_n": 3}[op]
    rc = raw_lib().raw_mg_run(
        code, dt, ndev, devids, a_p, b_p, ctypes.c_int64(n), ctypes.c_int64(tile),
        ctypes.c_void_p(bvec.unsafe_buffer_pointer() if bvec is not None else 0),
        ctypes.c_void_p(bbak.unsafe_buffer_pointer() if bbak is not None else 0),
        nrhs, reps, times, ctypes.byref(info), err, 512)
    del a_bc, backup
    if rc:
        return {"error": err.value.decode()}
    return {"seconds": min(times), "info": info.value}


# ---- native JAX on one GPU ------------------------------------------------------------------

# The potrs baseline of every benchmark: cho_factor + cho_solve, jitted, on one device.
native_potrs = jax.jit(lambda a, b: jax.scipy.linalg.cho_solve(
    jax.scipy.linalg.cho_factor(a, lower=True), b))


def potrs_inputs(n, dtype, mesh):
    """(a, b) row-sharded / replicated over ``mesh`` and (a1, b1) the same on its first
    device, for potrs benchmarks that compare jaxmg with native JAX in one process."""
    a = make_spd(n, dtype, NamedSharding(mesh, P("x", None)))
    b = jax.device_put(jnp.ones((n, 1), dtype), NamedSharding(mesh, P()))
    dev = mesh.devices.flat[0]
    return a, b, jax.device_put(a, dev), jax.device_put(jnp.ones((n, 1), dtype), dev)


def run_native(op, dtype, dev, n, reps):
    a = make_spd(n, dtype, jax.sharding.SingleDeviceSharding(dev))
    if op == "potrs":
        b = jax.device_put(jnp.ones((n, 1), dtype), dev)
        fn = lambda: native_potrs(a, b)
    elif op == "potri":
        f = jax.jit(jnp.linalg.inv)
        fn = lambda: f(a)
    elif op == "syevd":
        f = jax.jit(jnp.linalg.eigh)
        fn = lambda: f(a)
    else:
        f = jax.jit(lambda x: jnp.linalg.eigvalsh(x))
        fn = lambda: f(a)
    try:
        secs, _ = best_time(fn, reps)
        return {"seconds": secs}
    except Exception as e:  # out of memory, typically
        return {"error": str(e).splitlines()[0][:300]}


# ---- jaxmg ----------------------------------------------------------------------------------

def run_jaxmg(op, dtype, devs, n, tile, reps, engine=None):
    mesh = Mesh(np.array(devs), ("x",))
    sh = NamedSharding(mesh, P("x", None))
    a = make_spd(n, dtype, sh)
    kw = {} if engine is None else {"engine": engine}
    if op == "potrs":
        b = jax.device_put(jnp.ones((n, 1), dtype), NamedSharding(mesh, P(None, None)))
        fn = lambda: jaxmg.potrs(a, b, T_A=tile, return_status=True, **kw)
    elif op == "potri":
        fn = lambda: jaxmg.potri(a, T_A=tile, return_status=True, **kw)
    elif op == "syevd":
        fn = lambda: jaxmg.syevd(a, T_A=tile, return_status=True, **kw)
    else:
        fn = lambda: jaxmg.syevd(a, T_A=tile, return_eigenvectors=False, return_status=True, **kw)
    t0 = time.perf_counter()
    try:
        out = fn()
        jax.block_until_ready(out)
    except Exception as e:
        return {"error": str(e).splitlines()[0][:300]}
    first = time.perf_counter() - t0
    secs, out = best_time(fn, reps)
    info = int(out[-1])
    res = {"seconds": secs, "compile_s": max(first - secs, 0.0), "info": info,
           "peak_bytes": peak_bytes(devs)}
    res["engine_used"] = engine_used(engine, "syevd" if op == "syevd_n" else op, a, n, dtype)
    return res


def engine_used(engine, op, a, n, dtype):
    """The name of the engine that ran (``cusolvermg``, ``lapack``, ``one_device``, ``gather``):
    what ``engine`` (None: "auto") resolves to for this call."""
    return _engines.choose(engine or "auto", op, _mesh.resolve(a, None, None, op), n, dtype)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--op", required=True, choices=["potrs", "potri", "syevd", "syevd_n"])
    ap.add_argument("--dtype", default="float64")
    ap.add_argument("--n", required=True)
    ap.add_argument("--tiles", default="")
    ap.add_argument("--ndev", default="1,2")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--skip", default="", help="comma list of: raw,native,jaxmg")
    ap.add_argument("--engine", default=None)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    dtype = jnp.dtype(args.dtype)
    skip = set(filter(None, args.skip.split(",")))
    gpus = jax.devices()
    kind = gpus[0].device_kind
    peak = next((v for k, v in PEAK_TFLOPS.items() if k in kind), None)
    meta = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device": kind, "jax": jax.__version__, "jaxlib": jax.lib.__version__ if hasattr(jax.lib, "__version__") else None,
        "host": platform.node(), "op": args.op, "dtype": str(dtype),
    }
    native_done = set()
    with open(args.out, "a") as fh:
        def emit(rec):
            rec = {**meta, **rec}
            if "seconds" in rec and rec.get("seconds"):
                rec["tflops"] = flops(args.op, rec["n"], dtype) / rec["seconds"] / 1e12
                if peak:
                    rec["peak_fraction"] = rec["tflops"] / (peak * rec.get("ndev", 1))
            print(json.dumps(rec), flush=True)
            fh.write(json.dumps(rec) + "\n")
            fh.flush()

        for n in [int(x) for x in args.n.split(",")]:
            for ndev in [int(x) for x in args.ndev.split(",")]:
                if ndev > len(gpus):
                    continue
                devs = gpus[:ndev]
                tiles = [int(x) for x in args.tiles.split(",") if x] or [None]
                for tile in tiles:
                    if tile:
                        tile = min(tile, n // ndev)  # a tile never exceeds a shard
                    if "jaxmg" not in skip:
                        emit({"impl": "jaxmg" + (f"[{args.engine}]" if args.engine else ""),
                              "n": n, "ndev": ndev, "tile": tile or 0,
                              **run_jaxmg(args.op, dtype, devs, n, tile, args.reps, args.engine)})
                    if "raw" not in skip and tile:
                        emit({"impl": "raw_cusolvermg", "n": n, "ndev": ndev, "tile": tile,
                              **run_raw(args.op, dtype, devs, n, tile, max(1, args.reps - 1))})
            if "native" not in skip and n not in native_done:
                native_done.add(n)
                emit({"impl": "native_jax", "n": n, "ndev": 1, "tile": 0,
                      **run_native(args.op, dtype, gpus[0], n, args.reps)})


if __name__ == "__main__":
    sys.exit(main())
