"""jaxmg.linalg behaves as the JAX functions whose names it borrows (docs/ops/linalg.md,
"Differences" lists where it deliberately does not): which triangle is read, return types,
batch dimensions, NumPy and integer inputs, strict dtype promotion, eager Jacobians on an
Explicit mesh, dense factors from jax.scipy.linalg, and derivatives that agree with finite
differences in every direction."""

import _util  # noqa: F401  (devices and x64 before JAX starts)
from _util import DTYPES, THRESH, from_triangle, hpd, mesh_1d, put_rows, rand, solve_ratio

import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
import numpy as np
import pytest
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P
from jax.test_util import check_grads

from jaxmg import linalg


def _tol(dtype):
    return 1e3 * np.finfo(dtype).eps


def _garbage_triangle(a, lower, rng):
    """``a`` with the triangle that is not read replaced by noise (as LAPACK users leave it)."""
    noise = rand(rng, a.shape, a.dtype)
    keep = np.tril(np.ones(a.shape, bool)) if lower else np.triu(np.ones(a.shape, bool))
    return np.where(keep, a, noise).astype(a.dtype)


# ---- which entries are read -----------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("lower", [False, True])
def test_one_triangle_is_read(dtype, lower):
    """cho_factor/cho_solve and solve read the triangle ``lower`` names, eigh without
    symmetrization the one ``UPLO``/``lower`` names; the other may hold anything."""
    rng = np.random.default_rng(1 + lower)
    n, mesh = 12, mesh_1d(3)
    a = hpd(n, dtype, rng)
    g = _garbage_triangle(a, lower, rng)
    b = rand(rng, (n, 2), dtype)
    x = linalg.cho_solve(linalg.cho_factor(put_rows(g, mesh), lower=lower), b)
    assert solve_ratio(a, x, b, dtype) < THRESH
    x = linalg.solve(put_rows(g, mesh), b, lower=lower, assume_a="pos")
    assert solve_ratio(a, x, b, dtype) < THRESH
    ref = jsl.solve(g, b, lower=lower, assume_a="pos")  # JAX reads the same triangle
    np.testing.assert_allclose(np.asarray(x), np.asarray(ref), rtol=_tol(dtype) * 10,
                               atol=_tol(dtype) * np.abs(np.asarray(ref)).max())
    w_ref = np.linalg.eigvalsh(a)
    for kw in (dict(lower=lower), dict(UPLO="L" if lower else "U")):
        w, v = linalg.eigh(put_rows(g, mesh), symmetrize_input=False, **kw)
        scale = np.abs(w_ref).max()
        np.testing.assert_allclose(np.asarray(w), w_ref, atol=_tol(dtype) * scale)
        jw = jnp.linalg.eigh(g, UPLO="L" if lower else "U", symmetrize_input=False)[0]
        np.testing.assert_allclose(np.asarray(w), np.asarray(jw), atol=_tol(dtype) * scale)


@pytest.mark.parametrize("dtype", [np.float64, np.complex64])
def test_eigh_symmetrizes_by_default(dtype):
    """As jnp.linalg.eigh and jax.scipy.linalg.eigh: the Hermitian part (A + Aᴴ) / 2."""
    rng = np.random.default_rng(3)
    n, mesh = 8, mesh_1d(4)
    m = rand(rng, (n, n), dtype)
    w, v = linalg.eigh(put_rows(m, mesh))
    h = (m + m.conj().T) / 2
    w_ref = np.linalg.eigvalsh(h.astype(np.complex128))
    np.testing.assert_allclose(np.asarray(w), w_ref, atol=_tol(dtype) * np.abs(w_ref).max())
    np.testing.assert_allclose(np.asarray(w), np.asarray(jsl.eigh(m)[0]),
                               atol=_tol(dtype) * np.abs(w_ref).max())
    r = h @ np.asarray(v) - np.asarray(v) * np.asarray(w)
    assert np.abs(r).max() < _tol(dtype) * np.abs(w_ref).max() * n


