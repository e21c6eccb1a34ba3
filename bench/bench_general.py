"""The general dense ops of jaxmg.linalg against their JAX counterparts, on one device, in
one process:

    python bench/bench_general.py --ops lu_factor,qr --n 4096,16384 --dtype float64 \
        --out general.jsonl

For every (op, N) it times, warm (best of --reps, each call inside ``jax.jit``), jaxmg's op
on a one-device mesh and the JAX function of the same name (``jnp.linalg`` /
``jax.scipy.linalg``) on the same device and the same input, and writes one JSON object
per line to --out (``jaxmg_s``, ``native_s``, ``ratio`` = jaxmg / native, compile times
apart). The generalized eigenproblem has no JAX function: its baseline is the same
reduction written with JAX's own pieces (Cholesky, two triangular solves, eigh, one more
solve). The eigenvalue subset (``eigh_subset``: the lowest ``--subset`` fraction of the
eigenpairs) is compared with the full ``jnp.linalg.eigh`` and with jaxmg's full ``eigh``.

Inputs: random normal matrices (jax.random, on the device); Hermitian ones as (G + Gᴴ) / 2;
positive definite ones as G Gᴴ / N + I. Tall matrices for lstsq are N x N/2.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import time

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import jax

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp
import jax.scipy.linalg as jsl
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from jaxmg import linalg

HERE = os.path.dirname(os.path.abspath(__file__))
_tri = jax.lax.linalg.triangular_solve


def _native_gen_eigh(a, b):
    L = jnp.linalg.cholesky(b)
    y = _tri(L, a, left_side=True, lower=True)
    c = _tri(L, jnp.conj(y).T, left_side=True, lower=True)
    w, v = jnp.linalg.eigh(c)
    return w, _tri(L, v, left_side=True, lower=True, transpose_a=True, conjugate_a=True)


def cases(frac: float):
    """name -> (input kinds, jaxmg function, native function)."""
    def lo(n):
        return max(1, int(round(frac * n)))

    return {
        "lu_factor": (("gen",), linalg.lu_factor, jsl.lu_factor),
        "solve_gen": (("gen", "rhs"), lambda a, b: linalg.solve(a, b, assume_a="gen"),
                      jnp.linalg.solve),
        "det": (("gen",), linalg.det, jnp.linalg.det),
        "cholesky": (("hpd",), linalg.cholesky, jsl.cholesky),
        "qr": (("gen",), linalg.qr, jnp.linalg.qr),
        "svd": (("gen",), lambda a: linalg.svd(a, full_matrices=False),
                lambda a: jnp.linalg.svd(a, full_matrices=False)),
        "svdvals": (("gen",), lambda a: linalg.svd(a, compute_uv=False),
                    lambda a: jnp.linalg.svd(a, compute_uv=False)),
        "polar": (("gen",), linalg.polar, jsl.polar),
        "lstsq": (("tall", "rhs"), lambda a, b: linalg.lstsq(a, b)[0],
                  lambda a, b: jnp.linalg.lstsq(a, b)[0]),
        "eigh_gen": (("herm", "hpd"), lambda a, b: linalg.eigh(a, b), _native_gen_eigh),
        "eigh_subset": (("herm",),
                        lambda a: linalg.eigh(a, subset_by_index=(0, lo(a.shape[0]) - 1)),
                        jnp.linalg.eigh),
        "eigvalsh_subset": (("herm",),
                            lambda a: linalg.eigvalsh(a, subset_by_index=(0, lo(a.shape[0]) - 1)),
                            jnp.linalg.eigvalsh),
        "eigh_full": (("herm",), linalg.eigh, jnp.linalg.eigh),
    }


def make(kind: str, n: int, dtype, key, sharding):
    shape = {"rhs": (n, 1), "tall": (n, n // 2)}.get(kind, (n, n))

    def gen(key):
        k1, k2 = jax.random.split(key)
        g = jax.random.normal(k1, shape, jnp.finfo(dtype).dtype)
        if jnp.issubdtype(dtype, jnp.complexfloating):
            g = g + 1j * jax.random.normal(k2, shape, g.dtype)
        g = g.astype(dtype)
        if kind == "herm":
            g = (g + jnp.conj(g).T) / 2
        elif kind == "hpd":
            g = g @ jnp.conj(g).T / n + jnp.eye(n, dtype=dtype)
        return g

    return jax.block_until_ready(jax.jit(gen, out_shardings=sharding)(key))


def best(fn, args, reps: int):
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    first = time.perf_counter() - t0
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    return min(times), first


def commit() -> str:
    try:
        return subprocess.run(["git", "-C", HERE, "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True).stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ops", required=True)
    ap.add_argument("--n", required=True)
    ap.add_argument("--dtype", default="float64")
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--subset", type=float, default=0.01)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    dtype = jnp.dtype(args.dtype)
    dev = jax.devices()[0]
    mesh = Mesh(np.array([dev]), ("x",))
    rows = NamedSharding(mesh, P("x", None))
    table = cases(args.subset)
    base = {"script": "bench/bench_general.py", "commit": commit(), "device": dev.device_kind,
            "platform": dev.platform, "jax": jax.__version__, "host": platform.node(),
            "date": datetime.date.today().isoformat(), "dtype": args.dtype}
    for n in (int(x) for x in args.n.split(",")):
        for op in args.ops.split(","):
            kinds, mine, native = table[op]
            key = jax.random.key(n)
            ins = [make(k, n, dtype, jax.random.fold_in(key, i), rows) for i, k in enumerate(kinds)]
            rec = dict(base, op=op, n=n)
            try:
                rec["jaxmg_s"], rec["jaxmg_first_s"] = best(jax.jit(mine), ins, args.reps)
                rec["native_s"], rec["native_first_s"] = best(jax.jit(native), ins, args.reps)
                rec["ratio"] = rec["jaxmg_s"] / rec["native_s"]
                if op in ("eigh_subset", "eigvalsh_subset"):
                    rec["subset"] = max(1, int(round(args.subset * n)))
                    full = linalg.eigh if op == "eigh_subset" else linalg.eigvalsh
                    rec["jaxmg_full_s"], _ = best(jax.jit(full), ins, args.reps)
                    rec["vs_jaxmg_full"] = rec["jaxmg_s"] / rec["jaxmg_full_s"]
            except Exception as e:  # a size that does not fit: recorded, the run goes on
                rec["error"] = f"{type(e).__name__}: {str(e)[:300]}"
            print(json.dumps(rec), flush=True)
            with open(args.out, "a") as f:
                f.write(json.dumps(rec) + "\n")
            del ins


if __name__ == "__main__":
    main()
