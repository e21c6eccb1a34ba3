"""jaxmg as a user calls it (``engine="auto"``, eager) against native JAX on one GPU, for
potrs, potri and syevd, measured in pairs: for each (op, dtype, N) the two calls alternate
(native, jaxmg, native, jaxmg, ...) until ``--budget`` seconds have passed or ``--reps``
pairs were taken, so that clock and thermal drift hit both alike. Reports each side's
median and best time and the median per-pair ratio jaxmg / native. Uses only jaxmg's public
API, so the same script measures any version of the package (``--label`` names it).

    python3 bench/auto_vs_native.py --label new --out results.jsonl \
        [--ops potrs,potri,syevd] [--dtypes float32,float64] [--n 4096,8192,16384]

Native JAX: ``cho_factor`` + ``cho_solve`` (potrs), ``jnp.linalg.inv`` (potri),
``jnp.linalg.eigh`` (syevd), jitted, on the first GPU of the mesh. The mesh is every GPU
JAX sees. bench/run_compare_gpu.sh runs it for two versions of the package in one call.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import jax

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_ops  # noqa: E402
import jaxmg  # noqa: E402

NATIVE = {
    "potrs": bench_ops.native_potrs,
    "potri": jax.jit(jnp.linalg.inv),
    "syevd": jax.jit(jnp.linalg.eigh),
}


def auto_engine(op, a, n, dtype):
    """The engine ``auto`` picks, as this version of the package names it."""
    try:
        from jaxmg import _engines, _mesh

        return _engines.choose("auto", op, _mesh.resolve(a, None, None, op), n, dtype)
    except ImportError:
        pass
    try:
        from jaxmg import _engine, _mesh

        return _engine.choose("auto", op, _mesh.resolve(a, None, None, op), n, dtype)
    except Exception as e:  # noqa: BLE001 - a record of what happened, not a failure
        return f"unknown ({type(e).__name__})"


def case(op, dtype, n, mesh, reps, budget):
    sharded = NamedSharding(mesh, P("x", None))
    a = bench_ops.make_spd(n, dtype, sharded)
    dev = mesh.devices.flat[0]
    a1 = jax.device_put(a, dev)
    if op == "potrs":
        b = jax.device_put(jnp.ones((n, 1), dtype), NamedSharding(mesh, P()))
        b1 = jax.device_put(jnp.ones((n, 1), dtype), dev)
        f_nat = lambda: NATIVE[op](a1, b1)  # noqa: E731
        f_mg = lambda: jaxmg.potrs(a, b, return_status=True)  # noqa: E731
    elif op == "potri":
        f_nat = lambda: NATIVE[op](a1)  # noqa: E731
        f_mg = lambda: jaxmg.potri(a, return_status=True)  # noqa: E731
    else:
        f_nat = lambda: NATIVE[op](a1)  # noqa: E731
        f_mg = lambda: jaxmg.syevd(a, return_status=True)  # noqa: E731
    for f in (f_nat, f_mg, f_nat, f_mg):  # compile and warm both
        bench_ops.timed(f)
    tn, tm = [], []
    t_end = time.perf_counter() + budget
    while len(tn) < reps and (len(tn) < 3 or time.perf_counter() < t_end):
        tn.append(bench_ops.timed(f_nat))
        tm.append(bench_ops.timed(f_mg))
    out = f_mg()
    info = int(out[-1])
    check = None
    if op == "potrs":
        check = float(jnp.max(jnp.abs(a @ out[0] - b)) / jnp.max(jnp.abs(b)))
    r = np.array(tm) / np.array(tn)
    return {
        "op": op, "dtype": jnp.dtype(dtype).name, "n": n, "ndev": mesh.devices.size,
        "engine": auto_engine(op, a, n, dtype), "pairs": len(tn),
        "ratio_median": float(np.median(r)), "ratio_q1": float(np.quantile(r, 0.25)),
        "ratio_q3": float(np.quantile(r, 0.75)),
        "jaxmg_median_s": float(np.median(tm)), "jaxmg_best_s": min(tm),
        "native_median_s": float(np.median(tn)), "native_best_s": min(tn),
        "info": info, "residual": check,
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--label", required=True, help="names the version of jaxmg measured")
    ap.add_argument("--commit", default=None, help="its commit (default: git rev-parse)")
    ap.add_argument("--ops", default="potrs,potri,syevd")
    ap.add_argument("--dtypes", default="float32,float64")
    ap.add_argument("--n", default="4096,8192,16384")
    ap.add_argument("--reps", type=int, default=20, help="pairs at most")
    ap.add_argument("--budget", type=float, default=6.0, help="seconds of pairs per case")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    commit = args.commit
    if commit is None:
        try:
            commit = subprocess.check_output(["git", "rev-parse", "--short", "HEAD"],
                                             text=True, stderr=subprocess.DEVNULL).strip()
        except Exception:  # noqa: BLE001
            commit = "?"
    devs = jax.devices()
    mesh = Mesh(np.array(devs), ("x",))
    meta = {"bench": "auto_vs_native", "label": args.label, "commit": commit,
            "jaxmg_file": os.path.dirname(jaxmg.__file__), "device": devs[0].device_kind,
            "jax": jax.__version__,
            "date": time.strftime("%Y-%m-%d", time.gmtime())}
    with open(args.out, "a") as fh:
        for op in args.ops.split(","):
            for dname in args.dtypes.split(","):
                for n in [int(x) for x in args.n.split(",")]:
                    try:
                        rec = case(op, jnp.dtype(dname), n, mesh, args.reps, args.budget)
                    except Exception as e:  # noqa: BLE001 - out of memory, typically
                        rec = {"op": op, "dtype": dname, "n": n,
                               "error": str(e).splitlines()[0][:300]}
                    rec = {**meta, **rec}
                    print(json.dumps(rec), flush=True)
                    fh.write(json.dumps(rec) + "\n")
                    fh.flush()


if __name__ == "__main__":
    main()
