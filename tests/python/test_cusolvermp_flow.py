"""The cuSOLVERMp engine's data flow on CPU devices: its bodies (the exchange to the 2D
block-cyclic layout, the right-hand side's local blocks, the psum of the solution, the
factor and eigenvectors moved back to rows, info over the ranks) with the two FFI calls
replaced by a stand-in that does what cuSOLVERMp documents, in JAX: it assembles the whole
matrix from every rank's local blocks, factors or diagonalizes it, and returns each rank's
local blocks of the results. The real calls run in tests/gpu/test_cusolvermp.py."""

import _util  # noqa: F401  (devices and x64 before JAX starts)
from _util import hpd, herm, need_devices

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg as sl
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from jaxmg import _spmd
from jaxmg._engines import _grid2d, cusolvermp
from jaxmg._geometry import Geometry, Placement


def _assemble(local_t, lay, tb, n, m):
    """Inside shard_map: the whole n x m matrix from every rank's local blocks (given as the
    column-major buffers: shape (local columns, lld))."""
    every = jax.lax.all_gather(local_t.T, "x")         # (P, mloc, nloc_padded)
    whole = jnp.zeros((n, m), local_t.dtype)
    for r in range(lay.nprocs):
        rows, cols = lay.rows(r), lay.cols(r)
        whole = whole.at[np.ix_(rows, cols)].set(every[r][:rows.size, :cols.size])
    return whole


def _local(whole, lay, tb, shape_t):
    """This rank's local blocks of ``whole`` as a column-major buffer of shape ``shape_t``."""
    me = jax.lax.axis_index("x")
    blocks = []
    for r in range(lay.nprocs):
        rows, cols = lay.rows(r), lay.cols(r)
        loc = jnp.zeros((shape_t[1], shape_t[0]), whole.dtype)
        loc = loc.at[:rows.size, :cols.size].set(whole[np.ix_(rows, cols)])
        blocks.append(loc.T)
    return jnp.stack(blocks)[me]


def _fake_ffi(geo, grid):
    p, q = grid
    real_call = jax.ffi.ffi_call

    def ffi_call(name, shapes, **kw):
        if not name.startswith("jaxmg_dist_"):
            return real_call(name, shapes, **kw)
        g = cusolvermp._grid(geo.n, geo.ndev, p, q, cusolvermp.block(geo.nloc))
        lay, tb = g.lay, g.tb

        def run(*args, **attrs):
            assert attrs["n"] == geo.n and attrs["mb"] == lay.mb == attrs["nb"]
            a = _assemble(args[0], lay, tb, geo.n, geo.n)
            if name == "jaxmg_dist_getrs":
                nrhs = int(attrs["nrhs"])
                blay = _grid2d.Layout(geo.n, nrhs, lay.mb, int(attrs["nbb"]), p, q)
                b = _assemble(args[1], blay, None, geo.n, nrhs)
                x = jnp.linalg.solve(a, b)
                return (args[0], _local(x, blay, None, shapes[1].shape), jnp.zeros((2,), jnp.int32))
            if name == "jaxmg_dist_sygvd":
                bm = _assemble(args[1], lay, tb, geo.n, geo.n)
                L = jnp.linalg.cholesky(bm)
                tri = jax.lax.linalg.triangular_solve
                c = tri(L, tri(L, a, left_side=True, lower=True).T, left_side=True, lower=True)
                w, v = jnp.linalg.eigh((c + c.T) / 2)
                z = tri(L, v, left_side=True, lower=True, transpose_a=True)
                return (args[0], args[1], _local(z, lay, tb, shapes[2].shape), w,
                        jnp.zeros((1,), jnp.int32))
            if name == "jaxmg_dist_potrs":
                nrhs = int(attrs["nrhs"])
                blay = _grid2d.Layout(geo.n, nrhs, lay.mb, int(attrs["nbb"]), p, q)
                b = _assemble(args[1], blay, None, geo.n, nrhs)
                L = jnp.tril(jax.lax.linalg.cholesky(a, symmetrize_input=False))
                x = jax.scipy.linalg.cho_solve((L, True), b)
                return (_local(L, lay, tb, shapes[0].shape), _local(x, blay, None, shapes[1].shape),
                        jnp.zeros((2,), jnp.int32))
            w, v = jnp.linalg.eigh(a)
            return (args[0], _local(v, lay, tb, shapes[1].shape), w, jnp.zeros((1,), jnp.int32))

        return run

    return ffi_call


