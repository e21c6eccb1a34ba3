"""Where the host time of an eager jaxmg.potrs goes (n = 512, 1-device mesh of the first
device): the median time until a call returns (its program enqueued, not finished) for the
eager call, its planning alone (``_plan.plan``: checks, placement, tile, engine), the op's
own jitted entry (``_api._entry``), ``_api._run`` (the entry with its eager bookkeeping) and
the same op inside the user's jit (the eager path's Python is the difference), then a
cProfile of eager calls, its top entries by own time.

    python3 bench/experiments/prof_eager.py [calls]
"""
import cProfile
import pstats
import sys
import time

import jax

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P  # noqa: E402

import jaxmg  # noqa: E402
from jaxmg import _api, _config, _plan, _rules  # noqa: E402

calls = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
n = 512
mesh = Mesh(np.array(jax.devices()[:1]), ("x",))
a = jax.device_put(jnp.eye(n) * 2.0, NamedSharding(mesh, P("x", None)))
b = jax.device_put(jnp.ones((n, 1)), NamedSharding(mesh, P()))
for _ in range(10):
    jax.block_until_ready(jaxmg.potrs(a, b))
# What jaxmg.potrs does for this call, step by step (python/jaxmg/_api.py).
plan, a, b, vector = _plan.plan("potrs", a, None, None, None, True, "auto", b=b)
fn = _rules.potrs(plan.engine, plan.place, plan.geo, False, _config.get_timeout())
ent = _api._entry(fn, vector)
specs = (P("x", None), P(None, None))
user_jit = jax.jit(lambda a, b: jaxmg.potrs(a, b, mesh=mesh, in_specs=specs))


def host(f):
    ts = []
    for _ in range(calls):
        t = time.perf_counter()
        out = f()
        ts.append(time.perf_counter() - t)
        jax.block_until_ready(out)
    return round(1e6 * float(np.median(ts)), 1)


print("engine", plan.engine, "| tile", plan.geo.tile)
print("host us: eager", host(lambda: jaxmg.potrs(a, b)),
      "| plan", host(lambda: _plan.plan("potrs", a, None, None, None, True, "auto", b=b)),
      "| entry", host(lambda: ent(a, b)),
      "| run", host(lambda: _api._run(fn, False, (a, b), vector=vector,
                                      platform=plan.place.platform)),
      "| user jit", host(lambda: user_jit(a, b)))
pr = cProfile.Profile()
pr.enable()
for _ in range(calls):
    jax.block_until_ready(jaxmg.potrs(a, b))
pr.disable()
st = pstats.Stats(pr)
st.sort_stats("tottime").print_stats(25)
