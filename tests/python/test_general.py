"""jaxmg.linalg's general dense ops (LU, Cholesky factor, QR, SVD, polar, least squares, the
generalized and partial Hermitian eigenproblems) against SciPy / NumPy: scaled residual
ratios at every dtype on 1-4 devices, rows that do and do not split evenly, non-square
shapes, failures (info and NaN), derivatives (check_grads) and vmap."""

import _util  # noqa: F401  (devices and x64 before JAX starts)
from _util import DTYPES, THRESH, eps, hpd, herm, mesh_1d, need_devices, rand

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg as sl
from jax.sharding import NamedSharding, PartitionSpec as P
from jax.test_util import check_grads

from jaxmg import linalg

# (devices, rows): even and uneven splits; uneven matrices are placed with mesh= (JAX
# cannot lay out an uneven row-sharded array; jaxmg pads inside)
SQUARE = [(1, 7), (2, 12), (3, 10), (4, 16), (4, 13)]
RECT = [(1, 9, 4), (2, 12, 5), (3, 11, 4), (4, 16, 7), (2, 6, 9)]  # (devices, m, n)


def _two():
    """Two devices where there are, else one (the GPU machine may have a single GPU)."""
    return mesh_1d(min(2, len(jax.devices())))


def _c(x):
    return np.asarray(x, dtype=np.complex128)


def _on(a, ndev):
    """(argument, mesh=): ``a`` sharded by rows where its rows split evenly, else the NumPy
    array and the mesh."""
    mesh = mesh_1d(ndev)
    if a.shape[0] % ndev == 0:
        return jax.device_put(a, NamedSharding(mesh, P("x", None))), None
    return a, mesh


def _norm(x):
    return float(np.linalg.norm(_c(x), 1))


def _ratio(r, a, dtype):
    """||R||_1 / (max(m, n) ||A||_1 eps)."""
    return _norm(r) / (max(np.shape(a)) * max(_norm(a), 1e-300) * eps(dtype))


def _orth(q, dtype):
    q = _c(q)
    k = q.shape[1]
    return _norm(q.conj().T @ q - np.eye(k)) / (max(q.shape) * eps(dtype))


# ---- LU --------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ndev,n", SQUARE)
def test_lu_factor_solve_det(dtype, ndev, n):
    need_devices(ndev)
    rng = np.random.default_rng(10 * ndev + n)
    a = rand(rng, (n, n), dtype)
    b = rand(rng, (n, 3), dtype)
    arg, mesh = _on(a, ndev)
    (lu, piv), info = linalg.lu_factor(arg, mesh=mesh, return_status=True)
    assert lu.shape == (n, n) and lu.dtype == dtype and piv.dtype == jnp.int32
    assert int(info) == 0
    lu_np = _c(lu)
    L = np.tril(lu_np, -1) + np.eye(n)
    U = np.triu(lu_np)
    perm = np.arange(n)
    for i, p in enumerate(np.asarray(piv)):
        perm[[i, p]] = perm[[p, i]]
    assert _ratio(_c(a)[perm] - L @ U, a, dtype) < THRESH
    for trans in (0, 1, 2):
        x = linalg.lu_solve((lu, piv), b, trans=trans)
        op = {0: _c(a), 1: _c(a).T, 2: _c(a).conj().T}[trans]
        assert x.shape == (n, 3) and x.dtype == dtype
        assert _ratio(op @ _c(x) - _c(b), a, dtype) / max(_norm(x), 1e-300) * _norm(a) < THRESH * n
    x = linalg.lu_solve((lu, piv), b[:, 0])
    assert x.shape == (n,)
    x, info = linalg.solve(arg, b, assume_a="gen", mesh=mesh, return_status=True)
    assert int(info) == 0 and x.dtype == dtype
    resid = _norm(_c(a) @ _c(x) - _c(b)) / (n * _norm(a) * _norm(x) * eps(dtype))
    assert resid < THRESH
    d = complex(linalg.det(arg, mesh=mesh))
    d_ref = complex(np.linalg.det(_c(a)))
    cond = np.linalg.cond(_c(a))
    assert abs(d - d_ref) <= 100 * n * cond * eps(dtype) * abs(d_ref)
    sign, logabs = linalg.slogdet(arg, method="lu", mesh=mesh)
    s_ref, l_ref = np.linalg.slogdet(_c(a))
    assert abs(float(logabs) - l_ref) <= 100 * n * cond * eps(dtype) * max(1, abs(l_ref))
    assert abs(complex(sign) - s_ref) <= 100 * n * cond * eps(dtype)


