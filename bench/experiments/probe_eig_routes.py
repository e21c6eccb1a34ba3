"""Probe: measured lower bounds of the routes to a float64 eigendecomposition on 2 GPUs that
could beat cuSOLVER's single-GPU syevd (docs/benchmarks.md, "syevd at N = 32768: the
routes").

    python bench/experiments/probe_eig_routes.py --n 32768 --out routes.jsonl

Needs jaxmg installed and 2 GPUs. Times, warm, one rep each (after one untimed call):
  - `syevd_f64`: jaxmg.syevd float64 on 2 GPUs (auto: the one_device engine), the time
    to beat by 2x is raw cuSOLVERMg's (measured separately);
  - `syevd_f32`: jaxmg.syevd float32 of the same matrix on 2 GPUs: the first stage of
    "float32 eigensolver + float64 refinement";
  - `gemm_2gpu`: X @ X, X float64 N x N sharded by rows over 2 GPUs (N^3 flops per GPU): one
    refinement step (Ogita-Aishima) costs at least 4 of these (R, A X, S, X E: 7 N^3 flops,
    4 N^3 per GPU when split by columns);
  - `qdwh_qr_step`: one QR-based QDWH step on one GPU (Householder QR of the 2N x N stack
    [sqrt(c) X; I], explicit Q, then Q1 Q2^T), the step a polar-decomposition (spectral
    divide and conquer) eigensolver needs first for a matrix conditioned like 1e4 or worse;
    cuSOLVERMg has no QR, so it runs on one GPU;
  - `qdwh_chol_step`: one Cholesky-based QDWH step on 2 GPUs: Z = I + c X^2 (sharded gemm),
    Z^-1 X by jaxmg.potrs (cuSOLVERMg, N right-hand sides), the combination;
  - `syevd_half`: jaxmg.syevd float64 of an N/2 matrix on one GPU (what each GPU solves after
    the split).
The matrix is the benchmarks' (bench_ops.make_spd). Each record carries seconds and TFLOP/s.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))  # bench_ops

import jax

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp
from jax.sharding import NamedSharding, PartitionSpec as P

import jaxmg
from bench_ops import best_time, make_spd

HI = jax.lax.Precision.HIGHEST


def once(fn, *args):
    """Seconds of one warm call (after one untimed call)."""
    return best_time(lambda: fn(*args), 1)[0]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=32768)
    ap.add_argument("--skip", default="")
    ap.add_argument("--out", default="probe_eig_routes.jsonl")
    args = ap.parse_args()
    n, skip = args.n, set(args.skip.split(","))
    devs = jax.devices()[:2]
    mesh = jax.make_mesh((2,), ("x",), devices=devs)
    rows = NamedSharding(mesh, P("x", None))
    rep = NamedSharding(mesh, P(None, None))

    def emit(case, seconds, flops=None, **kw):
        rec = {"probe": "eig_routes", "device": devs[0].device_kind, "jax": jax.__version__,
               "n": n, "case": case, "seconds": seconds, **kw}
        if flops:
            rec["tflops"] = flops / seconds / 1e12
        print(json.dumps(rec), flush=True)
        with open(args.out, "a") as f:
            f.write(json.dumps(rec) + "\n")

    if "syevd" not in skip:
        for dt, case in ((jnp.float64, "syevd_f64"), (jnp.float32, "syevd_f32")):
            a = make_spd(n, dt, rows)
            emit(case, once(lambda m: jaxmg.syevd(m, mesh=mesh, in_specs=(P("x", None),)), a),
                 4 * n**3)
            del a

    x = make_spd(n, jnp.float64, rows) / n
    sq = jax.jit(lambda m: jnp.matmul(m, m, precision=HI), out_shardings=rows)
    emit("gemm_2gpu", once(sq, x), 2 * n**3, note="N^3 flops per GPU")

    c, a_, b_ = 100.0, 3.0, 1.0  # step coefficients: their values do not change the cost

    @jax.jit
    def z_of(m):
        return jnp.eye(n, dtype=m.dtype) + c * jnp.matmul(m, m, precision=HI)

    def chol_step(m):
        z = jax.device_put(z_of(m), rows)
        y = jaxmg.potrs(z, jax.device_put(m, rep), mesh=mesh, in_specs=(P("x", None), P(None, None)),
                        engine="cusolvermg")
        return (b_ / c) * m + (a_ - b_ / c) * jax.device_put(y, rows)

    emit("qdwh_chol_step", once(chol_step, x), 2 * n**3 + n**3 / 3 + 2 * n**3,
         note="2 GPUs: sharded gemm + cuSOLVERMg potrf/potrs with N right-hand sides")
    del x

    x1 = make_spd(n, jnp.float64, jax.sharding.SingleDeviceSharding(devs[0])) / n

    @jax.jit
    def qr_step(m):
        stack = jnp.concatenate([jnp.sqrt(c) * m, jnp.eye(n, dtype=m.dtype)], axis=0)
        q, _ = jnp.linalg.qr(stack)
        return (b_ / c) * m + (a_ - b_ / c) / jnp.sqrt(c) * jnp.matmul(q[:n], q[n:].T,
                                                                     precision=HI)

    emit("qdwh_qr_step", once(qr_step, x1), 20 / 3 * n**3 + 2 * n**3,
         note="1 GPU: geqrf + orgqr of 2N x N, then a gemm")
    del x1

    half = n // 2
    one = jax.make_mesh((1,), ("x",), devices=devs[:1])
    ah = make_spd(half, jnp.float64, NamedSharding(one, P("x", None)))
    emit("syevd_half", once(lambda m: jaxmg.syevd(m, mesh=one, in_specs=(P("x", None),)), ah),
         4 * half**3, note="N/2 on one GPU")


if __name__ == "__main__":
    main()
