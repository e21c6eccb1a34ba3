"""Host time of one eager jaxmg.potrs against the same op inside the user's jit: the time
until each call returns (the program enqueued, not finished), median of ``reps``, on a
1-device mesh of the first GPU (or CPU). The difference is the eager path's Python.

    python3 bench/diag_eager_host.py [N] [reps]
"""
import json
import sys
import time

import jax

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P  # noqa: E402

import jaxmg  # noqa: E402


def host_time(fn, reps):
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        out = fn()
        ts.append(time.perf_counter() - t0)
        jax.block_until_ready(out)
    return 1e6 * float(np.median(ts))


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 512
    reps = int(sys.argv[2]) if len(sys.argv) > 2 else 300
    mesh = Mesh(np.array(jax.devices()[:1]), ("x",))
    specs = (P("x", None), P(None, None))
    a = jax.device_put(jnp.eye(n) * 2.0, NamedSharding(mesh, P("x", None)))
    b = jax.device_put(jnp.ones((n, 1)), NamedSharding(mesh, P()))
    uj = jax.jit(lambda a, b: jaxmg.potrs(a, b, mesh=mesh, in_specs=specs, return_status=True))
    cases = {"eager": lambda: jaxmg.potrs(a, b, return_status=True), "jit": lambda: uj(a, b)}
    for f in cases.values():
        host_time(f, 5)
    row = {"bench": "diag_eager_host", "n": n, "reps": reps,
           "device": jax.devices()[0].device_kind}
    for _ in range(2):
        for k, f in cases.items():
            row[k + "_us"] = host_time(f, reps)
    row["python_us"] = row["eager_us"] - row["jit_us"]
    print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
