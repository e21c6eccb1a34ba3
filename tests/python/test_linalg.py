"""jaxmg.linalg: the jax.scipy-style face, compared with jax.scipy.linalg / NumPy."""

import _util  # noqa: F401  (devices and x64 before JAX starts)
from _util import DTYPES, THRESH, eig_ratios, herm, hpd, inv_ratio, mesh_1d, put_rows, rand
from _util import solve_ratio

import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from jaxmg import linalg
from jaxmg.linalg import CholeskyFactor

GEOMETRIES = [(1, 5, None), (2, 12, 3), (3, 15, 2), (4, 16, 3), (4, 8, None)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ndev,n,tile", GEOMETRIES)
def test_cho_factor_cho_solve(dtype, ndev, n, tile):
    rng = np.random.default_rng(ndev * 100 + n)
    a = hpd(n, dtype, rng)
    b = rand(rng, (n, 3), dtype)
    mesh = mesh_1d(ndev)
    fac = linalg.cho_factor(put_rows(a, mesh), T_A=tile)
    assert isinstance(fac, CholeskyFactor) and int(fac.info) == 0
    assert fac.shape == (n, n) and fac.dtype == dtype
    x = linalg.cho_solve(fac, b)
    assert x.shape == (n, 3) and x.dtype == dtype
    assert solve_ratio(a, x, b, dtype) < THRESH
    # The same as jax.scipy's dense factor-and-solve, to rounding.
    ref = jsl.cho_solve(jsl.cho_factor(jnp.asarray(a, np.complex128 if np.iscomplexobj(a) else np.float64)), b)
    tol = 1e3 * n * np.finfo(dtype).eps * np.linalg.cond(a.astype(np.complex128))
    assert np.abs(np.asarray(x) - np.asarray(ref)).max() <= tol * np.abs(np.asarray(ref)).max()


def test_cho_solve_vector_and_scipy_style_unpacking():
    mesh = mesh_1d(4)
    a = hpd(12, np.float64, np.random.default_rng(1))
    b = np.arange(12.0)
    c, low = linalg.cho_factor(put_rows(a, mesh), lower=True)
    assert low is True and isinstance(c, CholeskyFactor)
    x = linalg.cho_solve((c, low), b)
    assert x.shape == (12,)
    assert solve_ratio(a, x, b, np.float64) < THRESH
    # jax.scipy.linalg's dense (c, lower) is solved as jax.scipy.linalg.cho_solve solves it.
    for low in (False, True):
        x_dense = linalg.cho_solve(jsl.cho_factor(jnp.asarray(a), lower=low), b)
        assert solve_ratio(a, x_dense, b, np.float64) < THRESH
    with pytest.raises(TypeError, match="cho_factor"):
        linalg.cho_solve("not a factor", b)
    with pytest.raises(ValueError, match="12 rows"):
        linalg.cho_solve(c, np.ones(8))


@pytest.mark.parametrize("dtype", [np.float32, np.complex128])
def test_factor_once_solve_many_inside_jit(dtype):
    mesh = mesh_1d(4)
    rng = np.random.default_rng(2)
    n = 16
    a = hpd(n, dtype, rng)
    bs = rand(rng, (5, n, 2), dtype)

    @jax.jit
    def factor_and_solve_all(m, rhs):
        fac = linalg.cho_factor(m, T_A=3, mesh=mesh, in_specs=P("x", None))
        xs = jax.lax.map(lambda r: linalg.cho_solve(fac, r), rhs)  # one factor, 5 solves
        return xs, linalg.cho_solve(fac, rhs[0]), fac.info

    xs, x0, info = factor_and_solve_all(put_rows(a, mesh), bs)
    assert int(info) == 0
    for k in range(bs.shape[0]):
        assert solve_ratio(a, xs[k], bs[k], dtype) < THRESH
    np.testing.assert_allclose(np.asarray(x0), np.asarray(xs[0]), rtol=0,
                               atol=10 * np.finfo(dtype).eps * np.abs(np.asarray(x0)).max())


def test_factor_is_a_pytree_through_jit():
    mesh = mesh_1d(4)
    rng = np.random.default_rng(3)
    a = hpd(12, np.complex64, rng)
    make = jax.jit(lambda m: linalg.cho_factor(m, T_A=2, mesh=mesh, in_specs=P("x", None)))
    fac = make(put_rows(a, mesh))  # factor out of jit
    assert isinstance(fac, CholeskyFactor) and fac.geometry.padded
    leaves, treedef = jax.tree_util.tree_flatten(fac)
    assert len(leaves) == 3  # factor, info and the matrix it keeps (for derivatives)
    again = jax.tree_util.tree_unflatten(treedef, leaves)
    solve = jax.jit(linalg.cho_solve)  # factor into jit
    for _ in range(3):
        b = rand(rng, (12, 1), np.complex64)
        assert solve_ratio(a, solve(again, b), b, np.complex64) < THRESH
    logdet = jax.jit(linalg.logdet)(fac)
    np.testing.assert_allclose(float(logdet), np.linalg.slogdet(a.astype(np.complex128))[1], rtol=1e-5)


def test_cho_factor_failure_policy():
    n = 12
    a = np.diag(np.arange(1.0, n + 1))
    a[9, 9] = -2.0
    mesh = mesh_1d(4)
    fac = linalg.cho_factor(put_rows(a, mesh), T_A=2)
    assert int(fac.info) == 10
    x, info = linalg.cho_solve(fac, np.ones(n), return_status=True)
    assert int(info) == 10 and np.isnan(np.asarray(x)).all()
    with pytest.raises(np.linalg.LinAlgError, match="not positive definite"):
        linalg.cho_factor(put_rows(a, mesh), T_A=2, check=True)
    with pytest.raises(np.linalg.LinAlgError):
        linalg.cho_solve(fac, np.ones(n), check=True)
    with pytest.raises(ValueError, match="inside jit"):
        jax.jit(lambda m: linalg.cho_factor(m, mesh=mesh, in_specs=P("x", None), check=True))(
            put_rows(a, mesh))


@pytest.mark.parametrize("dtype", DTYPES)
def test_solve(dtype):
    mesh = mesh_1d(3)
    rng = np.random.default_rng(4)
    a = hpd(15, dtype, rng)
    b = rand(rng, (15, 2), dtype)
    complex_ = np.issubdtype(dtype, np.complexfloating)
    for kind in ("pos", "her") if complex_ else ("pos", "her", "sym"):
        x = linalg.solve(put_rows(a, mesh), b, assume_a=kind, T_A=2)
        assert solve_ratio(a, x, b, dtype) < THRESH
    if complex_:  # complex symmetric (A = Aᵀ) is another problem, refused
        with pytest.raises(ValueError, match="complex symmetric"):
            linalg.solve(put_rows(a, mesh), b, assume_a="sym")
    x = linalg.solve(put_rows(a, mesh), b[:, 0])
    assert x.shape == (15,) and solve_ratio(a, x, b[:, 0], dtype) < THRESH


def test_solve_refuses_structured_kinds_and_fails_on_indefinite():
    mesh = mesh_1d(2)
    a = put_rows(np.eye(4), mesh)
    for kind in ("diagonal", "tridiagonal", "banded"):
        with pytest.raises(ValueError, match="positive definite"):
            linalg.solve(a, np.ones(4), assume_a=kind)
    ind = np.diag([1.0, -1.0, 2.0, 3.0])
    x, info = linalg.solve(put_rows(ind, mesh), np.ones(4), assume_a="sym", return_status=True)
    assert int(info) == 2 and np.isnan(np.asarray(x)).all()
    with pytest.raises(np.linalg.LinAlgError):
        linalg.solve(put_rows(ind, mesh), np.ones(4), check=True)


@pytest.mark.parametrize("dtype", DTYPES)
def test_inv(dtype):
    mesh = mesh_1d(4)
    a = hpd(16, dtype, np.random.default_rng(5))
    x = linalg.inv(put_rows(a, mesh), T_A=3)
    assert x.sharding.spec == P("x", None)
    assert inv_ratio(a, x, dtype) < THRESH
    ref = np.asarray(jnp.linalg.inv(jnp.asarray(a)))
    assert np.abs(np.asarray(x) - ref).max() <= 1e3 * 16 * np.finfo(dtype).eps * np.abs(ref).max()
    bad = np.eye(16, dtype=dtype)
    bad[15, 15] = -1
    x, info = linalg.inv(put_rows(bad, mesh), return_status=True)
    assert int(info) == 16 and np.isnan(np.asarray(x)).all()
    with pytest.raises(np.linalg.LinAlgError):
        linalg.inv(put_rows(bad, mesh), check=True)


@pytest.mark.parametrize("dtype", DTYPES)
def test_eigh(dtype):
    mesh = mesh_1d(4)
    a = herm(12, dtype, np.random.default_rng(6))
    w, v = linalg.eigh(put_rows(a, mesh), T_A=2, UPLO="U", lower=False)
    r_w, r_res, r_orth = eig_ratios(a, w, v, dtype)
    assert max(r_w, r_res, r_orth) < THRESH
    w_ref = np.asarray(jnp.linalg.eigvalsh(jnp.asarray(a)))
    assert np.abs(np.asarray(w) - w_ref).max() <= 100 * 12 * np.finfo(dtype).eps * np.abs(w_ref).max()
    w2 = linalg.eigh(put_rows(a, mesh), eigvals_only=True)
    assert w2.shape == (12,) and eig_ratios(a, w2, None, dtype)[0] < THRESH
    (w3, v3), info = linalg.eigh(put_rows(a, mesh), return_status=True, check=True)
    assert int(info) == 0 and v3.shape == (12, 12)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ndev,n,tile", [(1, 6, None), (4, 16, 3), (3, 15, 2), (2, 8, 4)])
def test_slogdet_and_logdet(dtype, ndev, n, tile):
    mesh = mesh_1d(ndev)
    a = hpd(n, dtype, np.random.default_rng(n + ndev), shift=0.5)
    sign, logabs = linalg.slogdet(put_rows(a, mesh), T_A=tile)
    ref_sign, ref = np.linalg.slogdet(a.astype(np.complex128))
    assert sign.dtype == dtype and complex(sign) == 1
    assert logabs.dtype == np.finfo(dtype).dtype
    assert abs(float(logabs) - ref) <= 100 * n * np.finfo(dtype).eps * max(1.0, abs(ref))
    fac = linalg.cho_factor(put_rows(a, mesh), T_A=tile)
    ld = linalg.logdet(fac)  # from an existing factor: no new factorization
    assert abs(float(ld) - ref) <= 100 * n * np.finfo(dtype).eps * max(1.0, abs(ref))
    assert abs(float(linalg.logdet(put_rows(a, mesh), T_A=tile)) - float(ld)) == 0.0


def test_logdet_large_values_and_failure():
    mesh = mesh_1d(4)
    n = 16
    a = np.diag(np.full(n, 1e30))  # det overflows float64; its log does not
    ld = linalg.logdet(put_rows(a, mesh), T_A=3)
    np.testing.assert_allclose(float(ld), n * np.log(1e30), rtol=1e-14)
    bad = np.eye(n)
    bad[2, 2] = -1.0
    (sign, ld), info = linalg.slogdet(put_rows(bad, mesh), return_status=True)
    assert int(info) == 3 and np.isnan(float(ld)) and np.isnan(float(sign))
    with pytest.raises(np.linalg.LinAlgError):
        linalg.logdet(put_rows(bad, mesh), check=True)


def test_linalg_2d_mesh():
    devs = np.array(_util.need_devices(4)).reshape(2, 2)
    mesh = Mesh(devs, ("S", "T"))
    rng = np.random.default_rng(7)
    a = hpd(12, np.float64, rng)
    b = rand(rng, (12, 2), np.float64)
    a_s = jax.device_put(a, NamedSharding(mesh, P("T", None)))
    fac = linalg.cho_factor(a_s, T_A=2)
    assert solve_ratio(a, linalg.cho_solve(fac, b), b, np.float64) < THRESH
    np.testing.assert_allclose(float(linalg.logdet(fac)), np.linalg.slogdet(a)[1], rtol=1e-12)


def test_linalg_inputs_resharded_on_explicit_mesh():
    axis_type = getattr(jax.sharding, "AxisType", None)
    if axis_type is None:
        pytest.skip("this JAX has no explicit mesh axes")
    mesh = jax.make_mesh((4,), ("x",), axis_types=(axis_type.Explicit,),
                         devices=_util.need_devices(4))
    rng = np.random.default_rng(23)
    a = hpd(16, np.float64, rng)
    b = rand(rng, (16, 4), np.float64)
    fac = linalg.cho_factor(a, T_A=3, mesh=mesh, in_specs=P("x", None))  # a NumPy array
    b_rows = jax.device_put(b, NamedSharding(mesh, P("x", None)))  # not replicated
    assert solve_ratio(a, linalg.cho_solve(fac, b_rows), b, np.float64) < THRESH
    x = linalg.solve(jnp.asarray(a), b_rows, mesh=mesh, in_specs=P("x", None))
    assert solve_ratio(a, x, b, np.float64) < THRESH