def test_lu_singular_gives_info_and_nan():
    mesh = _two()
    a = np.array([[1.0, 2, 3, 4], [2, 4, 6, 8], [0, 1, 1, 0], [1, 0, 0, 1]])
    put = jax.device_put(a, NamedSharding(mesh, P("x", None)))
    (lu, piv), info = linalg.lu_factor(put, return_status=True)
    _, _, info_ref = sl.lapack.dgetrf(a)
    assert int(info) == info_ref > 0
    assert np.isfinite(np.asarray(lu)).all()  # factored completely, as LAPACK does
    x, info = linalg.solve(put, np.ones(4), assume_a="gen", return_status=True)
    assert int(info) == info_ref and np.isnan(np.asarray(x)).all()
    with pytest.raises(np.linalg.LinAlgError, match="singular"):
        linalg.solve(put, np.ones(4), assume_a="gen", check=True)
    assert float(linalg.det(put)) == 0.0
    sign, logabs = linalg.slogdet(put, method="lu")
    assert float(sign) == 0.0 and float(logabs) == -np.inf


def test_rectangular_lu_factor():
    mesh = _two()
    a = np.random.default_rng(0).standard_normal((8, 5))
    lu, piv = linalg.lu_factor(jax.device_put(a, NamedSharding(mesh, P("x", None))))
    lu_ref, piv_ref = sl.lu_factor(a)
    assert lu.shape == (8, 5) and piv.shape == (5,)
    np.testing.assert_allclose(np.asarray(lu), lu_ref, atol=1e-12)
    np.testing.assert_array_equal(np.asarray(piv), piv_ref)


# ---- Cholesky factor ------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ndev,n", SQUARE)
@pytest.mark.parametrize("lower", [False, True])
def test_cholesky(dtype, ndev, n, lower):
    need_devices(ndev)
    rng = np.random.default_rng(n + 7 * ndev)
    a = hpd(n, dtype, rng)
    # the other triangle holds garbage: only the named one is read
    junk = rand(rng, (n, n), dtype) * 100
    given = np.where(np.tril(np.ones((n, n), bool)) if lower else np.triu(np.ones((n, n), bool)),
                     a, junk).astype(dtype)
    arg, mesh = _on(given, ndev)
    c, info = linalg.cholesky(arg, lower=lower, mesh=mesh, return_status=True)
    assert int(info) == 0 and c.shape == (n, n) and c.dtype == dtype
    c = _c(c)
    assert np.all(np.triu(c, 1) == 0) if lower else np.all(np.tril(c, -1) == 0)
    rec = c @ c.conj().T if lower else c.conj().T @ c
    assert _ratio(rec - _c(a), a, dtype) < THRESH
    ref = sl.cholesky(_c(a), lower=lower)
    assert np.abs(c - ref).max() <= 100 * n * eps(dtype) * np.abs(ref).max() * np.linalg.cond(_c(a))


@pytest.mark.parametrize("k", [1, 3, 6])
def test_cholesky_info_is_lapacks(k):
    mesh = mesh_1d(3)
    rng = np.random.default_rng(k)
    a = hpd(6, np.float64, rng)
    a[k - 1, k - 1] = -50.0  # the leading minor of order k is indefinite
    _, info_ref = sl.lapack.dpotrf(a, lower=True)
    c, info = linalg.cholesky(jax.device_put(a, NamedSharding(mesh, P("x", None))), lower=True,
                              return_status=True)
    assert int(info) == info_ref == k
    assert np.isnan(np.asarray(c)).all()
    with pytest.raises(np.linalg.LinAlgError):
        linalg.cholesky(a, mesh=mesh, check=True)


# ---- QR, SVD, polar, least squares -----------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ndev,m,n", RECT)
def test_qr(dtype, ndev, m, n):
    need_devices(ndev)
    rng = np.random.default_rng(m * n + ndev)
    a = rand(rng, (m, n), dtype)
    arg, mesh = _on(a, ndev)
    q, r = linalg.qr(arg, mesh=mesh)
    k = min(m, n)
    assert q.shape == (m, k) and r.shape == (k, n) and q.dtype == dtype
    assert np.all(np.tril(_c(r), -1) == 0)
    assert _ratio(_c(q) @ _c(r) - _c(a), a, dtype) < THRESH
    assert _orth(q, dtype) < THRESH
    qc, rc = linalg.qr(arg, mode="complete", mesh=mesh)
    assert qc.shape == (m, m) and rc.shape == (m, n)
    assert _ratio(_c(qc) @ _c(rc) - _c(a), a, dtype) < THRESH and _orth(qc, dtype) < THRESH
    r_only = linalg.qr(arg, mode="r", mesh=mesh)
    np.testing.assert_allclose(np.abs(_c(r_only)), np.abs(_c(r)), atol=100 * m * eps(dtype) * _norm(a))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ndev,m,n", RECT)
