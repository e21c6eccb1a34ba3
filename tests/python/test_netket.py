"""jaxmg from NetKet (an optional test dependency: skipped without it), on 4 CPU devices:
VMC_SR on a 12-site transverse-field Ising chain through NetKet's own distributed solvers
(written against JAXMg 1.4's API), through a bare ``jaxmg.linalg.solve`` solver and through
the seeds-era MinSR call, each giving the energies of NetKet's default dense solver; the same
with 13 sites and plain SR (195 parameters, which do not split evenly over 4 devices).
NetKet's own distributed solvers refuse that size themselves (their check that the matrix
size divides the process grid), so the 195-parameter case runs the other two.

NetKet sets a global context mesh when it is imported, so the drivers run in a process of
their own (this file run as a script), not in the test process."""

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

ITERATIONS = 8
SOLVERS = ["cholesky_distributed", "pinv_smooth_distributed", "linalg.solve", "seeds MinSR"]
CASES = [(12, True, name) for name in ["cholesky", *SOLVERS]] + [
    (13, False, name) for name in ["cholesky", "linalg.solve", "seeds MinSR"]]


def _energies(nk, solver, sites, use_ntk):
    graph = nk.graph.Chain(sites)
    hilbert = nk.hilbert.Spin(0.5, N=graph.n_nodes)
    hamiltonian = nk.operator.IsingJax(hilbert, graph, h=1.0)
    model = nk.models.RBM(alpha=1, param_dtype=float)
    sampler = nk.sampler.MetropolisLocal(hilbert, n_chains=16)
    state = nk.vqs.MCState(sampler, model, n_samples=512, seed=1, sampler_seed=2)
    driver = nk.driver.VMC_SR(hamiltonian, nk.optimizer.Sgd(0.01), variational_state=state,
                              diag_shift=0.01, linear_solver=solver, use_ntk=use_ntk)
    log = nk.logging.RuntimeLog()
    driver.run(ITERATIONS, out=log, show_progress=False)
    return [float(e) for e in np.asarray(log.data["Energy"]["Mean"])]


def _solver(nk, name):
    import jax
    from jax.sharding import PartitionSpec as P

    import jaxmg

    if name in ("cholesky", "cholesky_distributed", "pinv_smooth_distributed"):
        return getattr(nk.optimizer.solver, name)
    if name == "linalg.solve":
        return lambda A, b: (jaxmg.linalg.solve(A, b, assume_a="pos"), None)

    def seeds_minsr(A, b):  # a published MinSR driver's call, written for the seeds' API
        return jaxmg.potrs(A, b, T_A=4096, mesh=jax.sharding.get_abstract_mesh(),
                           in_specs=(P("S", None),)), None

    return seeds_minsr


def _worker():
    import jax

    jax.config.update("jax_enable_x64", True)
    import netket as nk

    out = {}
    for sites, use_ntk, name in CASES:
        out[f"{sites} {use_ntk} {name}"] = _energies(nk, _solver(nk, name), sites, use_ntk)
    print(json.dumps(out))


@pytest.fixture(scope="module")
def energies():
    if importlib.util.find_spec("netket") is None:  # not imported here: see the docstring
        pytest.skip("needs NetKet (an optional test dependency)")
    env = dict(os.environ, JAX_PLATFORMS="cpu",
               XLA_FLAGS="--xla_force_host_platform_device_count=4")
    run = subprocess.run([sys.executable, __file__], env=env, capture_output=True, text=True,
                         timeout=900)
    assert run.returncode == 0, run.stderr[-4000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("name", SOLVERS)
def test_minsr_12_sites(energies, name):
    got, want = energies[f"12 True {name}"], energies["12 True cholesky"]
    assert len(got) == ITERATIONS
    np.testing.assert_allclose(got, want, rtol=1e-8)


@pytest.mark.parametrize("name", ["linalg.solve", "seeds MinSR"])
def test_plain_sr_195_parameters(energies, name):
    np.testing.assert_allclose(energies[f"13 False {name}"], energies["13 False cholesky"],
                               rtol=1e-8)


if __name__ == "__main__":
    _worker()
