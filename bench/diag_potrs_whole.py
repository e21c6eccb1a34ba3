"""Diagnostic: potrs's single engine with the one-call gather (``_potrs.potrs_whole``,
JAXMG_OP_POTRS_WHOLE: position 0 copies from its peers only the part of the matrix a lower
Cholesky reads, then cuSOLVERDn potrf + potrs) against the all-gather + XLA body
(``_potrs.potrs_single``) and native JAX on one GPU, in one process.

Variants, best of ``reps`` warm runs each, per (dtype, N):
  native        cho_factor + cho_solve on one GPU (the baseline of the target)
  gather/2      jaxmg.potrs(engine="single") on 2 GPUs, all-gather body (USE_WHOLE = False)
  whole/2       jaxmg.potrs(engine="single") on 2 GPUs, one-call body (USE_WHOLE = True)
  whole/1       the same on a 1-GPU mesh
  auto/2        jaxmg.potrs() on 2 GPUs (what a user gets)
Every jaxmg variant's answer is checked (relative residual, info).

    python3 bench/diag_potrs_whole.py [N,...] [dtype,...]   # one JSON line per case
"""
import json
import os
import sys

import jax

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_ops  # noqa: E402
import jaxmg  # noqa: E402
from jaxmg import _core, _potrs  # noqa: E402


def fresh(use_whole):
    _potrs.USE_WHOLE = use_whole
    _potrs._program.cache_clear()
    _potrs._differentiable.cache_clear()
    _core.entry.cache_clear()


def main():
    ns = [int(x) for x in (sys.argv[1] if len(sys.argv) > 1 else "1024,4096,8192,16384").split(",")]
    dts = (sys.argv[2] if len(sys.argv) > 2 else "float64,float32,complex128").split(",")
    reps = int(os.environ.get("REPS", "10"))
    devs = jax.devices()
    nd = min(2, len(devs))
    mesh2 = Mesh(np.array(devs[:nd]), ("x",))
    mesh1 = Mesh(np.array(devs[:1]), ("x",))
    for dname in dts:
        dt = jnp.dtype(dname)
        for n in ns:
            a, b, a1, b1 = bench_ops.potrs_inputs(n, dt, mesh2)
            # The same on a 1-device mesh: jaxmg.potrs infers it from the sharding.
            a1 = jax.device_put(a1, NamedSharding(mesh1, P("x", None)))
            b1 = jax.device_put(b1, NamedSharding(mesh1, P()))
            cases = [
                ("native", None, lambda: bench_ops.native_potrs(a1, b1)),
                (f"gather/{nd}", False, lambda: jaxmg.potrs(a, b, engine="single",
                                                            return_status=True)),
                (f"whole/{nd}", True, lambda: jaxmg.potrs(a, b, engine="single",
                                                          return_status=True)),
                ("whole/1", True, lambda: jaxmg.potrs(a1, b1, engine="single",
                                                      return_status=True)),
                (f"auto/{nd}", True, lambda: jaxmg.potrs(a, b, return_status=True)),
            ]
            for name, use_whole, fn in cases:
                try:
                    if use_whole is not None:
                        fresh(use_whole)
                    t, out = bench_ops.best_time(fn, reps)
                    rec = {"diag": "potrs_whole", "n": n, "dtype": dname, "variant": name,
                           "seconds": t, "device": devs[0].device_kind,
                           "jax": jax.__version__}
                    if name != "native":
                        x, info = out
                        aa, bb = (a1, b1) if name == "whole/1" else (a, b)
                        rec["info"] = int(info)
                        rec["residual"] = float(jnp.max(jnp.abs(aa @ x - bb))
                                                / jnp.max(jnp.abs(bb)))
                    print(json.dumps(rec), flush=True)
                except Exception as e:  # report and go on: this is a diagnostic
                    print(json.dumps({"diag": "potrs_whole", "n": n, "dtype": dname,
                                      "variant": name, "error": str(e)[:300]}), flush=True)
            fresh(True)
            del a, a1


if __name__ == "__main__":
    main()