def test_svd(dtype, ndev, m, n):
    need_devices(ndev)
    rng = np.random.default_rng(m * n + 3 * ndev)
    a = rand(rng, (m, n), dtype)
    arg, mesh = _on(a, ndev)
    s_ref = np.linalg.svd(_c(a), compute_uv=False)
    k = min(m, n)
    u, s, vh = linalg.svd(arg, full_matrices=False, mesh=mesh)
    assert u.shape == (m, k) and s.shape == (k,) and vh.shape == (k, n)
    assert s.dtype == np.finfo(dtype).dtype
    assert _ratio((_c(u) * _c(s)) @ _c(vh) - _c(a), a, dtype) < THRESH
    assert _orth(u, dtype) < THRESH and _orth(_c(vh).conj().T, dtype) < THRESH
    assert np.abs(np.asarray(s) - s_ref).max() <= THRESH * max(m, n) * eps(dtype) * s_ref[0]
    uf, sf, vhf = linalg.svd(arg, mesh=mesh)  # full_matrices=True, as jnp.linalg.svd
    assert uf.shape == (m, m) and vhf.shape == (n, n)
    assert _orth(uf, dtype) < THRESH and _orth(vhf, dtype) < THRESH
    s_only = linalg.svd(arg, compute_uv=False, mesh=mesh)
    assert np.abs(np.asarray(s_only) - s_ref).max() <= THRESH * max(m, n) * eps(dtype) * s_ref[0]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ndev,m,n", [(1, 6, 6), (2, 12, 5), (3, 10, 4), (4, 16, 16)])
@pytest.mark.parametrize("method", ["qdwh", "svd"])
def test_polar(dtype, ndev, m, n, method):
    need_devices(ndev)
    rng = np.random.default_rng(m + n + ndev)
    a = rand(rng, (m, n), dtype)
    arg, mesh = _on(a, ndev)
    u, p = linalg.polar(arg, method=method, mesh=mesh)
    assert u.shape == (m, n) and p.shape == (n, n) and u.dtype == dtype
    u_ref, p_ref = sl.polar(_c(a))
    assert _ratio(_c(u) @ _c(p) - _c(a), a, dtype) < 10 * THRESH
    assert _orth(u, dtype) < 10 * THRESH
    tol = 1e3 * m * eps(dtype) * np.linalg.cond(_c(a))
    assert np.abs(_c(u) - u_ref).max() <= tol and np.abs(_c(p) - p_ref).max() <= tol * _norm(a)
    if m == n:  # A = P U, P M x M sharded by rows
        ul, pl = linalg.polar(arg, side="left", method="svd", mesh=mesh)
        assert pl.shape == (m, m) and _ratio(_c(pl) @ _c(ul) - _c(a), a, dtype) < 10 * THRESH


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ndev,m,n", [(1, 9, 4), (2, 12, 5), (3, 11, 4), (4, 16, 16)])
def test_lstsq(dtype, ndev, m, n):
    need_devices(ndev)
    rng = np.random.default_rng(m * n)
    a = rand(rng, (m, n), dtype)
    b = rand(rng, (m, 2), dtype)
    arg, mesh = _on(a, ndev)
    x, resid, rank, s = linalg.lstsq(arg, b, mesh=mesh)
    x_ref, resid_ref, rank_ref, s_ref = np.linalg.lstsq(_c(a), _c(b), rcond=None)
    tol = 100 * m * eps(dtype) * np.linalg.cond(_c(a))
    assert x.shape == (n, 2) and int(rank) == rank_ref
    assert np.abs(_c(x) - x_ref).max() <= tol * np.abs(x_ref).max()
    assert np.abs(np.asarray(s) - s_ref).max() <= tol * s_ref[0]
    if m > n:
        assert np.abs(np.asarray(resid) - resid_ref).max() <= tol * max(1, np.abs(resid_ref).max())
    xv = linalg.lstsq(arg, b[:, 0], mesh=mesh)[0]
    assert xv.shape == (n,)


