"""The cuSOLVERMp engine (``engine="cusolvermp"``) in one process, on every GPU JAX sees (one
rank per GPU): potrs and syevd at every dtype against NumPy with scaled residual ratios
(LAPACK's threshold 30), blocks that do and do not divide the shard, a matrix that is not
positive definite (info and NaN). Skipped where jaxmg was built without the engine or
cuSOLVERMp is not installed (the skip says what to install).

The multi-process runs (one process per GPU under jax.distributed) use the same calls:
docs/benchmarks.md has their command.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

import jaxmg
from jaxmg import linalg
from jaxmg._engines import cusolvermp

jax.config.update("jax_enable_x64", True)

pytestmark = pytest.mark.gpu
DTYPES = [np.float32, np.float64, np.complex64, np.complex128]
EPS = {np.float32: 2**-24, np.float64: 2**-53, np.complex64: 2**-24, np.complex128: 2**-53}


@pytest.fixture(scope="module")
def mesh(gpus):
    why = cusolvermp.available()
    if why:
        pytest.skip(why)
    return Mesh(np.array(gpus), ("x",))


def _hpd(n, dtype, rng):
    x = rng.standard_normal((n, n))
    if np.issubdtype(dtype, np.complexfloating):
        x = x + 1j * rng.standard_normal((n, n))
    a = x @ x.conj().T / n + np.eye(n)
    return ((a + a.conj().T) / 2).astype(dtype)


def _ratio(r, a, dtype):
    return np.linalg.norm(r, 1) / (a.shape[0] * np.linalg.norm(a, 1) * EPS[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,block", [(96, 16), (96, 20), (256, 512)])
def test_potrs(mesh, dtype, n, block, monkeypatch):
    monkeypatch.setenv("JAXMG_MP_BLOCK", str(block))
    ndev = mesh.devices.size
    n = n * ndev
    rng = np.random.default_rng(n + block)
    a = _hpd(n, dtype, rng)
    b = rng.standard_normal((n, 3)).astype(dtype)
    A = jax.device_put(a, NamedSharding(mesh, P("x", None)))
    x, info = jaxmg.potrs(A, b, mesh=mesh, in_specs=(P("x", None), P(None, None)),
                          return_status=True, engine="cusolvermp")
    assert int(np.asarray(info).ravel()[0]) == 0
    ad = a.astype(np.complex128)
    assert _ratio(ad @ np.asarray(x, np.complex128) - b, ad, dtype) < 30


@pytest.mark.parametrize("dtype", DTYPES)
def test_potrs_not_positive_definite(mesh, dtype):
    n = 64 * mesh.devices.size
    a = np.eye(n, dtype=dtype)
    a[n // 2, n // 2] = -1
    A = jax.device_put(a, NamedSharding(mesh, P("x", None)))
    x, info = jaxmg.potrs(A, np.ones((n, 1), dtype), mesh=mesh,
                          in_specs=(P("x", None), P(None, None)), return_status=True,
                          engine="cusolvermp")
    assert int(np.asarray(info).ravel()[0]) > 0
    assert np.isnan(np.asarray(x)).all()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [96, 100])
def test_solve_general(mesh, dtype, n, monkeypatch):
    monkeypatch.setenv("JAXMG_MP_BLOCK", "16")
    n = n * mesh.devices.size + (n == 100)  # 100: rows that do not split evenly
    rng = np.random.default_rng(n)
    a = rng.standard_normal((n, n)).astype(dtype)
    if np.issubdtype(dtype, np.complexfloating):
        a = a + 1j * rng.standard_normal((n, n))
    a = a.astype(dtype)
    b = rng.standard_normal((n, 2)).astype(dtype)
    x, info = linalg.solve(a, b, assume_a="gen", mesh=mesh, return_status=True,
                           engine="cusolvermp")
    assert int(info) == 0
    ad, xd = a.astype(np.complex128), np.asarray(x, np.complex128)
    backward = np.linalg.norm(ad @ xd - b, 1) / (
        n * np.linalg.norm(ad, 1) * np.linalg.norm(xd, 1) * EPS[dtype])
    assert backward < 30
    singular = np.zeros((n, n), dtype)
    x, info = linalg.solve(singular, b, assume_a="gen", mesh=mesh, return_status=True,
                           engine="cusolvermp")
    assert int(info) > 0 and np.isnan(np.asarray(x)).all()


@pytest.mark.parametrize("dtype", DTYPES)
def test_generalized_eigh(mesh, dtype, monkeypatch):
    monkeypatch.setenv("JAXMG_MP_BLOCK", "16")
    n = 64 * mesh.devices.size
    rng = np.random.default_rng(n)
    h = _hpd(n, dtype, rng) - 2 * np.eye(n, dtype=dtype)
    s = _hpd(n, dtype, rng)
    (w, v), info = linalg.eigh(h, s, mesh=mesh, return_status=True, engine="cusolvermp")
    assert int(info) == 0
    hd, sd, vd = (m.astype(np.complex128) for m in (h, s, np.asarray(v)))
    wd = np.asarray(w, np.float64)
    assert _ratio(hd @ vd - sd @ vd * wd, hd, dtype) < 30 * np.linalg.norm(sd, 1)
    assert np.linalg.norm(vd.conj().T @ sd @ vd - np.eye(n), 1) / (n * EPS[dtype]) < 30 * np.linalg.cond(sd)
    bad = np.eye(n, dtype=dtype)
    bad[5, 5] = -1
    w, info = linalg.eigh(h, bad, eigvals_only=True, mesh=mesh, return_status=True,
                          engine="cusolvermp")
    assert int(info) > n and np.isnan(np.asarray(w)).all()


@pytest.mark.parametrize("dtype", DTYPES)
def test_potri(mesh, dtype, monkeypatch):
    monkeypatch.setenv("JAXMG_MP_BLOCK", "16")
    n = 72 * mesh.devices.size
    a = _hpd(n, dtype, np.random.default_rng(n))
    A = jax.device_put(a, NamedSharding(mesh, P("x", None)))
    inv, info = jaxmg.potri(A, mesh=mesh, in_specs=(P("x", None),), return_status=True,
                            engine="cusolvermp")
    assert int(np.asarray(info).ravel()[0]) == 0
    ad = a.astype(np.complex128)
    assert _ratio(ad @ np.asarray(inv, np.complex128) - np.eye(n), ad, dtype) < 30


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("vectors", [True, False])
def test_syevd(mesh, dtype, vectors, monkeypatch):
    monkeypatch.setenv("JAXMG_MP_BLOCK", "16")
    n = 80 * mesh.devices.size
    rng = np.random.default_rng(n)
    a = _hpd(n, dtype, rng) - 1.5 * np.eye(n, dtype=dtype)
    A = jax.device_put(a, NamedSharding(mesh, P("x", None)))
    out = jaxmg.syevd(A, mesh=mesh, in_specs=(P("x", None),), return_eigenvectors=vectors,
                      return_status=True, engine="cusolvermp")
    w, info = (out[0], out[-1])
    assert int(np.asarray(info).ravel()[0]) == 0
    ad = a.astype(np.complex128)
    w_ref = np.linalg.eigvalsh(ad)
    assert np.abs(np.asarray(w, np.float64) - w_ref).max() < 30 * n * np.linalg.norm(ad, 1) * EPS[dtype]
    if vectors:
        v = np.asarray(out[1], np.complex128)
        assert _ratio(ad @ v - v * np.asarray(w, np.float64), ad, dtype) < 30


@pytest.mark.parametrize("dtype", DTYPES)
def test_factor_ops_and_derivatives(mesh, dtype, monkeypatch):
    """cho_factor / cho_solve / logdet / inv and the derivative rules on this engine, as on
    GPUs of several processes (``_engines.multi_process`` forced: auto and the kept factors
    then run on cuSOLVERMp in this one process too)."""
    from jaxmg import _engines
    from jax.test_util import check_grads

    monkeypatch.setenv("JAXMG_MP_BLOCK", "16")
    monkeypatch.setattr(_engines, "multi_process", lambda place: place.platform == "gpu")
    n = 48 * mesh.devices.size
    rng = np.random.default_rng(n + 5)
    a = _hpd(n, dtype, rng)
    b = rng.standard_normal((n, 2)).astype(dtype)
    A = jax.device_put(a, NamedSharding(mesh, P("x", None)))
    ad = a.astype(np.complex128)
    fac = linalg.cho_factor(A)
    x = linalg.cho_solve(fac, b)
    assert _ratio(ad @ np.asarray(x, np.complex128) - b, ad, dtype) < 30
    ld = float(linalg.logdet(A))
    ref = np.linalg.slogdet(ad)[1]
    assert abs(ld - ref) <= 30 * n * EPS[dtype] * max(1.0, abs(ref))
    inv = linalg.inv(A)
    assert _ratio(ad @ np.asarray(inv, np.complex128) - np.eye(n), ad, dtype) < 30
    if dtype in (np.float64, np.complex128):
        small = jax.device_put(_hpd(4 * mesh.devices.size, dtype, rng),
                               NamedSharding(mesh, P("x", None)))
        rhs = jnp.asarray(rng.standard_normal((small.shape[0], 1)).astype(dtype))
        kw = dict(order=1, modes=["fwd", "rev"], atol=1e-5, rtol=1e-5)
        sym = lambda m: (m + jnp.conj(m).T) / 2  # noqa: E731  (the solver reads one triangle)
        check_grads(lambda m: linalg.solve(sym(m), rhs, assume_a="pos"), (small,), **kw)
        check_grads(lambda m: linalg.logdet(sym(m)), (small,), **kw)
        hlo = jax.jit(jax.grad(lambda m: linalg.logdet(sym(m)))).lower(small).as_text()
        assert "jaxmg_dist_potrs" in hlo


@pytest.mark.parametrize("dtype", DTYPES)
def test_qr(mesh, dtype, monkeypatch):
    """The reduced QR of tall matrices (Geqrf + Orgqr; rows that do and do not split),
    R only, svd / polar / lstsq through it, and the derivatives (only N x N pieces
    replicated)."""
    from jax.test_util import check_grads

    monkeypatch.setenv("JAXMG_MP_BLOCK", "16")
    k = mesh.devices.size
    rng = np.random.default_rng(k)
    for m, n in ((96 * k, 40), (96 * k + 3, 33)):
        a = rng.standard_normal((m, n))
        if np.issubdtype(dtype, np.complexfloating):
            a = a + 1j * rng.standard_normal((m, n))
        a = a.astype(dtype)
        q, r = linalg.qr(a, mesh=mesh, engine="cusolvermp")
        qd, rd, ad = (np.asarray(x, np.complex128) for x in (q, r, a))
        assert np.all(np.tril(rd, -1) == 0)
        assert _ratio(qd @ rd - ad, ad, dtype) < 30
        assert np.linalg.norm(qd.conj().T @ qd - np.eye(n), 1) / (m * EPS[dtype]) < 30
        r_only = linalg.qr(a, mode="r", mesh=mesh, engine="cusolvermp")
        assert np.abs(np.asarray(r_only) - r).max() <= 30 * m * EPS[dtype] * np.abs(rd).max()
    # svd / polar / lstsq of the last (ragged) one through its QR and the SVD of R
    u, sv, vh = linalg.svd(a, full_matrices=False, mesh=mesh, engine="cusolvermp")
    s_ref = np.linalg.svd(ad, compute_uv=False)
    assert np.abs(np.asarray(sv) - s_ref).max() <= 30 * m * EPS[dtype] * s_ref[0]
    ud = np.asarray(u, np.complex128)
    assert _ratio((ud * np.asarray(sv)) @ np.asarray(vh, np.complex128) - ad, ad, dtype) < 30
    up, p = linalg.polar(a, mesh=mesh, engine="cusolvermp")
    assert _ratio(np.asarray(up, np.complex128) @ np.asarray(p, np.complex128) - ad, ad,
                  dtype) < 300
    b = rng.standard_normal((m, 2)).astype(dtype)
    x, resid, rank, s2 = linalg.lstsq(a, b, mesh=mesh, engine="cusolvermp")
    x_ref = np.linalg.lstsq(ad, b, rcond=None)[0]
    cond = s_ref[0] / s_ref[-1]
    assert int(rank) == n
    assert np.abs(np.asarray(x) - x_ref).max() <= 100 * m * EPS[dtype] * cond * np.abs(x_ref).max()
    if dtype in (np.float64, np.complex128):
        small = a[: 8 * k, :5]
        kw = dict(order=1, modes=["fwd", "rev"], atol=1e-5, rtol=1e-5)
        check_grads(lambda a: linalg.qr(a, mesh=mesh, engine="cusolvermp"), (small,), **kw)
        check_grads(lambda a: linalg.svd(a, compute_uv=False, mesh=mesh, engine="cusolvermp"),
                    (small,), **kw)
