"""potrs on 2 GPUs (on every GPU there is, when fewer) against native JAX on one, measured in
pairs: for each (dtype, N) the two calls alternate ``reps`` times (native, jaxmg, native,
jaxmg, ...), so that clock and thermal drift hit both alike; reports the median and the
quartiles of the per-pair ratio jaxmg / native, and each side's best and median time.
jaxmg is ``jaxmg.potrs`` as a user calls it (engine "auto", eager; each record names the
engine auto picked: ``one_device``, ``gather`` or ``cusolvermg``), native is ``cho_factor`` +
``cho_solve`` jitted on one GPU.

    python3 bench/paired_potrs.py [N,...] [dtype,...] [reps]   # one JSON line per case
"""
import json
import sys

import jax

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax.sharding import Mesh  # noqa: E402

import os  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_ops  # noqa: E402
import jaxmg  # noqa: E402
from jaxmg import _engines, _mesh  # noqa: E402


def main():
    ns = [int(x) for x in (sys.argv[1] if len(sys.argv) > 1 else "8192,16384").split(",")]
    dts = (sys.argv[2] if len(sys.argv) > 2 else "float64,float32").split(",")
    reps = int(sys.argv[3]) if len(sys.argv) > 3 else 40
    devs = jax.devices()
    mesh = Mesh(np.array(devs[:2]), ("x",))
    for dname in dts:
        dt = jnp.dtype(dname)
        for n in ns:
            a, b, a1, b1 = bench_ops.potrs_inputs(n, dt, mesh)
            f_nat = lambda: bench_ops.native_potrs(a1, b1)  # noqa: E731
            f_mg = lambda: jaxmg.potrs(a, b, return_status=True)  # noqa: E731
            for f in (f_nat, f_mg, f_nat, f_mg):  # compile and warm both
                bench_ops.timed(f)
            tn, tm = [], []
            for _ in range(reps):
                tn.append(bench_ops.timed(f_nat))
                tm.append(bench_ops.timed(f_mg))
            r = np.array(tm) / np.array(tn)
            x, info = f_mg()
            res = float(jnp.max(jnp.abs(a @ x - b)) / jnp.max(jnp.abs(b)))
            engine = _engines.choose("auto", "potrs", _mesh.resolve(a, None, None, "potrs"), n, dt)
            print(json.dumps({
                "bench": "paired_potrs", "n": n, "dtype": dname, "ndev": mesh.devices.size,
                "reps": reps,
                "engine": engine,
                "ratio_median": float(np.median(r)), "ratio_q1": float(np.quantile(r, 0.25)),
                "ratio_q3": float(np.quantile(r, 0.75)),
                "ratio_of_best": float(min(tm) / min(tn)),
                "jaxmg_best_s": min(tm), "jaxmg_median_s": float(np.median(tm)),
                "native_best_s": min(tn), "native_median_s": float(np.median(tn)),
                "info": int(info), "residual": res, "device": devs[0].device_kind,
                "jax": jax.__version__}), flush=True)
            del a, a1


if __name__ == "__main__":
    main()