# ---- eigenproblems -------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ndev,n", SQUARE)
def test_eigh_generalized(dtype, ndev, n):
    need_devices(ndev)
    rng = np.random.default_rng(3 * n + ndev)
    a = herm(n, dtype, rng)
    b = hpd(n, dtype, rng)
    arg_a, mesh = _on(a, ndev)
    arg_b, _ = _on(b, ndev)
    w, v = linalg.eigh(arg_a, arg_b, mesh=mesh)
    w_ref = sl.eigh(_c(a), _c(b), eigvals_only=True)
    assert w.shape == (n,) and v.shape == (n, n) and v.dtype == dtype
    assert w.dtype == np.finfo(dtype).dtype
    scale = n * _norm(a) * _norm(np.linalg.inv(_c(b))) * eps(dtype)
    assert np.abs(np.asarray(w) - w_ref).max() <= THRESH * scale
    vc = _c(v)
    assert _ratio(_c(a) @ vc - _c(b) @ vc * np.asarray(w), a, dtype) / max(1, _norm(vc)) < THRESH * np.linalg.cond(_c(b))
    assert _norm(vc.conj().T @ _c(b) @ vc - np.eye(n)) / (n * eps(dtype)) < THRESH * np.linalg.cond(_c(b))
    wv = linalg.eigh(arg_a, arg_b, eigvals_only=True, mesh=mesh)
    assert np.abs(np.asarray(wv) - w_ref).max() <= THRESH * scale
    lo, hi = 1, min(3, n - 1)
    ws, vs = linalg.eigh(arg_a, arg_b, subset_by_index=(lo, hi), mesh=mesh)
    assert ws.shape == (hi - lo + 1,) and vs.shape == (n, hi - lo + 1)
    assert np.abs(np.asarray(ws) - w_ref[lo:hi + 1]).max() <= THRESH * scale


def test_eigh_generalized_indefinite_b_gives_lapacks_info():
    mesh = _two()
    rng = np.random.default_rng(1)
    a = herm(6, np.float64, rng)
    b = hpd(6, np.float64, rng)
    b[2, 2] = -30.0
    _, info_b = sl.lapack.dpotrf(b, lower=True)
    put = lambda x: jax.device_put(x, NamedSharding(mesh, P("x", None)))  # noqa: E731
    (w, v), info = linalg.eigh(put(a), put(b), return_status=True)
    assert int(info) == 6 + info_b and info_b > 0
    assert np.isnan(np.asarray(w)).all() and np.isnan(np.asarray(v)).all()
    with pytest.raises(np.linalg.LinAlgError):
        linalg.eigh(put(a), put(b), check=True)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ndev,n", [(1, 8), (2, 12), (3, 9), (4, 16), (4, 13)])
def test_eigh_subset_and_eigvalsh(dtype, ndev, n):
    need_devices(ndev)
    rng = np.random.default_rng(n)
    a = herm(n, dtype, rng)
    arg, mesh = _on(a, ndev)
    w_ref = np.linalg.eigvalsh(_c(a))
    tol = THRESH * n * _norm(a) * eps(dtype)
    for lo, hi in ((0, 0), (2, n - 3), (n - 1, n - 1)):
        w, v = linalg.eigh(arg, subset_by_index=(lo, hi), mesh=mesh)
        assert w.shape == (hi - lo + 1,) and v.shape == (n, hi - lo + 1)
        assert w.dtype == np.finfo(dtype).dtype and v.dtype == dtype
        assert np.abs(np.asarray(w) - w_ref[lo:hi + 1]).max() <= tol
        assert _ratio(_c(a) @ _c(v) - _c(v) * np.asarray(w), a, dtype) < THRESH
        assert _orth(v, dtype) < THRESH
        ws = linalg.eigvalsh(arg, subset_by_index=(lo, hi), mesh=mesh)
        assert np.abs(np.asarray(ws) - w_ref[lo:hi + 1]).max() <= tol
    # one triangle read, as JAX's symmetrize_input=False and UPLO do
    junk = np.triu(rand(rng, (n, n), dtype), 1) * 100
    for uplo, m in (("L", a + junk), ("U", a + junk.conj().T)):
        arg_m, mesh_m = _on(m.astype(dtype), ndev)
        ws = linalg.eigvalsh(arg_m, UPLO=uplo, symmetrize_input=False, subset_by_index=(1, 2),
                             mesh=mesh_m)
        assert np.abs(np.asarray(ws) - w_ref[1:3]).max() <= tol
    w_old = linalg.eigh(arg, eigvals=(1, 2), eigvals_only=True)  # SciPy's older name
    assert np.abs(np.asarray(w_old) - w_ref[1:3]).max() <= tol
    assert np.abs(np.asarray(linalg.eigvalsh(arg)) - w_ref).max() <= tol