def test_derivatives_agree_with_finite_differences_in_every_direction():
    """Non-Hermitian directions too: each function's derivative is that of the function it
    computes (check_grads perturbs in random, non-Hermitian directions)."""
    mesh = mesh_1d(2)
    rng = np.random.default_rng(4)
    n = 6
    a = hpd(n, np.float64, rng) + 0.1 * rand(rng, (n, n), np.float64)  # not symmetric
    b = rand(rng, (n,), np.float64)
    A = put_rows(a, mesh)
    cases = [
        lambda m: linalg.solve(m, b),
        lambda m: linalg.solve(m, b, lower=True),
        lambda m: linalg.cho_solve(linalg.cho_factor(m, lower=True), b),
        lambda m: linalg.logdet(linalg.cho_factor(m)),
        lambda m: linalg.eigh(m, eigvals_only=True),
        lambda m: linalg.eigh(m, symmetrize_input=False, UPLO="U", eigvals_only=True),
        lambda m: jnp.abs(linalg.eigh(m)[1][:, :2]),
    ]
    for f in cases:
        check_grads(f, (A,), order=1, modes=("fwd", "rev"), atol=1e-5, rtol=1e-5)


# ---- return types, keywords ------------------------------------------------------------------

def test_result_types_and_keywords():
    mesh = mesh_1d(2)
    a = hpd(6, np.float64, np.random.default_rng(5))
    A = put_rows(a, mesh)
    res = linalg.eigh(A)
    assert isinstance(res, linalg.EighResult) and isinstance(res, tuple)
    w, v = res
    assert res.eigenvalues is w and res.eigenvectors is v
    assert linalg.eigh(A, eigvals_only=True).shape == (6,)
    sd = linalg.slogdet(A)
    assert isinstance(sd, linalg.SlogdetResult)
    want = jnp.linalg.slogdet(a)
    np.testing.assert_allclose(float(sd.logabsdet), float(want.logabsdet), rtol=1e-12)
    assert float(sd.sign) == float(want.sign) == 1.0
    for method in (None, "lu", "qr"):
        np.testing.assert_allclose(float(linalg.slogdet(A, method=method).logabsdet),
                                   float(want.logabsdet), rtol=1e-12)
    with pytest.raises(ValueError, match="method"):
        linalg.slogdet(A, method="cholesky-ish")
    # b = I: the generalized problem is the standard one
    np.testing.assert_allclose(np.asarray(linalg.eigh(A, np.eye(6), eigvals_only=True)),
                               np.asarray(linalg.eigh(A, eigvals_only=True)), atol=1e-10)
    with pytest.raises(NotImplementedError, match="type=1"):
        linalg.eigh(A, type=2)
    assert linalg.eigh(A, eigvals=(0, 2), eigvals_only=True).shape == (3,)  # SciPy's subset
    with pytest.raises(ValueError, match="UPLO"):
        linalg.eigh(A, UPLO="X")


# ---- inputs ------------------------------------------------------------------------------------

def test_numpy_and_integer_inputs_eagerly_and_inside_jit():
    """NumPy arrays (and lists, integer matrices, promoted as jnp.linalg promotes) are taken by
    every function, eagerly and inside jit without any mesh: there they run where jit puts
    an unsharded computation, on the default device."""
    a = hpd(5, np.float64, np.random.default_rng(6))
    b = np.arange(5.0)
    fns = {
        "solve": (lambda m: linalg.solve(m, b), lambda m: np.linalg.solve(m, b)),
        "cho": (lambda m: linalg.cho_solve(linalg.cho_factor(m), b),
                lambda m: np.linalg.solve(m, b)),
        "inv": (linalg.inv, np.linalg.inv),
        "eigh": (lambda m: linalg.eigh(m, eigvals_only=True), np.linalg.eigvalsh),
        "slogdet": (lambda m: linalg.slogdet(m)[1], lambda m: np.linalg.slogdet(m)[1]),
        "logdet": (linalg.logdet, lambda m: np.linalg.slogdet(m)[1]),
    }
    for name, (ours, ref) in fns.items():
        for run in (ours, jax.jit(ours)):
            np.testing.assert_allclose(np.asarray(run(a)), ref(a), rtol=1e-10, atol=1e-12,
                                       err_msg=name)
    eye = np.eye(4, dtype=np.int32) * 2
    x = linalg.inv(eye)
    assert x.dtype == jnp.float64
    np.testing.assert_allclose(np.asarray(x), np.eye(4) / 2)
    np.testing.assert_allclose(np.asarray(linalg.solve(eye.tolist(), [2, 4, 6, 8])),
                               [1.0, 2.0, 3.0, 4.0])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ndev", [1, 4])
