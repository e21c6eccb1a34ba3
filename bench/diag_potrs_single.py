"""Diagnostic: where the single engine's potrs time goes on 2 GPUs, against native JAX on one.

jaxmg.potrs on 2 GPUs (single engine: all-gather, Cholesky and two triangular solves on every
device, a pmax so that all agree on failure, the exact-info branch) is 1.14-1.29x native JAX
at N = 8192-16384 and 2.7x at N = 1024 (docs/benchmarks.md). This times its pieces, each as
its own jitted shard_map program over the same 2 GPUs, best of several warm runs:

  native      cho_factor + cho_solve on one GPU
  replicated  the same inside a 2-device shard_map on a replicated matrix (no gather)
  gather      the all-gather alone (its sum is returned so that it cannot be dropped)
  body        gather + Cholesky + 2 triangular solves (no pmax, no failure handling)
  body+pmax   body + the pmax on failure + NaN select
  jaxmg       jaxmg.potrs(engine="single"), end to end
  split       jaxmg.potrs(engine="split"), end to end: the two-device Cholesky with no gather
              (python/jaxmg/_split.py; 4 chunks of U, 4 block rows of S)
  split/cC    the split engine's program with C chunks (2, 4, 8), 4 block rows

    python3 bench/diag_potrs_single.py [N,...]    # one JSON line per (N, variant)
"""
import functools
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
from jaxmg import _core, _engine, _split  # noqa: E402

tri = jax.lax.linalg.triangular_solve


def solve(a, b):
    L = _engine.cholesky(a)
    y = tri(L, b, left_side=True, lower=True)
    return tri(L, y, left_side=True, lower=True, transpose_a=True, conjugate_a=True), L


def main():
    ns = [int(x) for x in (sys.argv[1] if len(sys.argv) > 1 else "1024,8192,16384").split(",")]
    devs = jax.devices()[:2]
    mesh = Mesh(np.array(devs), ("x",))
    rows = NamedSharding(mesh, P("x", None))
    repl = NamedSharding(mesh, P())
    reps = 10
    for n in ns:
        dt = jnp.float64
        a = bench_ops.make_spd(n, dt, rows)
        b = jax.device_put(jnp.ones((n, 1), dt), repl)
        a1 = jax.device_put(a, devs[0])
        b1 = jax.device_put(jnp.ones((n, 1), dt), devs[0])
        ar = jax.device_put(a, repl)

        def sm(body, in_specs):
            return jax.jit(_core.shard_map(body, mesh, in_specs=in_specs, out_specs=P()))

        native = jax.jit(lambda a, b: solve(a, b)[0])
        replicated = sm(lambda a, b: solve(a, b)[0], (P(), P()))
        gather = sm(lambda a: jnp.sum(_engine.gather(a, ("x",)))[None], (P("x", None),))
        body = sm(lambda a, b: solve(_engine.gather(a, ("x",)), b)[0], (P("x", None), P()))

        def with_pmax(a, b):
            x, L = solve(_engine.gather(a, ("x",)), b)
            failed = _engine.agree_failed(_engine.diag_failed(L), ("x",))
            return jnp.where(failed, jnp.full_like(x, jnp.nan), x)

        body_pmax = sm(with_pmax, (P("x", None), P()))
        _, place, geo = _core.plan(a, None, None, None, True, "potrs")

        def split_program(chunks):
            body = functools.partial(_split.potrs_split, geo=geo, row_axes=place.row_axes,
                                     group_axes=place.group_axes, chunks=chunks)
            return jax.jit(_core.shard_map(body, mesh, in_specs=(P("x", None), P()),
                                           out_specs=(P(), P())))

        split_c = {c: split_program(c) for c in (2, 4, 8)}
        cases = {
            "native": lambda: native(a1, b1),
            "replicated": lambda: replicated(ar, b),
            "gather": lambda: gather(a),
            "body": lambda: body(a, b),
            "body+pmax": lambda: body_pmax(a, b),
            "jaxmg": lambda: jaxmg.potrs(a, b, engine="single"),
            "split": lambda: jaxmg.potrs(a, b, engine="split"),
            **{f"split/c{c}": (lambda f=f: f(a, b)) for c, f in split_c.items()},
        }
        for name, fn in cases.items():
            try:
                t, out = bench_ops.best_time(fn, reps)
                rec = {"diag": "potrs_single", "n": n, "variant": name, "seconds": t,
                       "device": devs[0].device_kind}
                if name.startswith("split"):  # a new engine: check its answer too
                    x = out[0] if isinstance(out, tuple) else out
                    rec["residual"] = float(jnp.max(jnp.abs(a @ x - b)) / jnp.max(jnp.abs(b)))
                print(json.dumps(rec), flush=True)
            except Exception as e:  # report and go on: this is a diagnostic
                print(json.dumps({"diag": "potrs_single", "n": n, "variant": name,
                                  "error": str(e)[:200]}), flush=True)
        del a, a1, ar


if __name__ == "__main__":
    main()