def test_eigh_subset_runs_the_subset_solver_not_the_full_one():
    """The partial problem is not the full decomposition sliced: the program calls jaxmg's
    subset eigensolver (LAPACK ?syevr / cuSOLVER Xsyevdx) and no full eigensolver."""
    mesh = _two()
    a = _rows(herm(8, np.float64, np.random.default_rng(1)), mesh)
    for vectors in (False, True):
        fn = jax.jit(lambda x: linalg.eigh(x, subset_by_index=(0, 1), eigvals_only=not vectors))
        hlo = fn.lower(a).as_text()
        assert "jaxmg_syevx" in hlo
        assert "syevd" not in hlo and "jaxmg_syevd" not in hlo


def test_eigh_subset_of_a_matrix_with_nan_gives_info_and_nan():
    mesh = _two()
    a = herm(8, np.float64, np.random.default_rng(2))
    a[3, 5] = a[5, 3] = np.nan
    (w, v), info = linalg.eigh(_rows(a, mesh), subset_by_index=(0, 2), return_status=True)
    assert int(info) > 0
    assert np.isnan(np.asarray(w)).all() and np.isnan(np.asarray(v)).all()
    with pytest.raises(np.linalg.LinAlgError):
        linalg.eigvalsh(_rows(a, mesh), subset_by_index=(0, 2), check=True)


# ---- derivatives and vmap ---------------------------------------------------------------------

def _rows(x, mesh):
    return jax.device_put(x, NamedSharding(mesh, P("x", None)))


@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
def test_derivatives_match_finite_differences(dtype):
    mesh = _two()
    rng = np.random.default_rng(5)
    n = 6
    a = _rows(rand(rng, (n, n), dtype) + 3 * np.eye(n), mesh)
    s = _rows(hpd(n, dtype, rng), mesh)
    h = _rows(herm(n, dtype, rng), mesh)
    t = _rows(rand(rng, (n, 4), dtype), mesh)
    b = jnp.asarray(rand(rng, (n, 2), dtype))
    kw = dict(modes=["fwd", "rev"], atol=1e-5, rtol=1e-5)
    check_grads(lambda a: linalg.solve(a, b, assume_a="gen"), (a,), order=2, **kw)
    check_grads(lambda a: linalg.lu_factor(a)[0], (a,), order=1, **kw)
    check_grads(lambda a, b: linalg.lu_solve(linalg.lu_factor(a), b), (a, b), order=1, **kw)
    check_grads(lambda a: linalg.det(a), (a,), order=1, **kw)
    check_grads(lambda a: linalg.slogdet(a, method="lu")[1], (a,), order=1, **kw)
    check_grads(lambda s: linalg.cholesky(s), (s,), order=2, **kw)
    check_grads(lambda t: linalg.qr(t), (t,), order=1, **kw)
    check_grads(lambda t: linalg.svd(t, compute_uv=False), (t,), order=1, **kw)
    check_grads(lambda t: linalg.polar(t, method="svd")[1], (t,), order=1, **kw)
    check_grads(lambda t: linalg.lstsq(t, b[:, 0])[0], (t,), order=1, **kw)

    def gen(h, s):  # eigenvalues, and eigenvectors up to their phase
        w, v = linalg.eigh(h, s)
        return w, jnp.abs(v) ** 2

    check_grads(gen, (h, s), order=1, **kw)
    check_grads(lambda h: linalg.eigh(h, subset_by_index=(1, 3))[0], (h,), order=1, **kw)
    check_grads(lambda h: linalg.eigvalsh(h, subset_by_index=(0, 2)), (h,), order=1, **kw)
    check_grads(lambda h: jnp.abs(linalg.eigh(h, subset_by_index=(2, 4))[1]) ** 2, (h,),
                order=1, **kw)
    check_grads(lambda h, s: linalg.eigh(h, s, subset_by_index=(0, 1), eigvals_only=True),
                (h, s), order=1, **kw)


