"""Memory: the largest potrs (float64, or float32 with --dtype) that fits, the input donated,
one case per ndev:N. The time includes compilation (one call per case).

    XLA_PYTHON_CLIENT_PREALLOCATE=false XLA_PYTHON_CLIENT_MEM_FRACTION=0.95 \
        python bench/bench_memory.py --cases 1:114688,2:163840 --out mem.jsonl

The matrix is generated in place on the devices, donated to jaxmg.potrs (engine
"cusolvermg"), and the solution is checked against rows of the matrix regenerated afterwards.
"""

import argparse
import datetime
import json
import os
import sys
import time

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
os.environ.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.95")
import jax

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import jaxmg
from bench_ops import make_spd, peak_bytes, spd_rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", default="1:114688,2:163840")
    ap.add_argument("--tile", type=int, default=2048)
    ap.add_argument("--dtype", default="float64", choices=["float32", "float64"])
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    gpus = jax.devices()
    dt = jnp.dtype(args.dtype)
    for case in args.cases.split(","):
        ndev, n = (int(v) for v in case.split(":"))
        if ndev > len(gpus):
            continue
        devs = gpus[:ndev]
        mesh = Mesh(np.array(devs), ("x",))
        rec = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
               "device": devs[0].device_kind, "jax": jax.__version__, "op": "potrs",
               "dtype": str(dt), "impl": "jaxmg[cusolvermg] donated", "n": n, "ndev": ndev,
               "tile": args.tile, "matrix_gb_per_device": n * n * dt.itemsize / ndev / 1e9}
        try:
            a = make_spd(n, dt, NamedSharding(mesh, P("x", None)))
            b = jax.device_put(jnp.ones((n, 1), dt), NamedSharding(mesh, P(None, None)))
            jax.block_until_ready((a, b))
            t0 = time.perf_counter()
            x, info = jaxmg.potrs(a, b, T_A=args.tile, return_status=True, donate=True,
                                  engine="cusolvermg")
            x.block_until_ready()
            rec["seconds"] = time.perf_counter() - t0
            rec["info"] = int(info)
            rec["a_deleted"] = bool(a.is_deleted())
            del a
            rows = np.array([0, 1, n // 3, n // 2, n - 2, n - 1])
            ar = np.asarray(jax.jit(lambda: spd_rows(rows, n, dt))())
            xs = np.asarray(x)[:, 0]
            r = ar @ xs - 1.0
            rec["sampled_scaled_residual"] = float(
                np.abs(r).max() / (n * np.abs(ar).sum(axis=1).max() * np.abs(xs).max()
                                   * np.finfo(dt).eps))
            rec["peak_bytes"] = peak_bytes(devs)
        except Exception as e:
            rec["error"] = str(e).splitlines()[0][:400]
        print(json.dumps(rec), flush=True)
        with open(args.out, "a") as fh:
            fh.write(json.dumps(rec) + "\n")


if __name__ == "__main__":
    main()