def test_strict_dtype_promotion(dtype, ndev):
    """JAX's own tests run with jax_numpy_dtype_promotion='strict': values, jvp and grad of
    every function under it (no int32 x int64 index arithmetic, no real x complex mixing)."""
    mesh = mesh_1d(ndev)
    n = 8
    rng = np.random.default_rng(7)
    a = hpd(n, dtype, rng)
    b = rand(rng, (n, 2), dtype)
    A = put_rows(a, mesh)
    fns = [
        lambda m: linalg.solve(m, b),
        lambda m: linalg.cho_solve(linalg.cho_factor(m), b),
        linalg.inv,
        lambda m: linalg.eigh(m, eigvals_only=True),
        lambda m: jnp.abs(linalg.eigh(m)[1]) ** 2,
        lambda m: linalg.slogdet(m).logabsdet,
        linalg.logdet,
    ]
    with jax.numpy_dtype_promotion("strict"):
        for f in fns:
            jax.jit(f)(A)
            jax.jvp(f, (A,), (A,))
            jax.jit(jax.grad(lambda m: jnp.sum(jnp.abs(f(m)) ** 2)))(A)


def test_eager_jacobians_on_an_explicit_mesh():
    """Eager jax.jacrev/jacfwd/hessian of an unsharded input under jax.set_mesh on an
    Explicit mesh: the gradient comes back laid out as the input came (jacrev stacks its
    rows like the input), and equals the dense one."""
    devs = np.array(jax.devices()[:4])
    mesh = Mesh(devs, ("x",), axis_types=(AxisType.Explicit,))
    n = 6
    a = hpd(n, np.float64, np.random.default_rng(8))
    b = np.ones(n)
    cases = [
        (linalg.logdet, lambda m: jnp.linalg.slogdet(m)[1]),
        (lambda m: linalg.solve(m, b), lambda m: jnp.linalg.solve(from_triangle(m), b)),
        (linalg.inv, jnp.linalg.inv),
    ]
    for ours, dense in cases:
        for how in (jax.jacrev, jax.jacfwd):
            with jax.set_mesh(mesh):
                got = how(ours)(a)
            np.testing.assert_allclose(np.asarray(got), np.asarray(how(dense)(a)),
                                       rtol=1e-9, atol=1e-12)
    with jax.set_mesh(mesh):
        got = jax.hessian(linalg.logdet)(a)
    want = jax.hessian(lambda m: jnp.linalg.slogdet(m)[1])(a)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-9, atol=1e-12)


# ---- batch dimensions --------------------------------------------------------------------------

def test_leading_batch_dimensions():
    """(..., N, N) stacks, as JAX batches them; solve broadcasts the batch dimensions of
    ``a`` and ``b`` (vector right-hand sides when b has one dimension less than a)."""
    mesh = mesh_1d(2)
    rng = np.random.default_rng(9)
    n = 6
    a = np.stack([np.stack([hpd(n, np.float64, rng) for _ in range(3)]) for _ in range(2)])
    sharding = NamedSharding(mesh, P(None, None, "x", None))
    A = jax.device_put(a, sharding)
    bv = rand(rng, (2, 3, n), np.float64)
    bm = rand(rng, (n, 4), np.float64)            # broadcast over the batch
    x = linalg.solve(A, bv)
    assert x.shape == (2, 3, n)
    np.testing.assert_allclose(np.asarray(x), np.linalg.solve(a, bv[..., None])[..., 0],
                               rtol=1e-10)
    x = linalg.solve(A, bm)
    assert x.shape == (2, 3, n, 4)
    np.testing.assert_allclose(np.asarray(x), np.linalg.solve(a, bm), rtol=1e-10)
    fac = linalg.cho_factor(A)
    assert fac.shape == (2, 3, n, n)
    np.testing.assert_allclose(np.asarray(linalg.cho_solve(fac, bv)),
                               np.linalg.solve(a, bv[..., None])[..., 0], rtol=1e-10)
    np.testing.assert_allclose(np.asarray(linalg.cho_solve(fac, bm)),
                               np.linalg.solve(a, bm), rtol=1e-10)
    np.testing.assert_allclose(np.asarray(linalg.inv(A)), np.linalg.inv(a), rtol=1e-10,
                               atol=1e-12)
    w, v = linalg.eigh(A)
    assert w.shape == (2, 3, n) and v.shape == (2, 3, n, n)
    np.testing.assert_allclose(np.asarray(w), np.linalg.eigvalsh(a), rtol=1e-10)
    sign, logabs = linalg.slogdet(A)
    assert sign.shape == logabs.shape == (2, 3)
    np.testing.assert_allclose(np.asarray(logabs), np.linalg.slogdet(a)[1], rtol=1e-12)
    np.testing.assert_allclose(np.asarray(linalg.logdet(fac)), np.linalg.slogdet(a)[1],
                               rtol=1e-12)
    # info per matrix: the second matrix of the first row is not positive definite.
    bad = a.copy()
    bad[0, 1] = -np.eye(n)
    x, info = linalg.solve(jax.device_put(bad, sharding), bv, return_status=True)
    assert np.asarray(info).tolist() == [[0, 1, 0], [0, 0, 0]]
    assert np.isnan(np.asarray(x)[0, 1]).all() and np.isfinite(np.asarray(x)[1]).all()
    with pytest.raises(ValueError, match="broadcast"):
        linalg.solve(A, np.ones((4, 3, n)))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(0, 0), (2, 0, 0), (0, 3, 3)])
