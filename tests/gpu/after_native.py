"""jaxmg after a native op of the same size, in a fresh process with JAX's default memory
settings (run alone on a GPU: tests/gpu/run_gpu.sh runs it before pytest, once per engine).

The gathered matrix and the solver workspaces of a jaxmg call once came from outside XLA's
pool, which by JAX's default holds 75 % of the GPU and keeps what JAX frees: a call whose
matrix is larger than the remaining 25 % then ran out of memory although XLA had room. Here
a float64 matrix of 36 % of XLA's pool goes through a native op of the same size (freed into
the pool), then through jaxmg's potrs; it must succeed, as native JAX would.

    python3 tests/gpu/after_native.py one_device|mg      # exit status 0: passed
"""
import sys

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

import jaxmg

jax.config.update("jax_enable_x64", True)

dev = jax.devices("gpu")[0]
limit = dev.memory_stats()["bytes_limit"]
# A float64 matrix of 36 % of XLA's pool: more than the GPU memory outside the pool
# (25 % of the GPU by JAX's default), and twice of it (the matrix and its factor, or the
# matrix and a native op's result) fits in the pool.
n = int((0.36 * limit / 8) ** 0.5) // 64 * 64


@jax.jit
def make():
    i = jnp.arange(n)
    # Symmetric, diagonally dominant (off-diagonal row sums < 2 ln n << n): SPD.
    return 1.0 / (1.0 + jnp.abs(i[:, None] - i[None, :])) + n * jnp.eye(n)


a = jax.device_put(make(), dev)
b = jnp.ones((n,), jnp.float64, device=dev)
native = jax.jit(lambda m: m * 2.0 + 1.0)(a)  # XLA's own N x N work of the same size
native.block_until_ready()
del native                                     # freed into XLA's pool, which keeps it
mesh = Mesh(np.array([dev]), ("x",))
a = jax.device_put(a, NamedSharding(mesh, P("x", None)))
x, info = jaxmg.potrs(a, b, engine=sys.argv[1], return_status=True)
rows = np.random.default_rng(0).choice(n, 64, replace=False)
r = np.asarray(a[rows] @ x - 1.0)
print("N", n, "limit", limit, "info", int(info), "residual", float(np.abs(r).max()))
assert int(info) == 0 and np.abs(r).max() < 1e-10
