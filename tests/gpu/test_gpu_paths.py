"""Public paths that once failed on GPUs, each checked against NumPy on every GPU JAX sees:

- every ``*_shardmap_ctx`` form (``potri_shardmap_ctx`` once ran cuSOLVERMg's potri, which
  returns wrong inverses on 2 GPUs), with default tiles too;
- ``syevd(engine="mg")`` and ``syevd_shardmap_ctx`` with the default tile on shards of 4096
  rows (the default was 2048 there, above cuSOLVERMg syevd's limit of 1024, and the call
  raised);
- jaxmg after a native op of the same size, under JAX's default memory settings: that one
  needs a process of its own, with the GPU to itself (a pytest process already holds 75 % of
  it), so it is tests/gpu/after_native.py, which tests/gpu/run_gpu.sh runs before pytest.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

import jaxmg

jax.config.update("jax_enable_x64", True)

pytestmark = pytest.mark.gpu

ROWS, REP = P("x", None), P()


@pytest.fixture(scope="module")
def mesh(gpus):
    return Mesh(np.array(gpus, dtype=object), ("x",))


def _hpd(n, dtype, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, n))
    if np.issubdtype(np.dtype(dtype), np.complexfloating):
        x = x + 1j * rng.standard_normal((n, n))
    a = x @ x.conj().T / n + 0.25 * np.eye(n)
    return ((a + a.conj().T) / 2).astype(dtype)


def _eps(dtype):
    return float(np.finfo(np.dtype(dtype)).eps)


def _wide(x):
    x = np.asarray(x)
    return x.astype(np.complex128 if np.iscomplexobj(x) else np.float64)


def _ratio(residual, a, x, dtype):
    n = a.shape[0]
    return float(np.linalg.norm(residual, np.inf)
                 / (n * np.linalg.norm(a, np.inf) * max(np.linalg.norm(x, np.inf), 1.0)
                    * _eps(dtype)))


def _in_shard_map(mesh, fn, in_specs, out_specs):
    return jax.jit(jax.shard_map(fn, mesh=mesh, in_specs=in_specs, out_specs=out_specs,
                                 check_vma=False))


@pytest.mark.parametrize("dtype", [np.float64, np.complex64], ids=["f64", "c64"])
@pytest.mark.parametrize("T_A", [None, 24], ids=["default", "pads"])
def test_every_shardmap_ctx_form(mesh, dtype, T_A):
    ndev = mesh.devices.size
    n = 160 * ndev
    a = _hpd(n, dtype, seed=n)
    a64 = _wide(a)
    b = np.random.default_rng(1).standard_normal((n, 2)).astype(dtype)
    a_s = jax.device_put(a, NamedSharding(mesh, ROWS))
    b_s = jax.device_put(b, NamedSharding(mesh, REP))

    x, info = _in_shard_map(mesh, lambda a, b: jaxmg.potrs_shardmap_ctx(a, b, T_A=T_A),
                            (ROWS, REP), (REP, REP))(a_s, b_s)
    assert np.all(np.asarray(info) == 0)
    assert _ratio(a64 @ _wide(x) - b, a64, _wide(x), dtype) < 30

    inv, info = _in_shard_map(mesh, lambda a: jaxmg.potri_shardmap_ctx(a, T_A=T_A),
                              (ROWS,), (ROWS, REP))(a_s)
    assert np.all(np.asarray(info) == 0)
    inv64 = _wide(inv)
    assert _ratio(a64 @ inv64 - np.eye(n), a64, inv64, dtype) < 30

    w, v, info = _in_shard_map(mesh, lambda a: jaxmg.syevd_shardmap_ctx(a, T_A=T_A),
                               (ROWS,), (REP, ROWS, REP))(a_s)
    assert np.all(np.asarray(info) == 0)
    v64, w64 = _wide(v), np.asarray(w, np.float64)
    assert _ratio(a64 @ v64 - v64 * w64, a64, v64, dtype) < 30
    np.testing.assert_allclose(w64, np.linalg.eigvalsh(a64), atol=30 * n * _eps(dtype)
                               * np.linalg.norm(a64, 2))
    w_only, info = _in_shard_map(
        mesh, lambda a: jaxmg.syevd_shardmap_ctx(a, T_A=T_A, return_eigenvectors=False),
        (ROWS,), (REP, REP))(a_s)
    assert np.all(np.asarray(info) == 0)
    np.testing.assert_allclose(np.asarray(w_only, np.float64), w64,
                               atol=30 * n * _eps(dtype) * np.linalg.norm(a64, 2))


def _large_hermitian(n):
    """A dense symmetric matrix with a known spectrum, made on GPU 0: Q diag(d) Q^T with Q a
    Householder reflector, O(n^2) to build and to check."""
    rng = np.random.default_rng(n)
    d = np.sort(rng.uniform(-1.0, 1.0, n))
    u = rng.standard_normal(n)
    u /= np.linalg.norm(u)
    with jax.default_device(jax.devices("gpu")[0]):
        q = jnp.eye(n) - 2 * jnp.outer(u, u)
        a = (q * d) @ q.T
        a = (a + a.T) / 2
    return a, d


def test_syevd_mg_default_tile_on_large_shards(mesh):
    """Shards of 4096 rows: the default tile of cuSOLVERMg's syevd is at most 1024 (it was
    2048, which cuSOLVERMg refuses), through syevd(engine="mg") and syevd_shardmap_ctx."""
    ndev = mesh.devices.size
    n = 4096 * ndev
    a, d = _large_hermitian(n)
    a_s = jax.device_put(a, NamedSharding(mesh, ROWS))
    tol = 30 * n * _eps(np.float64)
    w, info = jaxmg.syevd(a_s, return_eigenvectors=False, return_status=True, engine="mg")
    assert int(info) == 0
    np.testing.assert_allclose(np.asarray(w), d, atol=tol)
    w, info = _in_shard_map(
        mesh, lambda a: jaxmg.syevd_shardmap_ctx(a, return_eigenvectors=False),
        (ROWS,), (REP, REP))(a_s)
    assert np.all(np.asarray(info) == 0)
    np.testing.assert_allclose(np.asarray(w), d, atol=tol)