def test_empty_inputs_give_jax_results(dtype, shape):
    """A 0 x 0 matrix, a batch of none, or no right-hand side: JAX's empty results (det 1,
    info 0), eagerly and under jit and grad, with no engine run."""
    a = np.zeros(shape, dtype)
    real = np.finfo(dtype).dtype
    bv, bm = np.zeros(shape[:-1], dtype), np.zeros(shape[:-1] + (2,), dtype)
    for f in (lambda m: m, jax.jit):
        assert _same(f(linalg.inv)(a), jnp.linalg.inv(a))
        w, v = f(linalg.eigh)(a)
        w_ref, v_ref = jnp.linalg.eigh(a)
        assert _same(w, w_ref) and w.dtype == real and _same(v, v_ref)
        sign, logabs = f(linalg.slogdet)(a)
        sign_ref, logabs_ref = jnp.linalg.slogdet(a)
        assert _same(sign, sign_ref) and _same(logabs, logabs_ref) and logabs.dtype == real
        for b in (bv, bm):
            x_ref = jsl.solve(a, b, assume_a="pos")
            assert _same(f(linalg.solve)(a, b), x_ref)
            assert _same(f(linalg.cho_solve)(linalg.cho_factor(a), b), x_ref)
        x, info = f(lambda a, b: linalg.solve(a, b, return_status=True))(a, bm)
        assert info.shape == shape[:-2] and not np.asarray(info).any()
    assert _same(jax.grad(lambda a: linalg.logdet(a).sum().real)(a), np.zeros(shape, dtype))
    # An N x 0 right-hand side of a matrix that is not empty.
    m = hpd(3, dtype, np.random.default_rng(11))
    assert linalg.solve(m, np.zeros((3, 0), dtype)).shape == (3, 0)
    assert linalg.cho_solve(linalg.cho_factor(m), np.zeros((3, 0), dtype)).shape == (3, 0)
    with pytest.raises(ValueError, match="rows"):
        linalg.solve(a, np.zeros((5,), dtype))
    with pytest.raises(TypeError, match="float32, float64"):
        linalg.inv(np.zeros(shape, np.float16))


def _same(x, ref):
    """Same shape, dtype and values."""
    x, ref = np.asarray(x), np.asarray(ref)
    return x.shape == ref.shape and x.dtype == ref.dtype and np.array_equal(x, ref)


# ---- factors from and for jax.scipy.linalg -----------------------------------------------------

def test_dense_factors_from_jax_and_ours_refused_by_jax():
    mesh = mesh_1d(2)
    a = hpd(6, np.float64, np.random.default_rng(10))
    b = np.arange(6.0)
    for lower in (False, True):
        x = linalg.cho_solve(jsl.cho_factor(a, lower=lower), b)
        np.testing.assert_allclose(np.asarray(x), np.linalg.solve(a, b), rtol=1e-10)
    fac = linalg.cho_factor(put_rows(a, mesh))
    for arg in (fac, (fac, False)):
        with pytest.raises(TypeError, match="jaxmg.linalg.cho_solve"):
            jsl.cho_solve(arg, b)
