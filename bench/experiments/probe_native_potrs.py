"""Probe: native JAX's potrs pieces on one GPU (cholesky alone, the two triangular solves
alone, both), best of 20, to set beside bench/experiments/probe_potrf.c.

    python3 bench/experiments/probe_native_potrs.py [N]"""
import json
import sys

import jax

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402

import os  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))  # bench_ops
import bench_ops  # noqa: E402

n = int(sys.argv[1]) if len(sys.argv) > 1 else 8192
dev = jax.devices()[0]
tri = jax.lax.linalg.triangular_solve
for dname in ("float32", "float64"):
    dt = jnp.dtype(dname)
    a = bench_ops.make_spd(n, dt, jax.sharding.SingleDeviceSharding(dev))
    b = jax.device_put(jnp.ones((n, 1), dt), dev)
    L = jax.jit(lambda a: jax.lax.linalg.cholesky(a, symmetrize_input=False))(a)
    fns = {
        "cholesky": (jax.jit(lambda a: jax.lax.linalg.cholesky(a, symmetrize_input=False)), (a,)),
        "2 triangular solves": (jax.jit(lambda L, b: tri(L, tri(L, b, left_side=True, lower=True),
                                                         left_side=True, lower=True,
                                                         transpose_a=True)), (L, b)),
        "cho_factor+cho_solve": (bench_ops.native_potrs, (a, b)),
    }
    for what, (f, args) in fns.items():
        t, _ = bench_ops.best_time(lambda: f(*args), 20)
        print(json.dumps({"probe": "native_potrs", "n": n, "dtype": dname, "what": what,
                          "ms": 1e3 * t}), flush=True)
