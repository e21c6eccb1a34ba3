"""Both API generations: the seeds' calls (covered across the suite) and JAXMg 1.4's, which
NetKet's distributed solvers make: ``*_shardmap_ctx`` at the jit level on whole arrays,
returning the work buffer first, ``matrix_specs``, ``return_logdet``, 2D meshes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

import jaxmg

ROWS = P("S", None)


@pytest.fixture(params=[False, True], ids=["auto", "explicit"])
def mesh(request, mesh_of):
    return mesh_of([0, 1, 2, 3], names=("S",), explicit=request.param)


def test_potrs_shardmap_ctx_at_the_jit_level(mesh, num):
    """NetKet's cholesky_distributed: `_A_work, x, _status = potrs_shardmap_ctx(A, b,
    T_A=...)` inside jit under the context mesh, b a vector."""
    n = 64
    a, b = num.hpd(n, np.float64, seed=1), num.rhs((n,), np.float64, seed=2)
    a_s = jax.device_put(a, NamedSharding(mesh, ROWS))

    def solve(m, r):
        a_work, x, status = jaxmg.potrs_shardmap_ctx(m, r, T_A=16)
        return a_work, x, status

    with jax.set_mesh(mesh):
        a_work, x, status = jax.jit(solve)(a_s, b)
    assert a_work.shape == (n, n) and int(status) == 0 and x.shape == (n,)
    num.assert_solves(a, x, b, np.float64)
    a_work, x, logdet, status = jaxmg.potrs_shardmap_ctx(a_s, b, 16, return_logdet=True)
    np.testing.assert_allclose(float(logdet), np.linalg.slogdet(a)[1], rtol=1e-12)
    num.assert_solves(a, x, b, np.float64)


def test_syevd_shardmap_ctx_at_the_jit_level(mesh, num):
    """NetKet's pinv_smooth_distributed: `_A_work, w, U, _status = syevd_shardmap_ctx(A,
    T_A=...)`; U sharded like A."""
    n = 48
    a = num.hpd(n, np.float64, seed=3)
    a_s = jax.device_put(a, NamedSharding(mesh, ROWS))
    with jax.set_mesh(mesh):
        a_work, w, v, status = jax.jit(lambda m: jaxmg.syevd_shardmap_ctx(m, T_A=8))(a_s)
        _, w_only, status_n = jax.jit(
            lambda m: jaxmg.syevd_shardmap_ctx(m, 8, return_eigenvectors=False))(a_s)
    assert int(status) == int(status_n) == 0 and a_work.shape == (n, n)
    np.testing.assert_allclose(np.asarray(w), np.linalg.eigvalsh(a), atol=1e-10)
    np.testing.assert_allclose(np.asarray(w_only), np.asarray(w), atol=1e-10)
    vv = np.asarray(v)
    assert np.abs(a @ vv - vv * np.asarray(w)).max() < 1e-10


def test_failure_gives_nan_and_status(mesh, num):
    n = 32
    a = num.hpd(n, np.float64, seed=4)
    a[20, 20] = -10.0
    a_s = jax.device_put(a, NamedSharding(mesh, ROWS))
    _, x, status = jaxmg.potrs_shardmap_ctx(a_s, np.ones(n), 8)
    assert int(status) == 21 and np.isnan(np.asarray(x)).all()


def test_matrix_specs_return_logdet_and_2d_meshes(mesh_of, num):
    """A matrix sharded over both axes of a 2D mesh (P("pr", "pc")) runs with its rows over
    both axes, given as JAXMg 1.4's `matrix_specs`, to a global *_shardmap_ctx call, or
    inferred from the array (as the seeds' `in_specs` such a spec is refused, as before)."""
    mesh = mesh_of([0, 1, 2, 3], names=("pr", "pc"), shape=(2, 2))
    n = 32
    a, b = num.hpd(n, np.complex128, seed=5), num.rhs((n, 3), np.complex128, seed=6)
    a_s = jax.device_put(a, NamedSharding(mesh, P("pr", "pc")))
    x, logdet, info = jaxmg.potrs(a_s, b, 8, mesh, matrix_specs=P("pr", "pc"),
                                  return_status=True, return_logdet=True)
    assert int(info) == 0
    num.assert_solves(a, x, b, np.complex128)
    np.testing.assert_allclose(float(logdet), np.linalg.slogdet(a)[1], rtol=1e-12)
    x2 = jaxmg.potrs(a_s, b, matrix_specs=P("pr", "pc"))
    num.assert_solves(a, x2, b, np.complex128)
    _, w, v, status = jaxmg.syevd_shardmap_ctx(a_s, 8, mesh, P("pr", "pc"))
    assert int(status) == 0
    np.testing.assert_allclose(np.asarray(w), np.linalg.eigvalsh(a), atol=1e-10)
    w2 = jaxmg.syevd(a_s, 8, mesh, matrix_specs=P("pr", "pc"), return_eigenvectors=False)
    np.testing.assert_allclose(np.asarray(w2), np.asarray(w), atol=1e-10)
    num.assert_solves(a, jaxmg.potrs(a_s, b), b, np.complex128)  # inferred
    with pytest.raises(ValueError, match="shards the columns"):
        jaxmg.potrs(a_s, b, in_specs=(P("pr", "pc"),))
    with pytest.raises(TypeError, match="matrix_specs or in_specs, not both"):
        jaxmg.potrs(a_s, b, in_specs=(P("pr", None),), matrix_specs=P("pr", "pc"))


def test_the_seeds_form_inside_shard_map(mesh, num):
    """Inside the user's shard_map the same name is the seeds' per-device form."""
    n = 32
    a, b = num.hpd(n, np.float64, seed=7), num.rhs((n,), np.float64, seed=8)
    a_s = jax.device_put(a, NamedSharding(mesh, ROWS))
    f = jax.jit(jax.shard_map(lambda m, r: jaxmg.potrs_shardmap_ctx(m, r, 8), mesh=mesh,
                              in_specs=(ROWS, P()), out_specs=(P(), P()), check_vma=False))
    x, status = f(a_s, jax.device_put(b, NamedSharding(mesh, P())))
    assert int(np.asarray(status)[0]) == 0
    num.assert_solves(a, x, b, np.float64)
