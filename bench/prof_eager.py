"""Where the host time of an eager jaxmg.potrs goes (n = 512, 1-device mesh of the first
device): the median time until a call returns (its program enqueued, not finished) for the
eager call, the op's own jitted entry (``_core.entry``), ``_core.run_entry`` and the same op
inside the user's jit (the eager path's Python is the difference), then a cProfile of eager
calls, its top entries by own time.

    python3 bench/prof_eager.py [calls]
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
from jaxmg import _core, _mesh, _potrs  # noqa: E402
from jaxmg._geometry import Geometry  # noqa: E402

calls = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
n = 512
mesh = Mesh(np.array(jax.devices()[:1]), ("x",))
a = jax.device_put(jnp.eye(n) * 2.0, NamedSharding(mesh, P("x", None)))
b = jax.device_put(jnp.ones((n, 1)), NamedSharding(mesh, P()))
for _ in range(10):
    jax.block_until_ready(jaxmg.potrs(a, b))
place = _mesh.resolve(a, None, None, "potrs")
geo = Geometry(n, 1, _core.choose_tile(None, n, place.platform, True, "potrs"))
eng = jaxmg._engine.choose("auto", "potrs", place, n, a.dtype)
fn = _potrs._differentiable(place, geo, False, _core.get_timeout(), eng)
ent = _core.entry(fn)
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


print("host us: eager", host(lambda: jaxmg.potrs(a, b)), "| entry", host(lambda: ent(a, b)),
      "| run_entry", host(lambda: _core.run_entry(fn, False, (a, b), platform=place.platform)),
      "| user jit", host(lambda: user_jit(a, b)))
pr = cProfile.Profile()
pr.enable()
for _ in range(calls):
    jax.block_until_ready(jaxmg.potrs(a, b))
pr.disable()
st = pstats.Stats(pr)
st.sort_stats("tottime").print_stats(25)
