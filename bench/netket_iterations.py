"""Time per NetKet VMC_SR iteration with jaxmg's solvers against NetKet's default dense one,
on every device JAX sees (CPU devices: set XLA_FLAGS=--xla_force_host_platform_device_count=K).

    python3 bench/netket_iterations.py [--sites 12] [--samples 1024] [--iters 20] [--out f.jsonl]

Each solver's driver runs ``--warmup`` iterations first (compilation), then ``--iters``
timed ones; the median per-iteration time is reported with the final energy. MinSR
(``use_ntk=True``: the solver sees the samples x samples NTK) unless ``--sr``.
"""

from __future__ import annotations

import argparse
import json
import time

import jax

jax.config.update("jax_enable_x64", True)
import netket as nk  # noqa: E402
import numpy as np  # noqa: E402

import jaxmg  # noqa: E402


def solvers():
    return {
        "netket cholesky (default dense)": nk.optimizer.solver.cholesky,
        "netket cholesky_distributed (jaxmg)": nk.optimizer.solver.cholesky_distributed,
        "jaxmg.linalg.solve": lambda A, b: (jaxmg.linalg.solve(A, b, assume_a="pos"), None),
    }


def driver(solver, sites, samples, use_ntk):
    graph = nk.graph.Chain(sites)
    hilbert = nk.hilbert.Spin(0.5, N=graph.n_nodes)
    hamiltonian = nk.operator.IsingJax(hilbert, graph, h=1.0)
    sampler = nk.sampler.MetropolisLocal(hilbert, n_chains=16)
    state = nk.vqs.MCState(sampler, nk.models.RBM(alpha=1, param_dtype=float),
                           n_samples=samples, seed=1, sampler_seed=2)
    drv = nk.driver.VMC_SR(hamiltonian, nk.optimizer.Sgd(0.01), variational_state=state,
                           diag_shift=0.01, linear_solver=solver, use_ntk=use_ntk)
    return drv, hamiltonian


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sites", type=int, default=12)
    ap.add_argument("--samples", type=int, default=1024)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--sr", action="store_true", help="plain SR (params x params) not MinSR")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    devs = jax.devices()
    for name, solver in solvers().items():
        drv, ham = driver(solver, args.sites, args.samples, not args.sr)
        drv.run(args.warmup, show_progress=False)
        times = []
        for _ in range(args.iters):
            t0 = time.perf_counter()
            drv.run(1, show_progress=False)
            jax.block_until_ready(drv.state.parameters)
            times.append(time.perf_counter() - t0)
        rec = {"bench": "netket_iterations", "solver": name, "sites": args.sites,
               "samples": args.samples, "minsr": not args.sr, "devices": len(devs),
               "device": devs[0].device_kind, "jax": jax.__version__, "netket": nk.__version__,
               "iteration_median_s": float(np.median(times)),
               "iteration_q1_s": float(np.quantile(times, 0.25)),
               "iteration_q3_s": float(np.quantile(times, 0.75)),
               "energy": float(drv.state.expect(ham).mean.real)}
        print(json.dumps(rec), flush=True)
        if args.out:
            with open(args.out, "a") as fh:
                fh.write(json.dumps(rec) + "\n")


if __name__ == "__main__":
    main()