def test_vmap_matches_one_call_per_matrix():
    mesh = _two()
    rng = np.random.default_rng(2)
    a = np.stack([rand(rng, (6, 6), np.float64) + 3 * np.eye(6) for _ in range(3)])
    b = rand(rng, (3, 6), np.float64)
    put = jax.device_put(a, NamedSharding(mesh, P(None, "x", None)))
    x = linalg.solve(put, b, assume_a="gen")
    for i in range(3):
        np.testing.assert_allclose(np.asarray(x[i]), np.linalg.solve(a[i], b[i]), rtol=1e-10)
    q, r = jax.vmap(linalg.qr)(put)
    np.testing.assert_allclose(np.asarray(jnp.matmul(q, r)), a, atol=1e-12)
    d = jax.jit(jax.vmap(linalg.det))(put)
    np.testing.assert_allclose(np.asarray(d), np.linalg.det(a), rtol=1e-10)
    s = np.stack([hpd(6, np.float64, rng) for _ in range(3)])
    w = linalg.eigh(put, jax.device_put(s, NamedSharding(mesh, P(None, "x", None))),
                    eigvals_only=True)
    for i in range(3):
        np.testing.assert_allclose(np.asarray(w[i]), sl.eigh((a[i] + a[i].T) / 2, s[i],
                                                              eigvals_only=True), rtol=1e-8)


def test_inside_jit_and_explicit_mesh():
    rng = np.random.default_rng(3)
    a = rand(rng, (8, 8), np.float64) + 3 * np.eye(8)
    k = min(2, len(jax.devices()))
    mesh = jax.make_mesh((k,), ("x",), axis_types=(jax.sharding.AxisType.Explicit,),
                         devices=jax.devices()[:k])
    put = jax.device_put(a, NamedSharding(mesh, P("x", None)))
    x = jax.jit(lambda m: linalg.solve(m, jnp.ones(8), assume_a="gen"))(put)
    np.testing.assert_allclose(np.asarray(x), np.linalg.solve(a, np.ones(8)), rtol=1e-10)
    q, r = jax.jit(linalg.qr)(put)
    np.testing.assert_allclose(np.asarray(q) @ np.asarray(r), a, atol=1e-12)


def test_bad_input_is_refused_before_anything_runs():
    mesh = _two()
    rect = _rows(np.ones((4, 2)), mesh)
    with pytest.raises(ValueError, match="square"):
        linalg.det(rect)
    with pytest.raises(ValueError, match="square"):
        linalg.cholesky(rect)
    with pytest.raises(ValueError, match="mode"):
        linalg.qr(rect, mode="raw")
    with pytest.raises(ValueError, match="subset_by_index"):
        linalg.eigh(_rows(np.eye(4), mesh), subset_by_index=(2, 4))
    with pytest.raises(ValueError, match="rows to match"):
        linalg.lu_solve(linalg.lu_factor(_rows(np.eye(4), mesh)), np.ones(3))
    with pytest.raises(ValueError, match="trans"):
        linalg.lu_solve(linalg.lu_factor(_rows(np.eye(4), mesh)), np.ones(4), trans=3)
    with pytest.raises(ValueError, match="shape"):
        linalg.eigh(_rows(np.eye(4), mesh), _rows(np.eye(2)[:, :2].repeat(2, 0), mesh))
    with pytest.raises(TypeError, match="float32, float64"):
        linalg.qr(_rows(np.ones((4, 2), np.float16), mesh))
    with pytest.raises(ValueError, match="engine for general matrices"):
        linalg.solve(_rows(np.eye(4), mesh), np.ones(4), assume_a="gen", engine="lapack")
    if jax.devices()[0].platform == "cpu":
        with pytest.raises(ValueError, match="cusolvermp.*gpu"):
            linalg.solve(_rows(np.eye(4), mesh), np.ones(4), assume_a="gen", engine="cusolvermp")
    # integers are promoted, as jnp.linalg does
    np.testing.assert_allclose(float(linalg.det(_rows(np.eye(4, dtype=np.int32) * 2, mesh))), 16)


def test_empty_inputs_give_jax_results():
    z = jnp.zeros((0, 0))
    assert float(linalg.det(z)) == 1.0
    q, r = linalg.qr(jnp.zeros((0, 3)))
    assert q.shape == (0, 0) and r.shape == (0, 3)
    lu, piv = linalg.lu_factor(z)
    assert lu.shape == (0, 0) and piv.shape == (0,)
