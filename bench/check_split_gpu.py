"""GPU check of potrs(engine="split") (two-device Cholesky without a gather) on 2 GPUs:
scaled residuals against float64 NumPy for the four dtypes, 1 and 3 right-hand sides, and
LAPACK info equal to the cuSOLVERMg engine's for a matrix that is not positive definite in
either half. Prints one line per case and "SPLIT GPU: PASS" or "SPLIT GPU: FAIL".

    python3 bench/check_split_gpu.py
"""
import sys

import jax

jax.config.update("jax_enable_x64", True)
import numpy as np  # noqa: E402
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P  # noqa: E402

import jaxmg  # noqa: E402


def main():
    devs = jax.devices()[:2]
    mesh = Mesh(np.array(devs), ("x",))
    rows = NamedSharding(mesh, P("x", None))
    rng = np.random.default_rng(0)
    ok = True
    eps = {np.float32: 1.2e-7, np.complex64: 1.2e-7, np.float64: 2.2e-16, np.complex128: 2.2e-16}
    for n in (64, 1000, 4096, 8192):
        for dt in (np.float32, np.float64, np.complex64, np.complex128):
            cplx = np.iscomplexobj(dt(0))
            x = rng.standard_normal((n, n)) + (1j * rng.standard_normal((n, n)) if cplx else 0)
            a = x @ x.conj().T / n + np.eye(n)
            for k in (1, 3):
                b = rng.standard_normal((n, k)) + (1j * rng.standard_normal((n, k)) if cplx else 0)
                xs, info = jaxmg.potrs(jax.device_put(a.astype(dt), rows), b.astype(dt),
                                       engine="split", return_status=True)
                xs = np.asarray(xs, np.complex128)
                r = np.linalg.norm(a @ xs - b) / (np.linalg.norm(a) * np.linalg.norm(xs) * n * eps[dt])
                good = int(info) == 0 and r < 30
                ok &= good
                print(f"{'PASS' if good else 'FAIL'} n={n} {np.dtype(dt).name} nrhs={k} "
                      f"info={int(info)} scaled_residual={r:.2e}", flush=True)
    for bad in (10, 40):  # a pivot in the first half and one in the second (n = 64)
        a = np.eye(64) * 2.0
        a[bad, bad] = -1.0
        infos = {}
        for eng in ("mg", "split"):
            xs, info = jaxmg.potrs(jax.device_put(a, rows), np.ones(64), engine=eng,
                                   return_status=True)
            infos[eng] = (int(info), bool(np.isnan(np.asarray(xs)).all()))
        good = infos["mg"] == infos["split"] and infos["split"][0] == bad + 1
        ok &= good
        print(f"{'PASS' if good else 'FAIL'} not positive definite at row {bad}: {infos}", flush=True)
    print("SPLIT GPU: PASS" if ok else "SPLIT GPU: FAIL", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
