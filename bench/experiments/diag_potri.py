"""Diagnostic: residual of jaxmg.potri through the cuSOLVERMg engine (one distributed
factorization and one distributed solve per device for its identity columns) per dtype and
tile, on 1 GPU and on every GPU there is: |A X - I| and the error of X's lower and strictly
upper triangles against NumPy's inverse.

    python3 bench/experiments/diag_potri.py [N]      # prints one line per case
"""
import sys
import jax
jax.config.update("jax_enable_x64", True)
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
import jaxmg

n = int(sys.argv[1]) if len(sys.argv) > 1 else 4096
devs = jax.devices()
rng = np.random.default_rng(0)
for ndev in sorted({1, len(devs)}):
    mesh = Mesh(np.array(devs[:ndev]), ("x",))
    for dt in [np.float32, np.float64, np.complex64, np.complex128]:
        x = rng.standard_normal((n, n)) + (1j * rng.standard_normal((n, n)) if np.iscomplexobj(dt(0)) else 0)
        a64 = x @ x.conj().T / n + np.eye(n)
        a = jax.device_put(a64.astype(dt), NamedSharding(mesh, P("x", None)))
        for t in [128, 256, 512, 1024, 2048]:
            if t > n // ndev:
                continue
            inv, info = jaxmg.potri(a, T_A=t, return_status=True, engine="cusolvermg")
            xi = np.asarray(inv, np.complex128)
            r = np.abs(a64 @ xi - np.eye(n)).max()
            lo = np.abs(np.tril(xi) - np.tril(np.linalg.inv(a64))).max()
            up = np.abs(np.triu(xi, 1) - np.triu(np.linalg.inv(a64), 1)).max()
            print(f"potri ndev={ndev} {dt.__name__:10s} T={t:5d} info={int(info)} |AX-I|={r:.2e} lower_err={lo:.2e} upper_err={up:.2e}", flush=True)
