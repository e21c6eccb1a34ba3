"""The two-stage Hermitian eigensolver (jaxmg_syev2s: dense -> band -> tridiagonal, ?stedc,
back-transformation) on one CPU device, against LAPACK's one-stage solver on the same matrix.

Acceptance: the residual ||A V - V W||_1 / (N ||A||_1 eps) and the orthogonality
||V^H V - I||_1 / (N eps) each within 10x of those of LAPACK's ?syevd / ?heevd in the same
dtype (scipy.linalg.eigh(driver="evd"); numpy.linalg.eigh computes single precision in
double), or below 1 where LAPACK's are smaller still; eigenvalues within 30 N ||A||_1 eps of
numpy's in float64 / complex128."""

import _util  # noqa: F401  (devices and x64 before JAX starts)
from _util import DTYPES, eps, herm, norm1, with_spectrum

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

from jaxmg._engines.dense import two_stage_eigh

SIZES = (1, 2, 3, 32, 33, 100, 257)


def bands(n):
    """The default (32), a band dividing n or not (4, 7), and one >= n - 1 (plain
    tridiagonalization)."""
    return (None, 4, 7, max(n - 1, 1), n + 5)


def ratios(a, w, v, dtype):
    """(residual, orthogonality) ratios of the eigenpairs (w, v) of a, in complex128."""
    a = np.asarray(a, dtype=np.complex128)
    v = np.asarray(v, dtype=np.complex128)
    n = a.shape[0]
    an = max(norm1(a), np.finfo(np.float64).tiny)
    res = norm1(a @ v - v * np.asarray(w, dtype=np.float64)) / (n * an * eps(dtype))
    orth = norm1(v.conj().T @ v - np.eye(n)) / (n * eps(dtype))
    return res, orth


def check(a, band, vectors=True):
    """Runs the solver on a (of its dtype) and checks it against LAPACK; returns the ratios
    (ours, LAPACK's) of the residual and the orthogonality."""
    dtype = a.dtype
    n = a.shape[0]
    w, v, info = two_stage_eigh(jnp.asarray(a), vectors=vectors, band=band)
    assert int(info) == 0
    w = np.asarray(w)
    assert w.shape == (n,) and w.dtype == np.finfo(dtype).dtype
    assert np.all(np.diff(w) >= 0), "eigenvalues ascending"
    w64 = np.linalg.eigvalsh(a.astype(np.complex128))
    an = norm1(a)
    assert np.max(np.abs(w - w64), initial=0) <= 30 * n * an * eps(dtype), "eigenvalues"
    if not vectors:
        assert v is None
        return None
    v = np.asarray(v)
    assert v.shape == (n, n) and v.dtype == dtype
    wl, vl = scipy.linalg.eigh(a, driver="evd")
    ours, lapack = ratios(a, w, v, dtype), ratios(a, wl, vl, dtype)
    for name, o, ref in zip(("residual", "orthogonality"), ours, lapack):
        assert o <= max(10 * ref, 1.0), (name, o, ref)
    return ours, lapack


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", SIZES)
def test_random(dtype, n):
    rng = np.random.default_rng(n)
    a = herm(n, dtype, rng)
    for band in bands(n):
        check(a, band)
    check(a, None, vectors=False)
    check(a, 7, vectors=False)


@pytest.mark.parametrize("dtype", DTYPES)
def test_large(dtype):
    a = herm(600, dtype, np.random.default_rng(600))
    check(a, None)
    check(a, 50, vectors=False)


def clustered(n, dtype, rng):
    return with_spectrum(1 + 1e-10 * np.arange(n), dtype, rng)


def projector(n, dtype, rng):
    return with_spectrum((np.arange(n) < n // 3).astype(np.float64), dtype, rng)


def identity_plus_low_rank(n, dtype, rng):
    cplx = np.issubdtype(dtype, np.complexfloating)
    u = _util.rand(rng, (n, 2), np.complex128 if cplx else np.float64)
    a = np.eye(n) + u @ u.conj().T
    return ((a + a.conj().T) / 2).astype(dtype)


def graded(n, dtype, rng):
    """D A D with D = diag(logspace(-6, 6)): entries from 1e-12 to 1e12 times A's."""
    d = np.logspace(-6, 6, n)
    a = herm(n, np.complex128 if np.issubdtype(dtype, np.complexfloating) else np.float64, rng)
    return (d[:, None] * a * d[None, :]).astype(dtype)


@pytest.mark.parametrize("kind", [clustered, projector, identity_plus_low_rank, graded])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", (33, 100))
def test_structured(kind, dtype, n):
    a = kind(n, dtype, np.random.default_rng(n + 7))
    for band in (None, 7, n - 1):
        check(a, band)
    check(a, 7, vectors=False)


def test_zero_and_diagonal():
    for a in (np.zeros((9, 9)), np.diag(np.arange(9.0)[::-1])):
        check(a, 4)
        check(a.astype(np.complex64), None)


def test_reads_lower_triangle():
    rng = np.random.default_rng(3)
    a = herm(40, np.complex128, rng)
    junk = np.triu(_util.rand(rng, (40, 40), np.complex128), 1)
    w, v, info = two_stage_eigh(jnp.asarray(np.tril(a) + junk), band=6)
    assert int(info) == 0
    res, orth = ratios(a, w, v, np.complex128)
    assert res < 30 and orth < 30


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("vectors", (True, False))
def test_not_finite(dtype, vectors):
    a = herm(20, dtype, np.random.default_rng(5))
    a[13, 4] = np.nan
    w, v, info = two_stage_eigh(jnp.asarray(a), vectors=vectors, band=4)
    assert int(info) > 0
    assert np.all(np.isnan(np.asarray(w)))
    if vectors:
        assert np.all(np.isnan(np.asarray(v)))
    a[13, 4] = np.inf
    assert int(two_stage_eigh(jnp.asarray(a), vectors=vectors)[2]) > 0


def test_jit_equals_eager():
    a = jnp.asarray(herm(45, np.float64, np.random.default_rng(11)))
    eager = two_stage_eigh(a, band=8)
    jitted = jax.jit(lambda x: two_stage_eigh(x, band=8))(a)
    for e, j in zip(eager, jitted):
        np.testing.assert_array_equal(np.asarray(e), np.asarray(j))


def test_bad_arguments():
    with pytest.raises(ValueError, match="square"):
        two_stage_eigh(jnp.zeros((3, 4)))
    with pytest.raises(ValueError, match="band"):
        two_stage_eigh(jnp.eye(3), band=0)
    with pytest.raises(ValueError, match="float32"):
        two_stage_eigh(jnp.eye(3, dtype=jnp.int32))
