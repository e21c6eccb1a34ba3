"""Diagnostic: is raw cusolverMgPotri itself correct on the GPUs, without any of jaxmg's code?

jaxmg's cuSOLVERMg potri path gave wrong inverses on 2 GPUs (docs/benchmarks.md). This runs
raw cusolverMgPotrf + cusolverMgPotri from bench/raw_mg.c on a matrix already in the
block-cyclic layout (the benchmark's own setup) and compares the lower triangle of inv(M)
that cuSOLVERMg should leave with NumPy's inverse of the same M, per device count, dtype and
tile (a tile of N / ndev is one tile per device: no permutation at all).

    python3 bench/experiments/diag_potri_raw.py [N]      # prints one line per case
"""
import os
import sys

import jax

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))  # bench_ops
import bench_ops  # noqa: E402
from jaxmg._geometry import Geometry  # noqa: E402

import ctypes  # noqa: E402


def raw_potri_lower_error(devs, n, tile, dtype):
    ndev = len(devs)
    sh = NamedSharding(Mesh(np.array(devs), ("x",)), P("x", None))
    geo = Geometry(n, ndev, tile)
    a = bench_ops.make_spd(n, dtype, sh)
    a64 = np.asarray(a).astype(np.complex128)
    src = np.asarray(geo.src)
    # What cuSOLVERMg sees: M[i, g] = a_bc[row pi(g), col i] with a_bc = a[:, src] and the
    # shard of device d read column-major (its rows are M's columns).
    a_bc = jax.jit(lambda x: x[:, src], out_shardings=sh)(a)
    jax.block_until_ready(a_bc)
    m_exp = a64[:, src][src, :].T  # M[i, g] = a[src(g), src(i)]
    ptrs = (ctypes.c_void_p * ndev)(*bench_ops._ptrs(a_bc))
    devids = (ctypes.c_int * ndev)(*[d.id for d in devs])
    times = (ctypes.c_double * 1)()
    info = ctypes.c_int(0)
    err = ctypes.create_string_buffer(512)
    dt = [jnp.float32, jnp.float64, jnp.complex64, jnp.complex128].index(jnp.dtype(dtype).type)
    rc = bench_ops.raw_lib().raw_mg_run(
        1, dt, ndev, devids, ptrs, None, ctypes.c_int64(n), ctypes.c_int64(tile), None, None, 0,
        1, times, ctypes.byref(info), err, 512)
    if rc:
        return f"error {err.value.decode()}"
    x = np.asarray(a_bc).astype(np.complex128)  # rows pi(g) hold column g of the result
    # Column g of cuSOLVERMg's matrix is row src(g) of a_bc (src: geo.src, the storage map).
    m_res = x[src, :].T  # m_res[i, g]
    inv_exp = np.linalg.inv(m_exp)
    scale = np.abs(inv_exp).max()
    lo = np.abs(np.tril(m_res) - np.tril(inv_exp)).max() / scale
    up = np.abs(np.triu(m_res, 1) - np.triu(inv_exp, 1)).max() / scale
    return (f"info={info.value} rel_err_lower={lo:.2e} rel_err_upper(not written)={up:.2e} "
            f"t={times[0]:.3f}s")


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 4096
    devs = jax.devices()
    for ndev in sorted({1, len(devs)}):
        for dtype in [np.float64, np.complex128, np.float32]:
            for tile in [256, 1024, n // ndev]:
                if tile > n // ndev or (n // ndev) % tile:
                    continue
                msg = raw_potri_lower_error(devs[:ndev], n, tile, dtype)
                print(f"raw cusolverMgPotri ndev={ndev} {np.dtype(dtype).name:10s} N={n} "
                      f"T={tile:5d}: {msg}", flush=True)


if __name__ == "__main__":
    main()
