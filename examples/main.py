"""The main job: the original JAXMg README example, then a larger random SPD solve, on whatever
devices exist (GPUs when present, else 4 virtual CPU devices). Prints residuals and times.

    python examples/main.py [N]
"""

import os
import sys
import time

# Virtual CPU devices for machines without GPUs; ignored by GPU backends.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")

import jax

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from jaxmg import potrs

devices = jax.devices()
ndev = len(devices)
print(f"Devices: {devices}")

# ---- the original JAXMg README example (unchanged but for the device list) ----------------
N = 12
T_A = 3
dtype = jnp.float64
A = jnp.diag(jnp.arange(N, dtype=dtype) + 1)
b = jnp.ones((N, 1), dtype=dtype)
mesh = jax.make_mesh((ndev,), ("x",))
A = jax.device_put(A, NamedSharding(mesh, P("x", None)))
b = jax.device_put(b, NamedSharding(mesh, P(None, None)))
out = potrs(A, b, T_A=T_A, mesh=mesh, in_specs=(P("x", None),))
print(out)
expected_out = 1.0 / (jnp.arange(N, dtype=dtype) + 1)
ok_small = bool(jnp.allclose(out.flatten(), expected_out))
print(ok_small)

# ---- a larger random SPD solve ------------------------------------------------------------
N = int(sys.argv[1]) if len(sys.argv) > 1 else (8192 if devices[0].platform == "gpu" else 2048)
N -= N % ndev
key_a, key_b = jax.random.split(jax.random.PRNGKey(0))
sharded = NamedSharding(mesh, P("x", None))


@jax.jit
def _spd(key):
    x = jax.random.normal(key, (N, N), dtype=jnp.float64)
    return x @ x.T / N + jnp.eye(N)


def make_spd(key):
    return jax.device_put(_spd(key), sharded)


A = make_spd(key_a)
b = jax.random.normal(key_b, (N, 4), dtype=jnp.float64)
x, info = potrs(A, b, return_status=True)  # mesh, spec and T_A inferred
x.block_until_ready()
t0 = time.perf_counter()
x, info = potrs(A, b, return_status=True)
x.block_until_ready()
elapsed = time.perf_counter() - t0
r = A @ x - b
eps = jnp.finfo(jnp.float64).eps
ratio = float(jnp.linalg.norm(r, jnp.inf) / (N * jnp.linalg.norm(A, jnp.inf) * jnp.linalg.norm(x, jnp.inf) * eps))
print(f"potrs float64 N={N} on {ndev} {devices[0].platform} device(s): {elapsed:.3f} s, "
      f"info={int(info)}, scaled residual ||Ax-b||/(N||A||||x||eps) = {ratio:.3g}")
ok = ok_small and int(info) == 0 and ratio < 30
print("OK" if ok else "FAILED")
sys.exit(0 if ok else 1)
