"""Mesh and spec inference inside and outside ``jit``, from JAX's sharding in types: the
sharding of a concrete array, the sharding in a traced array's type, the context mesh
(``jax.set_mesh``), an ``AbstractMesh`` passed where a ``Mesh`` is. Explicit and Auto axes
alike; a replicated matrix is sharded by rows inside the op."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

import jaxmg

ROWS = P("S", None)


@pytest.fixture(params=[False, True], ids=["auto", "explicit"])
def mesh(request, mesh_of):
    return mesh_of([2, 0, 3, 1], names=("S",), explicit=request.param)


def _problem(num, n=48):
    a = num.hpd(n, np.float64, seed=n)
    return a, num.rhs((n,), np.float64, seed=n + 1)


def test_inside_jit_from_the_arrays_type(mesh, num):
    a, b = _problem(num)
    a_s = jax.device_put(a, NamedSharding(mesh, ROWS))
    x = jax.jit(lambda m, r: jaxmg.potrs(m, r))(a_s, b)
    num.assert_solves(a, x, b, np.float64)
    inv = jax.jit(jaxmg.potri)(a_s)
    assert np.abs(a @ np.asarray(inv) - np.eye(a.shape[0])).max() < 1e-10
    w = jax.jit(lambda m: jaxmg.syevd(m, return_eigenvectors=False))(a_s)
    np.testing.assert_allclose(np.asarray(w), np.linalg.eigvalsh(a), atol=1e-10)


def test_linalg_solve_under_the_context_mesh(mesh, num):
    """What a user writes first, inside a jitted function under jax.set_mesh (NetKet's
    pattern), with a row-sharded and with a replicated matrix; and its gradient."""
    a, b = _problem(num)
    for spec in (ROWS, P()):
        a_s = jax.device_put(a, NamedSharding(mesh, spec))
        with jax.set_mesh(mesh):
            x = jax.jit(lambda m, r: jaxmg.linalg.solve(m, r, assume_a="pos"))(a_s, b)
            g = jax.jit(jax.grad(lambda r: jnp.sum(jaxmg.linalg.solve(a_s, r) ** 2)))(b)
        num.assert_solves(a, x, b, np.float64)
        want = 2 * np.linalg.solve(a, np.linalg.solve(a, b))
        np.testing.assert_allclose(np.asarray(g), want, rtol=1e-9)


def test_abstract_mesh_where_a_mesh_is(mesh, num):
    """The seeds-era MinSR call: potrs(A, b, T_A=..., mesh=get_abstract_mesh(),
    in_specs=(P("S", None),)) inside jit."""
    a, b = _problem(num)
    a_s = jax.device_put(a, NamedSharding(mesh, ROWS))

    def minsr(m, r):
        return jaxmg.potrs(m, r, T_A=4096, mesh=jax.sharding.get_abstract_mesh(),
                           in_specs=(P("S", None),))

    with jax.set_mesh(mesh):
        x = jax.jit(minsr)(a_s, b)
    num.assert_solves(a, x, b, np.float64)
    # Given outside jit, an AbstractMesh is matched to the array's concrete mesh.
    x = jaxmg.potrs(a_s, b, mesh=mesh.abstract_mesh, in_specs=(ROWS,))
    num.assert_solves(a, x, b, np.float64)
