"""jaxmg from NetKet (an optional test dependency: skipped without it), on the 4 CPU devices
of the suite: VMC_SR on a 12-site transverse-field Ising chain through NetKet's own
distributed solvers (written against JAXMg 1.4's API), through a bare
``jaxmg.linalg.solve`` solver and through the seeds-era MinSR call, each giving the energies
of NetKet's default dense solver; the same with 13 sites and plain SR (195 parameters, which
do not split evenly over 4 devices). NetKet's own distributed solvers refuse that size
themselves (their check that the matrix size divides the process grid), so the 195-parameter
case runs the other two."""

import numpy as np
import pytest

nk = pytest.importorskip("netket")

import jax  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402

import jaxmg  # noqa: E402

ITERATIONS = 8


def _energies(solver, sites, use_ntk):
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
    return np.asarray(log.data["Energy"]["Mean"])


def _linalg_solve(A, b):
    return jaxmg.linalg.solve(A, b, assume_a="pos"), None


def _seeds_minsr(A, b):
    """A published MinSR driver's call, written for the seeds' API."""
    return jaxmg.potrs(A, b, T_A=4096, mesh=jax.sharding.get_abstract_mesh(),
                       in_specs=(P("S", None),)), None


SOLVERS = {
    "cholesky_distributed": lambda: nk.optimizer.solver.cholesky_distributed,
    "pinv_smooth_distributed": lambda: nk.optimizer.solver.pinv_smooth_distributed,
    "linalg.solve": lambda: _linalg_solve,
    "seeds MinSR": lambda: _seeds_minsr,
}


@pytest.fixture(scope="module")
def reference(cpus):
    return {(12, True): _energies(nk.optimizer.solver.cholesky, 12, True),
            (13, False): _energies(nk.optimizer.solver.cholesky, 13, False)}


@pytest.mark.parametrize("name", list(SOLVERS))
def test_minsr_12_sites(reference, name):
    energies = _energies(SOLVERS[name](), 12, True)
    want = reference[(12, True)]
    assert energies.shape == (ITERATIONS,)
    np.testing.assert_allclose(energies, want, rtol=1e-8)


@pytest.mark.parametrize("name", ["linalg.solve", "seeds MinSR"])
def test_plain_sr_195_parameters(reference, name):
    energies = _energies(SOLVERS[name](), 13, False)
    np.testing.assert_allclose(energies, reference[(13, False)], rtol=1e-8)
