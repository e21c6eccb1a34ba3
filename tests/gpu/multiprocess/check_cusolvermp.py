"""The cuSOLVERMp engine with one process per GPU, under the launcher:

    python -m jaxmg.launch -n 2 tests/gpu/multiprocess/check_cusolvermp.py [N]

Every process builds its rows of the same matrices (no host has them whole), runs potrs and
syevd with engine="cusolvermp" at all four dtypes, and checks its own rows of the residuals
(A x - b, A V - V diag(w)) with LAPACK's threshold 30 against N ||A||_1 eps. Exits non-zero
on the first failure; process 0 prints one line per case.
"""

import sys

import jax
import jax.experimental.multihost_utils
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

import jaxmg

jax.config.update("jax_enable_x64", True)
N = int(sys.argv[1]) if len(sys.argv) > 1 else 256
EPS = {np.float32: 2**-24, np.float64: 2**-53, np.complex64: 2**-24, np.complex128: 2**-53}


def matrix(dtype):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((N, N))
    if np.issubdtype(dtype, np.complexfloating):
        x = x + 1j * rng.standard_normal((N, N))
    a = x @ x.conj().T / N + np.eye(N)
    return ((a + a.conj().T) / 2).astype(dtype)


def main():
    mesh = Mesh(np.array(jax.devices()), ("x",))
    rows = NamedSharding(mesh, P("x", None))
    me = jax.process_index()
    for dtype in (np.float32, np.float64, np.complex64, np.complex128):
        a = matrix(dtype)
        A = jax.make_array_from_callback(a.shape, rows, lambda idx: a[idx])
        b = np.ones((N, 2), dtype)
        x, info = jaxmg.potrs(A, b, mesh=mesh, in_specs=(P("x", None), P(None, None)),
                              return_status=True, engine="cusolvermp")
        xs = np.asarray(jax.device_get(x.addressable_shards[0].data)).astype(np.complex128)
        scale = N * np.linalg.norm(a, 1) * EPS[dtype]
        r = np.linalg.norm(a.astype(np.complex128) @ xs - b, 1) / scale
        w, V, info2 = jaxmg.syevd(A, mesh=mesh, in_specs=(P("x", None),), return_status=True,
                                  engine="cusolvermp")
        sh = V.addressable_shards[0]
        v = np.asarray(sh.data).astype(np.complex128)
        wv = np.asarray(jax.device_get(w.addressable_shards[0].data)).astype(np.float64)
        lo = sh.index[0].start or 0
        rv = np.linalg.norm(a[lo:lo + v.shape[0]].astype(np.complex128) @ np.asarray(
            jax.experimental.multihost_utils.process_allgather(V, tiled=True)).astype(
                np.complex128) - v * wv, 1) / scale
        ok = int(np.asarray(info.addressable_shards[0].data).ravel()[0]) == 0 and r < 30 \
            and int(np.asarray(info2.addressable_shards[0].data).ravel()[0]) == 0 and rv < 30
        if me == 0:
            print(f"{np.dtype(dtype).name}: potrs residual {r:.3g}, syevd residual {rv:.3g} "
                  f"on {jax.process_count()} processes: {'ok' if ok else 'FAILED'}", flush=True)
        if not ok:
            sys.exit(1)


if __name__ == "__main__":
    main()
