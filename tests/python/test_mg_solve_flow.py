"""The general solve on the cuSOLVERMg engine (``linalg.solve(assume_a="gen",
engine="cusolvermg")``), its data flow on CPU devices: the transposition of A (the solver
reads the shards column-major), the identity padding, the right-hand side in solver order
and back, info and NaN, and the derivative rule (distributed solves with A and Aᵀ, no
gathered matrix), with the FFI call ``jaxmg_getrs`` replaced by a stand-in that does what
cuSOLVERMg's getrf + getrs do on the block-cyclic matrix the C layer hands it. The real call
runs in tests/gpu (and tests/gpu/mock tests the C layer)."""

import _util  # noqa: F401  (devices and x64 before JAX starts)
from _util import DTYPES, THRESH, eps, need_devices, rand

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
from jax.test_util import check_grads

from jaxmg import _engines, linalg
from jaxmg._engines import cusolvermg
from jaxmg._geometry import Geometry

# stand-ins for an engine or its FFI: nothing built with them outlives a test
pytestmark = pytest.mark.usefixtures("forget_jaxmg_caches")


def _stand_in(real_call):
    def ffi_call(name, shapes, **kw):
        if name != "jaxmg_getrs":
            return real_call(name, shapes, **kw)

        def run(a_p, c, ids, tile, nparts, **attrs):
            ndev, n_pad = int(nparts), a_p.shape[1]
            geo = Geometry(n_pad, ndev, int(tile))  # nloc = nloc_pad: the padded problem
            rows_of_at = jax.lax.all_gather(a_p, "x", axis=0, tiled=True)
            m = rows_of_at.T[geo.src][:, geo.src]    # what the solver sees: Pᵀ A P
            lu, piv, perm = jax.lax.linalg.lu(m)
            u_diag = jnp.diagonal(lu)
            bad = jnp.argmax(u_diag == 0)
            info = jnp.where(jnp.any(u_diag == 0), bad + 1, 0)
            info = jnp.where(info > 0, jnp.asarray(geo.src)[jnp.maximum(info - 1, 0)] + 1, 0)
            y = jax.scipy.linalg.lu_solve((lu, piv), c.T)
            y = jnp.where(info > 0, jnp.nan, y)
            return a_p, y.T.astype(c.dtype), jnp.reshape(info, (1,)).astype(jnp.int32)

        return run

    return ffi_call



@pytest.fixture
def on_cpu(monkeypatch):
    """The cuSOLVERMg engine let onto CPU devices, its FFI call stood in."""
    monkeypatch.setattr(jax.ffi, "ffi_call", _stand_in(jax.ffi.ffi_call))
    monkeypatch.setitem(_engines.ENGINES, "cusolvermg",
                        dataclasses.replace(cusolvermg.ENGINE, platforms=("cpu", "gpu")))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ndev,n,tile", [(1, 8, 8), (2, 12, 3), (3, 10, 2), (4, 16, 4),
                                         (4, 13, 2), (2, 12, 4)])
def test_solve(on_cpu, dtype, ndev, n, tile):
    need_devices(ndev)
    rng = np.random.default_rng(n + ndev)
    a = rand(rng, (n, n), dtype) + 2 * np.eye(n, dtype=dtype)
    b = rand(rng, (n, 3), dtype)
    mesh = Mesh(np.array(jax.devices()[:ndev]), ("x",))
    arg = jax.device_put(a, NamedSharding(mesh, P("x", None))) if n % ndev == 0 else a
    x, info = linalg.solve(arg, b, assume_a="gen", mesh=mesh, engine="cusolvermg",
                           return_status=True, T_A=tile)
    assert int(info) == 0 and x.shape == (n, 3) and x.dtype == dtype
    ad, xd = a.astype(np.complex128), np.asarray(x, np.complex128)
    resid = np.linalg.norm(ad @ xd - b, 1) / (n * np.linalg.norm(ad, 1) * np.linalg.norm(xd, 1)
                                               * eps(dtype))
    assert resid < THRESH
    xv = linalg.solve(arg, b[:, 0], assume_a="gen", mesh=mesh, engine="cusolvermg")
    assert xv.shape == (n,)


def test_singular_gives_info_and_nan(on_cpu):
    mesh = Mesh(np.array(jax.devices()[:2]), ("x",))
    a = np.random.default_rng(0).standard_normal((8, 8))
    a[:, 5] = 0
    x, info = linalg.solve(jax.device_put(a, NamedSharding(mesh, P("x", None))), np.ones(8),
                           assume_a="gen", engine="cusolvermg", return_status=True)
    assert int(info) > 0 and np.isnan(np.asarray(x)).all()


@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
def test_derivatives_never_gather(on_cpu, dtype):
    mesh = Mesh(np.array(jax.devices()[:2]), ("x",))
    rng = np.random.default_rng(3)
    a = jax.device_put(rand(rng, (6, 6), dtype) + 3 * np.eye(6), NamedSharding(mesh, P("x", None)))
    b = jnp.asarray(rand(rng, (6, 2), dtype))

    def f(a, b):
        return linalg.solve(a, b, assume_a="gen", mesh=mesh, engine="cusolvermg")

    check_grads(f, (a, b), order=1, modes=["fwd", "rev"], atol=1e-6, rtol=1e-6)
    g = jax.grad(lambda a: jnp.sum(jnp.abs(f(a, b)) ** 2))(a)
    ref = jax.grad(lambda a: jnp.sum(jnp.abs(jnp.linalg.solve(a, b)) ** 2))(np.asarray(a))
    np.testing.assert_allclose(np.asarray(g), np.asarray(ref), rtol=1e-9, atol=1e-12)


def test_auto_takes_it_where_the_gathered_matrix_does_not_fit(monkeypatch):
    from jaxmg import _general
    from jaxmg._geometry import Placement

    mesh = Mesh(np.array(jax.devices()[:2]), ("x",))
    a = jax.device_put(np.eye(8), NamedSharding(mesh, P("x", None)))
    monkeypatch.setattr(Placement, "platform", property(lambda self: "gpu"))
    monkeypatch.setitem(_engines.ENGINES, "cusolvermg",
                        dataclasses.replace(cusolvermg.ENGINE, platforms=("cpu", "gpu")))
    assert _general._general_engine("auto", a, None, None, "solve") == "gather"
    monkeypatch.setattr(_engines, "_device_bytes", lambda device: 100)
    assert _general._general_engine("auto", a, None, None, "solve") == "cusolvermg"
    assert _general._general_engine("auto", a, None, None, "lu_factor") == "gather"
    with pytest.raises(ValueError, match="general solve only"):
        _general._general_engine("cusolvermg", a, None, None, "eigh")