@pytest.mark.parametrize("ndev,n,block", [(1, 8, 4), (2, 12, 4), (4, 16, 4), (4, 24, 3),
                                          (3, 18, 4), (2, 20, 512)])
def test_potrs_and_syevd_bodies(monkeypatch, ndev, n, block):
    need_devices(ndev)
    monkeypatch.setenv("JAXMG_MP_BLOCK", str(block))
    mesh = Mesh(np.array(jax.devices()[:ndev]), ("x",))
    place = Placement(mesh, ("x",), ())
    geo = Geometry(n, ndev, n // ndev)
    grid = _grid2d.choose_grid(ndev)
    monkeypatch.setattr(jax.ffi, "ffi_call", _fake_ffi(geo, grid))
    rng = np.random.default_rng(n)
    a = hpd(n, np.float64, rng)
    b = rng.standard_normal((n, 3))
    kw = dict(geo=geo, row_axes=("x",), group_axes=(), key=1, grid=grid)

    def potrs(a_loc, b):
        return cusolvermp.potrs(a_loc, b, keep_factor=True, **kw)

    prog = _spmd.shard_map(potrs, mesh, (P("x", None), P()), (P(), P(), P("x", None)))
    x, info, factor = jax.jit(prog)(jax.device_put(a, NamedSharding(mesh, P("x", None))), b)
    np.testing.assert_allclose(np.asarray(x), np.linalg.solve(a, b), rtol=1e-10)
    assert int(info[0]) == 0
    np.testing.assert_allclose(np.tril(np.asarray(factor)), np.linalg.cholesky(a), atol=1e-12)

    def potri(a_loc):
        return cusolvermp.potri(a_loc, **kw)

    prog = _spmd.shard_map(potri, mesh, (P("x", None),), (P("x", None), P()))
    inv, info = jax.jit(prog)(jax.device_put(a, NamedSharding(mesh, P("x", None))))
    np.testing.assert_allclose(np.asarray(inv), np.linalg.inv(a), atol=1e-10)
    assert int(info[0]) == 0

    g = rng.standard_normal((n, n)) + n * np.eye(n)

    def gen(a_loc, b):
        return cusolvermp.solve_gen(a_loc, b, geo=geo, row_axes=("x",), key=1, grid=grid)

    prog = _spmd.shard_map(gen, mesh, (P("x", None), P()), (P(), P()))
    x, info = jax.jit(prog)(jax.device_put(g, NamedSharding(mesh, P("x", None))), b)
    np.testing.assert_allclose(np.asarray(x), np.linalg.solve(g, b), rtol=1e-10)

    h = herm(n, np.float64, rng)
    s = hpd(n, np.float64, rng)

    def gen_eig(a_loc, b_loc):
        return cusolvermp.eigh_gen(a_loc, b_loc, geo=geo, row_axes=("x",), key=1, grid=grid)

    prog = _spmd.shard_map(gen_eig, mesh, (P("x", None), P("x", None)), (P(), P("x", None), P()))
    put = lambda m: jax.device_put(m, NamedSharding(mesh, P("x", None)))  # noqa: E731
    w, v, info = jax.jit(prog)(put(h), put(s))
    np.testing.assert_allclose(np.asarray(w), sl.eigh(h, s, eigvals_only=True), atol=1e-10)
    v = np.asarray(v)
    np.testing.assert_allclose(h @ v, s @ v * np.asarray(w), atol=1e-9)
    np.testing.assert_allclose(v.T @ s @ v, np.eye(n), atol=1e-9)

    def syevd(a_loc):
        return cusolvermp.syevd(a_loc, vectors=True, **kw)

    prog = _spmd.shard_map(syevd, mesh, (P("x", None),), (P(), P("x", None), P()))
    w, v, info = jax.jit(prog)(jax.device_put(h, NamedSharding(mesh, P("x", None))))
    np.testing.assert_allclose(np.asarray(w), np.linalg.eigvalsh(h), atol=1e-12)
    v = np.asarray(v)
    np.testing.assert_allclose(h @ v, v * np.asarray(w), atol=1e-10)
