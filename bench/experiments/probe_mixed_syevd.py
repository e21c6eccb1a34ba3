"""Probe: float64 eigendecomposition as float32 syevd + Ogita-Aishima refinement in float64.

    python bench/experiments/probe_mixed_syevd.py --n 16384,32768 --iters 4 --out probe.jsonl

One GPU, JAX only (no jaxmg). For each N it times, warm:
  - native float64 `jnp.linalg.eigh` (the reference, and the quality every result is held to);
  - float32 `eigh` of the shifted matrix (A - sigma I, sigma = trace/N, shifted in float64);
  - each refinement step (Ogita & Aishima, "Iterative refinement for symmetric eigenvalue
    decomposition", JJIAM 2018, algorithm RefSyEv) in float64: R = I - X^T X, S = X^T A_s X,
    lambda_i = s_ii / (1 - r_ii), E = (S + R diag(lambda)) / (lambda_j - lambda_i) where the gap
    exceeds delta = 2 (||S - diag(lambda)|| + ||A_s|| ||R||), R / 2 elsewhere; X <- X + X E.
and reports after each step the scaled residual ||A X - X diag(w)||_F / ||A||_F, the loss of
orthogonality ||X^T X - I||_F / sqrt(N), the eigenvalue error against the float64 `eigh`
(divided by ||A||_2), delta and how many eigenvalues still sit within delta of a neighbour.
The matrix is the benchmarks' kind (dense symmetric noise in [-0.5, 0.5) plus N on the diagonal).
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import jax

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp

HI = jax.lax.Precision.HIGHEST


def make_matrix(n: int, kind: str):
    def gen():
        key = jax.random.PRNGKey(7)
        g = jax.random.uniform(key, (n, n), jnp.float64, -0.5, 0.5)
        a = jnp.tril(g) + jnp.tril(g, -1).T
        if kind == "bench":
            return a + n * jnp.eye(n, dtype=jnp.float64)
        # "graded": eigenvalues spread over [1e-6, 1] with many near-equal pairs
        return a / n + jnp.diag(jnp.repeat(jnp.linspace(0.0, 1.0, n // 2), 2))
    return jax.jit(gen)()


def norm2_sym(m, steps: int = 12):
    """Power-iteration estimate of the 2-norm of a symmetric matrix (a lower bound)."""
    v = jnp.ones((m.shape[0],), m.dtype) / jnp.sqrt(m.shape[0])

    def body(_, v):
        w = jnp.matmul(m, v, precision=HI)
        return w / jnp.maximum(jnp.linalg.norm(w), 1e-300)

    v = jax.lax.fori_loop(0, steps, body, v)
    return jnp.linalg.norm(jnp.matmul(m, v, precision=HI))


@jax.jit
def refine(a_s, x):
    n = a_s.shape[0]
    r = jnp.eye(n, dtype=x.dtype) - jnp.matmul(x.T, x, precision=HI)
    s = jnp.matmul(x.T, jnp.matmul(a_s, x, precision=HI), precision=HI)
    s = (s + s.T) / 2
    lam = jnp.diagonal(s) / (1 - jnp.diagonal(r))
    off = s - jnp.diag(lam)
    delta = 2 * (1.1 * norm2_sym(off) + jnp.max(jnp.abs(lam)) * 1.1 * norm2_sym(r))
    gap = lam[None, :] - lam[:, None]
    big = jnp.abs(gap) > delta
    e = jnp.where(big, (s + r * lam[None, :]) / jnp.where(big, gap, 1), r / 2)
    xn = x + jnp.matmul(x, e, precision=HI)
    ls = jnp.sort(lam)
    clustered = jnp.sum(jnp.diff(ls) <= delta)
    return xn, lam, delta, clustered, jnp.max(jnp.abs(e))


@jax.jit
def quality(a, x, w):
    n = a.shape[0]
    res = jnp.linalg.norm(jnp.matmul(a, x, precision=HI) - x * w[None, :]) / jnp.linalg.norm(a)
    orth = jnp.linalg.norm(jnp.matmul(x.T, x, precision=HI) - jnp.eye(n, dtype=x.dtype)) / jnp.sqrt(n)
    return res, orth


def timed(fn, *args):
    out = fn(*args)
    jax.block_until_ready(out)
    t0 = time.perf_counter()
    out = fn(*args)
    jax.block_until_ready(out)
    return out, time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", default="4096")
    ap.add_argument("--iters", type=int, default=4)
    ap.add_argument("--kind", default="bench")
    ap.add_argument("--out", default="probe_mixed_syevd.jsonl")
    args = ap.parse_args()
    dev = jax.devices()[0]
    for n in [int(v) for v in args.n.split(",")]:
        def emit(rec):
            rec = {"probe": "mixed_syevd", "device": dev.device_kind, "jax": jax.__version__,
                   "n": n, "kind": args.kind, **rec}
            print(json.dumps(rec), flush=True)
            with open(args.out, "a") as f:
                f.write(json.dumps(rec) + "\n")

        a = make_matrix(n, args.kind)
        sigma = jnp.trace(a) / n
        a_s = a - sigma * jnp.eye(n, dtype=a.dtype)
        anorm = float(jnp.max(jnp.abs(jnp.linalg.eigvalsh(a_s[:256, :256])))) + abs(float(sigma))

        (w64, v64), t64 = timed(jax.jit(jnp.linalg.eigh), a)
        res, orth = quality(a, v64, w64)
        emit({"case": "eigh_f64", "seconds": t64, "res": float(res), "orth": float(orth)})
        del v64

        f32 = jax.jit(lambda m: jnp.linalg.eigh(m.astype(jnp.float32)))
        (w32, v32), t32 = timed(f32, a_s)
        x = v32.astype(jnp.float64)
        del v32
        w = w32.astype(jnp.float64) + sigma
        res, orth = quality(a, x, w)
        emit({"case": "eigh_f32_shifted", "seconds": t32, "res": float(res), "orth": float(orth),
              "eig_err": float(jnp.max(jnp.abs(jnp.sort(w) - w64)) / anorm)})
        total = t32
        for k in range(args.iters):
            (xn, lam, delta, clustered, emax), tk = timed(refine, a_s, x)
            x = xn
            del xn
            total += tk
            w = lam + sigma
            res, orth = quality(a, x, w)
            emit({"case": "refine", "step": k + 1, "seconds": tk, "cumulative_s": total,
                  "res": float(res), "orth": float(orth), "delta": float(delta),
                  "clustered": int(clustered), "max_e": float(emax),
                  "eig_err": float(jnp.max(jnp.abs(jnp.sort(w) - w64)) / anorm)})
        del x, a, a_s


if __name__ == "__main__":
    main()
