"""Where potrs's single-device engine (``one_device``) spends time beyond cuSOLVER's own
potrf + potrs, on the GPUs there are (one is enough: the engine's fixed costs are there on
one GPU too).

For each N (float64 unless given) it times, alternating, best and median of ``reps``:
  native       cho_factor + cho_solve, jitted, on one GPU (what the targets compare with);
  eager        jaxmg.potrs(a, b) as a user calls it (engine "auto");
  jit          the same inside the user's jax.jit (mesh and specs given): no eager Python;
  jit_x10      ten solves with the same A in one jitted program (x fed back as b, so they
               run in order), per solve: what one call costs on the GPU once dispatch is
               amortized;
  dispatch     a jitted program that only adds 1 to b: the floor of one program's dispatch.
With ``--trace DIR`` it also records a jax.profiler trace of a few eager and native calls
(GPU kernels and the host's FFI handler) into DIR.

    python3 bench/experiments/diag_potrs_overhead.py [--n 512,8192] [--dtype float64] \
        [--reps 30] [--trace DIR]
"""
import argparse
import json
import os
import sys

import jax

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax.sharding import Mesh, PartitionSpec as P  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))  # bench_ops
import bench_ops  # noqa: E402
import jaxmg  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", default="512,8192")
    ap.add_argument("--dtype", default="float64")
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--ndev", type=int, default=0, help="GPUs of the mesh (0: all)")
    ap.add_argument("--trace", default="")
    args = ap.parse_args()
    devs = jax.devices()
    devs = devs[: args.ndev] if args.ndev else devs
    mesh = Mesh(np.array(devs), ("x",))
    specs = (P("x", None), P(None, None))
    dt = jnp.dtype(args.dtype)
    for n in [int(v) for v in args.n.split(",")]:
        a, b, a1, b1 = bench_ops.potrs_inputs(n, dt, mesh)
        user_jit = jax.jit(lambda a, b: jaxmg.potrs(a, b, mesh=mesh, in_specs=specs,
                                                    return_status=True))

        @jax.jit
        def ten(a, b):
            x = b
            for _ in range(10):
                x, _ = jaxmg.potrs(a, x, mesh=mesh, in_specs=specs, return_status=True)
            return x

        plus = jax.jit(lambda b: b + 1)
        cases = {
            "native": lambda: bench_ops.native_potrs(a1, b1),
            "eager": lambda: jaxmg.potrs(a, b, return_status=True),
            "jit": lambda: user_jit(a, b),
            "jit_x10": lambda: ten(a, b),
            "dispatch": lambda: plus(b1),
        }
        for f in list(cases.values()) * 2:  # compile and warm
            bench_ops.timed(f)
        times = {k: [] for k in cases}
        for _ in range(args.reps):
            for k, f in cases.items():
                times[k].append(bench_ops.timed(f))
        times["jit_x10"] = [t / 10 for t in times["jit_x10"]]
        row = {"bench": "diag_potrs_overhead", "n": n, "dtype": args.dtype,
               "ndev": len(devs), "reps": args.reps, "device": devs[0].device_kind,
               "jax": jax.__version__}
        for k, ts in times.items():
            row[k + "_best_ms"] = 1e3 * min(ts)
            row[k + "_median_ms"] = 1e3 * float(np.median(ts))
        print(json.dumps(row), flush=True)
        if args.trace and n == max(int(v) for v in args.n.split(",")):
            with jax.profiler.trace(args.trace):
                for _ in range(3):
                    bench_ops.timed(cases["native"])
                    bench_ops.timed(cases["eager"])
                    bench_ops.timed(cases["jit"])
        del a, a1


if __name__ == "__main__":
    main()
