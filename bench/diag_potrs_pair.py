"""Diagnostic: the two-device pipelined Cholesky solve (``_potrs.potrs_pair``) against the
gather-then-factor single engine and native JAX on one GPU, in one process on 2 GPUs.

Variants, best of ``reps`` warm runs each:
  native        cho_factor + cho_solve on one GPU (the baseline of the target)
  gather        jaxmg.potrs(engine="single") with the all-gather body (potrs_single)
  pair/kK/bB    jaxmg.potrs(engine="single") with potrs_pair, leading block of K rows
                (K = h: the whole own diagonal block), B block rows of S
  pair-nocomm   potrs_pair's arithmetic (K = h, B = 4) with the transfer replaced by the
                local block (wrong answer, only a time: the compute part alone)
Every jaxmg variant's answer is checked (relative residual).

    python3 bench/diag_potrs_pair.py [N,...] [dtype]   # one JSON line per (N, variant)
"""
import json
import os
import sys

import jax

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax.sharding import Mesh, PartitionSpec as P  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_ops  # noqa: E402
import jaxmg  # noqa: E402
from jaxmg import _core, _potrs  # noqa: E402


# (first, blocks) of the pair variants; first None = the whole own diagonal block
PAIR_CASES = [(None, 4), (512, 2), (1024, 2), (1024, 4), (2048, 2), (2048, 4)]


def fresh():
    _potrs._program.cache_clear()
    _potrs._differentiable.cache_clear()
    _core.entry.cache_clear()


def main():
    ns = [int(x) for x in (sys.argv[1] if len(sys.argv) > 1 else "8192,16384").split(",")]
    dt = jnp.dtype(sys.argv[2] if len(sys.argv) > 2 else "float64")
    devs = jax.devices()[:2]
    mesh = Mesh(np.array(devs), ("x",))
    reps = 10
    flags = os.environ.get("XLA_FLAGS", "")
    for n in ns:
        a, b, a1, b1 = bench_ops.potrs_inputs(n, dt, mesh)
        native = bench_ops.native_potrs

        def with_engine(use_pair, blocks=None, first=None):
            def fn():
                return jaxmg.potrs(a, b, engine="single", return_status=True)
            def setup():
                _potrs.USE_PAIR = use_pair
                _potrs.PAIR_BLOCKS = blocks or 2
                _potrs.PAIR_FIRST = first
                fresh()
            return setup, fn

        _, place, geo = _core.plan(a, None, None, None, True, "potrs")

        def nocomm_body(a_loc, bb):
            real = jax.lax.ppermute
            try:
                jax.lax.ppermute = lambda x, axis, perm: x
                return _potrs.potrs_pair(a_loc, bb, geo, place.row_axes, place.group_axes,
                                         blocks=4)
            finally:
                jax.lax.ppermute = real

        nocomm = jax.jit(_core.shard_map(nocomm_body, mesh, in_specs=(P("x", None), P()),
                                         out_specs=(P(), P())))
        cases = [("native", None, lambda: native(a1, b1)),
                 ("gather",) + with_engine(False)]
        for first, bl in PAIR_CASES:
            cases.append((f"pair/k{first or n // 2}/b{bl}",) + with_engine(True, bl, first))
        cases.append(("pair-nocomm", None, lambda: nocomm(a, b)))
        for name, setup, fn in cases:
            try:
                if setup:
                    setup()
                t, out = bench_ops.best_time(fn, reps)
                rec = {"diag": "potrs_pair", "n": n, "dtype": str(dt), "variant": name,
                       "seconds": t, "device": devs[0].device_kind, "xla_flags": flags}
                if name.startswith(("gather", "pair/")):
                    x, info = out
                    rec["info"] = int(info)
                    rec["residual"] = float(jnp.max(jnp.abs(a @ x - b)) / jnp.max(jnp.abs(b)))
                print(json.dumps(rec), flush=True)
            except Exception as e:  # report and go on: this is a diagnostic
                print(json.dumps({"diag": "potrs_pair", "n": n, "variant": name,
                                  "error": str(e)[:300]}), flush=True)
        _potrs.USE_PAIR, _potrs.PAIR_FIRST, _potrs.PAIR_BLOCKS = True, None, 2
        del a, a1


if __name__ == "__main__":
    main()
