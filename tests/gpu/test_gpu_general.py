"""jaxmg.linalg's general dense ops on every GPU JAX sees (1 GPU, and 2 where there are):
LU (factor, solve, det), the Cholesky factor, QR, SVD, polar, least squares, the generalized
and the partial Hermitian eigenproblems, at every dtype, rows that do and do not split
evenly, against NumPy / SciPy with scaled residual ratios computed in complex128 (LAPACK's
threshold 30). Also: a singular LU (info and NaN), an indefinite ``b`` (info), and
check_grads of each op's derivatives at float64 on the GPUs.

The same assertions run on CPU devices in tests/python/test_general.py.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg as sl
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
from jax.test_util import check_grads

from jaxmg import linalg

jax.config.update("jax_enable_x64", True)

pytestmark = pytest.mark.gpu
THRESH = 30.0
DTYPES = [np.float32, np.float64, np.complex64, np.complex128]
DTYPE_IDS = ["f32", "f64", "c64", "c128"]


@pytest.fixture(scope="module")
def mesh(gpus):
    return Mesh(np.array(gpus, dtype=object), ("x",))


def _eps(dtype):
    return float(np.finfo(dtype).eps)


def _rand(rng, shape, dtype):
    x = rng.standard_normal(shape)
    if np.issubdtype(dtype, np.complexfloating):
        x = x + 1j * rng.standard_normal(shape)
    return x.astype(dtype)


def _herm(n, dtype, rng):
    x = _rand(rng, (n, n), np.complex128 if np.issubdtype(dtype, np.complexfloating) else np.float64)
    return ((x + x.conj().T) / 2).astype(dtype)


def _hpd(n, dtype, rng):
    x = _rand(rng, (n, n), np.complex128 if np.issubdtype(dtype, np.complexfloating) else np.float64)
    a = x @ x.conj().T / n + np.eye(n)
    return ((a + a.conj().T) / 2).astype(dtype)


def _c(x):
    return np.asarray(x, dtype=np.complex128)


def _norm(x):
    return float(np.linalg.norm(_c(x), 1))


def _ratio(r, a, dtype):
    return _norm(r) / (max(np.shape(a)) * max(_norm(a), 1e-300) * _eps(dtype))


def _orth(q, dtype):
    q = _c(q)
    return _norm(q.conj().T @ q - np.eye(q.shape[1])) / (max(q.shape) * _eps(dtype))


def _on(a, mesh):
    """Sharded by rows where the rows split evenly over the GPUs, else NumPy and mesh=."""
    if a.shape[0] % mesh.devices.size == 0:
        return jax.device_put(a, NamedSharding(mesh, P("x", None))), None
    return a, mesh


def _sizes(mesh):
    k = mesh.devices.size
    return [64 * k, 64 * k + 1]  # even rows, and rows that do not split


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("ragged", [False, True])
def test_lu_solve_det(mesh, dtype, ragged):
    n = _sizes(mesh)[ragged]
    rng = np.random.default_rng(n)
    a, b = _rand(rng, (n, n), dtype), _rand(rng, (n, 3), dtype)
    arg, m = _on(a, mesh)
    (lu, piv), info = linalg.lu_factor(arg, mesh=m, return_status=True)
    assert int(info) == 0 and lu.dtype == dtype and piv.dtype == jnp.int32
    lu_np = _c(lu)
    perm = np.arange(n)
    for i, p in enumerate(np.asarray(piv)):
        perm[[i, p]] = perm[[p, i]]
    L, U = np.tril(lu_np, -1) + np.eye(n), np.triu(lu_np)
    assert _ratio(_c(a)[perm] - L @ U, a, dtype) < THRESH
    x, info = linalg.solve(arg, b, assume_a="gen", mesh=m, return_status=True)
    assert int(info) == 0 and x.dtype == dtype
    assert _norm(_c(a) @ _c(x) - _c(b)) / (n * _norm(a) * _norm(x) * _eps(dtype)) < THRESH
    sign, logabs = linalg.slogdet(arg, method="lu", mesh=m)
    s_ref, l_ref = np.linalg.slogdet(_c(a))
    cond = np.linalg.cond(_c(a))
    assert abs(float(logabs) - l_ref) <= 100 * n * cond * _eps(dtype) * max(1, abs(l_ref))
    assert abs(complex(sign) - s_ref) <= 100 * n * cond * _eps(dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_lu_singular_gives_info_and_nan(mesh, dtype):
    n = 64 * mesh.devices.size
    a = _rand(np.random.default_rng(1), (n, n), dtype)
    a[:, 7] = 0
    arg, m = _on(a, mesh)
    x, info = linalg.solve(arg, np.ones((n, 1), dtype), assume_a="gen", mesh=m,
                           return_status=True)
    assert int(info) > 0 and np.isnan(np.asarray(x)).all()


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("lower", [False, True])
def test_cholesky(mesh, dtype, lower):
    n = _sizes(mesh)[1]
    a = _hpd(n, dtype, np.random.default_rng(n))
    arg, m = _on(a, mesh)
    c, info = linalg.cholesky(arg, lower=lower, mesh=m, return_status=True)
    assert int(info) == 0 and c.dtype == dtype
    c = _c(c)
    assert np.all(np.triu(c, 1) == 0) if lower else np.all(np.tril(c, -1) == 0)
    assert _ratio((c @ c.conj().T if lower else c.conj().T @ c) - _c(a), a, dtype) < THRESH


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("shape", ["tall", "ragged", "wide"])
def test_qr_svd(mesh, dtype, shape):
    k = mesh.devices.size
    m, n = {"tall": (96 * k, 40), "ragged": (96 * k + 3, 33), "wide": (32 * k, 70)}[shape]
    rng = np.random.default_rng(m + n)
    a = _rand(rng, (m, n), dtype)
    arg, mm = _on(a, mesh)
    q, r = linalg.qr(arg, mesh=mm)
    assert q.shape == (m, min(m, n)) and r.shape == (min(m, n), n)
    assert np.all(np.tril(_c(r), -1) == 0)
    assert _ratio(_c(q) @ _c(r) - _c(a), a, dtype) < THRESH and _orth(q, dtype) < THRESH
    u, s, vh = linalg.svd(arg, full_matrices=False, mesh=mm)
    s_ref = np.linalg.svd(_c(a), compute_uv=False)
    assert _ratio((_c(u) * _c(s)) @ _c(vh) - _c(a), a, dtype) < THRESH
    assert _orth(u, dtype) < THRESH and _orth(_c(vh).conj().T, dtype) < THRESH
    assert np.abs(np.asarray(s) - s_ref).max() <= THRESH * max(m, n) * _eps(dtype) * s_ref[0]


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_polar_lstsq(mesh, dtype):
    k = mesh.devices.size
    m, n = 64 * k + 1, 24
    rng = np.random.default_rng(m)
    a, b = _rand(rng, (m, n), dtype), _rand(rng, (m, 2), dtype)
    arg, mm = _on(a, mesh)
    u, p = linalg.polar(arg, mesh=mm)
    assert _ratio(_c(u) @ _c(p) - _c(a), a, dtype) < 10 * THRESH and _orth(u, dtype) < 10 * THRESH
    u_ref, p_ref = sl.polar(_c(a))
    tol = 1e3 * m * _eps(dtype) * np.linalg.cond(_c(a))
    assert np.abs(_c(u) - u_ref).max() <= tol
    x, resid, rank, s = linalg.lstsq(arg, b, mesh=mm)
    x_ref, resid_ref, rank_ref, _ = np.linalg.lstsq(_c(a), _c(b), rcond=None)
    assert int(rank) == rank_ref
    assert np.abs(_c(x) - x_ref).max() <= 100 * m * _eps(dtype) * np.linalg.cond(_c(a)) * np.abs(x_ref).max()


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("ragged", [False, True])
def test_eigh_generalized(mesh, dtype, ragged):
    n = _sizes(mesh)[ragged]
    rng = np.random.default_rng(3 * n)
    a, b = _herm(n, dtype, rng), _hpd(n, dtype, rng)
    arg_a, m = _on(a, mesh)
    arg_b, _ = _on(b, mesh)
    (w, v), info = linalg.eigh(arg_a, arg_b, mesh=m, return_status=True)
    assert int(info) == 0 and v.dtype == dtype and w.dtype == np.finfo(dtype).dtype
    w_ref = sl.eigh(_c(a), _c(b), eigvals_only=True)
    scale = n * _norm(a) * _norm(np.linalg.inv(_c(b))) * _eps(dtype)
    assert np.abs(np.asarray(w) - w_ref).max() <= THRESH * scale
    vc, cond_b = _c(v), np.linalg.cond(_c(b))
    assert _ratio(_c(a) @ vc - _c(b) @ vc * np.asarray(w), a, dtype) / max(1, _norm(vc)) < THRESH * cond_b
    assert _norm(vc.conj().T @ _c(b) @ vc - np.eye(n)) / (n * _eps(dtype)) < THRESH * cond_b
    bad = b.copy()
    bad[4, 4] = -30
    arg_bad, _ = _on(bad, mesh)
    w, info = linalg.eigh(arg_a, arg_bad, eigvals_only=True, mesh=m, return_status=True)
    assert int(info) > n and np.isnan(np.asarray(w)).all()


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("ragged", [False, True])
def test_eigh_subset(mesh, dtype, ragged):
    n = _sizes(mesh)[ragged]
    rng = np.random.default_rng(n)
    a = _herm(n, dtype, rng)
    arg, m = _on(a, mesh)
    w_ref = np.linalg.eigvalsh(_c(a))
    tol = THRESH * n * _norm(a) * _eps(dtype)
    for lo, hi in ((0, 0), (3, n // 3), (n - 2, n - 1)):
        (w, v), info = linalg.eigh(arg, subset_by_index=(lo, hi), mesh=m, return_status=True)
        assert int(info) == 0 and w.shape == (hi - lo + 1,) and v.shape == (n, hi - lo + 1)
        assert np.abs(np.asarray(w) - w_ref[lo:hi + 1]).max() <= tol
        assert _ratio(_c(a) @ _c(v) - _c(v) * np.asarray(w), a, dtype) < THRESH
        assert _orth(v, dtype) < THRESH
        ws = linalg.eigvalsh(arg, subset_by_index=(lo, hi), mesh=m)
        assert np.abs(np.asarray(ws) - w_ref[lo:hi + 1]).max() <= tol


def test_eigh_subset_of_nan_gives_info_and_nan(mesh):
    n = 32 * mesh.devices.size
    a = _herm(n, np.float64, np.random.default_rng(2))
    a[3, 5] = a[5, 3] = np.nan
    arg, m = _on(a, mesh)
    (w, v), info = linalg.eigh(arg, subset_by_index=(0, 2), mesh=m, return_status=True)
    assert int(info) > 0 and np.isnan(np.asarray(w)).all() and np.isnan(np.asarray(v)).all()


@pytest.mark.parametrize("dtype", [np.float64, np.complex128], ids=["f64", "c128"])
def test_derivatives_match_finite_differences(mesh, dtype):
    n = 4 * mesh.devices.size
    rng = np.random.default_rng(5)
    rows = lambda x: jax.device_put(x, NamedSharding(mesh, P("x", None)))  # noqa: E731
    a = rows(_rand(rng, (n, n), dtype) + 3 * np.eye(n))
    s, h = rows(_hpd(n, dtype, rng)), rows(_herm(n, dtype, rng))
    t = rows(_rand(rng, (n, 3), dtype))
    b = jnp.asarray(_rand(rng, (n, 2), dtype))
    kw = dict(modes=["fwd", "rev"], atol=1e-5, rtol=1e-5)
    check_grads(lambda a: linalg.solve(a, b, assume_a="gen"), (a,), order=1, **kw)
    check_grads(lambda a: linalg.slogdet(a, method="lu")[1], (a,), order=1, **kw)
    check_grads(lambda s: linalg.cholesky(s), (s,), order=1, **kw)
    check_grads(lambda t: linalg.qr(t), (t,), order=1, **kw)
    check_grads(lambda t: linalg.svd(t, compute_uv=False), (t,), order=1, **kw)
    check_grads(lambda t: linalg.polar(t, method="svd")[1], (t,), order=1, **kw)
    check_grads(lambda t: linalg.lstsq(t, b[:, 0])[0], (t,), order=1, **kw)
    check_grads(lambda h, s: linalg.eigh(h, s, eigvals_only=True), (h, s), order=1, **kw)
    check_grads(lambda h: linalg.eigvalsh(h, subset_by_index=(0, 2)), (h,), order=1, **kw)
    check_grads(lambda h: jnp.abs(linalg.eigh(h, subset_by_index=(1, 2))[1]) ** 2, (h,),
                order=1, **kw)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("n_per,tile", [(64, None), (96, 40)])
def test_solve_on_cusolvermg(mesh, dtype, n_per, tile):
    """The general solve over the GPUs of one process (cuSOLVERMg getrf + getrs), tiles that
    do and do not divide the shard, rows that do not split evenly, a singular matrix, and
    its derivative (distributed solves with A and Aᵀ)."""
    n = n_per * mesh.devices.size + (tile is not None)
    rng = np.random.default_rng(n)
    a, b = _rand(rng, (n, n), dtype), _rand(rng, (n, 3), dtype)
    arg, m = _on(a, mesh)
    x, info = linalg.solve(arg, b, assume_a="gen", mesh=m, engine="cusolvermg", T_A=tile,
                           return_status=True)
    assert int(info) == 0 and x.dtype == dtype
    assert _norm(_c(a) @ _c(x) - _c(b)) / (n * _norm(a) * _norm(x) * _eps(dtype)) < THRESH
    sing = a.copy()
    sing[:, 3] = 0
    arg, m = _on(sing, mesh)
    x, info = linalg.solve(arg, b, assume_a="gen", mesh=m, engine="cusolvermg",
                           return_status=True)
    assert int(info) > 0 and np.isnan(np.asarray(x)).all()
    if dtype in (np.float64, np.complex128):
        k = 4 * mesh.devices.size
        small = jax.device_put(_rand(rng, (k, k), dtype) + 3 * np.eye(k, dtype=dtype),
                               NamedSharding(mesh, P("x", None)))
        rhs = jnp.asarray(_rand(rng, (k, 2), dtype))
        f = lambda a: linalg.solve(a, rhs, assume_a="gen", engine="cusolvermg")  # noqa: E731
        check_grads(f, (small,), order=1, modes=["fwd", "rev"], atol=1e-5, rtol=1e-5)
        # the derivative gathers no matrix: its all-gathers are of vectors (A x) only
        hlo = jax.jit(jax.grad(lambda a: jnp.sum(jnp.abs(f(a)) ** 2))).lower(small).as_text()
        assert not [ln for ln in hlo.splitlines()
                    if "all_gather" in ln and f"-> tensor<{k}x{k}x" in ln]
