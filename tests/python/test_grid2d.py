"""The 2D block-cyclic layout of the distributed engine over cuSOLVERMp (ScaLAPACK's
conventions) and its exchange with row-sharded matrices, against a NumPy reference written
from the definition: element (i, j) belongs to grid row (i // mb) % p and grid column
(j // nb) % q, its rank is row + col * p, local rows and columns in increasing global order."""

import _util  # noqa: F401  (devices and x64 before JAX starts)
from _util import need_devices

import itertools

import jax
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from jaxmg import _spmd
from jaxmg._engines import _grid2d as g


def _ref_owned(n, nb, iproc, nprocs):
    return np.array([i for i in range(n) if (i // nb) % nprocs == iproc], dtype=np.int64)


@pytest.mark.parametrize("nprocs", [1, 2, 3, 4, 5, 8])
@pytest.mark.parametrize("nb", [1, 2, 3, 7, 16])
def test_numroc_and_index_maps_match_the_definition(nprocs, nb):
    for n in [0, 1, 2, 5, 16, 17, 31, 64, 100]:
        total = 0
        for ip in range(nprocs):
            ref = _ref_owned(n, nb, ip, nprocs)
            assert g.numroc(n, nb, ip, nprocs) == ref.size
            np.testing.assert_array_equal(g.owned(n, nb, ip, nprocs), ref)
            np.testing.assert_array_equal(g.global_to_local(ref, nb, nprocs), np.arange(ref.size))
            np.testing.assert_array_equal(g.owner(ref, nb, nprocs), np.full(ref.size, ip))
            total += ref.size
        assert total == n


def test_numroc_with_another_source_process():
    for n, nb, nprocs, isrc in itertools.product([7, 20, 33], [2, 5], [2, 3, 4], [0, 1]):
        for ip in range(nprocs):
            ref = sum(1 for i in range(n) if (i // nb + isrc) % nprocs == ip)
            assert g.numroc(n, nb, ip, nprocs, isrc) == ref
            l = np.arange(ref)
            glob = g.local_to_global(l, nb, ip, nprocs, isrc)
            assert np.all(g.owner(glob, nb, nprocs, isrc) == ip) and np.all(np.diff(glob) > 0)


def test_bad_numroc_arguments_are_refused():
    for args in [(-1, 2, 0, 2), (4, 0, 0, 2), (4, 2, 2, 2), (4, 2, 0, 0)]:
        with pytest.raises(ValueError):
            g.numroc(*args)


def test_grid_choice_is_the_most_nearly_square():
    for P in range(1, 65):
        p, q = g.choose_grid(P)
        assert p * q == P and p <= q
        best = max(d for d in range(1, P + 1) if P % d == 0 and d * d <= P)
        assert p == best
    assert g.choose_grid(8) == (2, 4) and g.choose_grid(16) == (4, 4) and g.choose_grid(7) == (1, 7)
    assert g.choose_grid(8, "4x2") == (4, 2) and g.choose_grid(8, (1, 8)) == (1, 8)
    for bad in ["3x3", "2by4", (0, 8)]:
        with pytest.raises(ValueError, match="grid"):
            g.choose_grid(8, bad)
    with pytest.raises(ValueError):
        g.choose_grid(0)


def test_grid_choice_reads_the_environment(monkeypatch):
    monkeypatch.setenv("JAXMG_MP_GRID", "1x4")
    assert g.choose_grid(4) == (1, 4)
    monkeypatch.setenv("JAXMG_MP_GRID", "2x3")
    with pytest.raises(ValueError, match="2x3"):
        g.choose_grid(4)


def test_grid_positions_are_column_major():
    for p, q in [(1, 1), (2, 2), (2, 3), (3, 2), (1, 5)]:
        seen = {g.grid_position(r, p, q) for r in range(p * q)}
        assert len(seen) == p * q
        for r in range(p * q):
            row, col = g.grid_position(r, p, q)
            assert r == row + col * p
    with pytest.raises(ValueError):
        g.grid_position(6, 2, 3)


def _ragged_starts(m, nprocs, rng):
    cuts = np.sort(rng.integers(0, m + 1, size=nprocs - 1))
    return np.concatenate([[0], cuts, [m]])


CASES = [  # (M, N, mb, nb, p, q)
    (8, 8, 2, 2, 1, 1), (8, 8, 2, 2, 2, 1), (8, 8, 2, 2, 1, 2), (12, 12, 2, 3, 2, 2),
    (13, 13, 2, 2, 2, 2), (17, 11, 3, 4, 2, 3), (30, 30, 4, 4, 3, 2), (64, 64, 8, 8, 2, 4),
    (7, 9, 16, 16, 2, 2), (25, 25, 1, 1, 4, 2), (40, 24, 5, 3, 1, 4),
]


@pytest.mark.parametrize("m,n,mb,nb,p,q", CASES)
@pytest.mark.parametrize("ragged", [False, True])
def test_exchange_matches_the_definition(m, n, mb, nb, p, q, ragged):
    P = p * q
    rng = np.random.default_rng(m * 100 + n + P)
    if ragged:
        starts = _ragged_starts(m, P, rng)
    elif m % P == 0:
        starts = g.even_row_starts(m, P)
    else:
        pytest.skip("rows do not split evenly")
    lay = g.Layout(m, n, mb, nb, p, q)
    a = rng.standard_normal((m, n))
    shards = [a[starts[r]:starts[r + 1]] for r in range(P)]
    local = g.to_block_cyclic(shards, lay, starts)
    moved_ref = np.zeros(P, dtype=np.int64)
    for r in range(P):
        row, col = r % p, r // p
        rows, cols = _ref_owned(m, mb, row, p), _ref_owned(n, nb, col, q)
        assert lay.local_shape(r) == (rows.size, cols.size)
        assert lay.lld(r) == max(1, rows.size)
        np.testing.assert_array_equal(local[r], a[np.ix_(rows, cols)])
    for i in range(m):  # element by element: who holds it, who needs it
        src = int(np.searchsorted(starts, i, side="right") - 1)
        for j in range(n):
            dst = (i // mb) % p + ((j // nb) % q) * p
            moved_ref[src] += src != dst
    np.testing.assert_array_equal(g.moved_elements(g.exchange(lay, starts), P), moved_ref)
    back = g.from_block_cyclic(local, lay, starts)
    for r in range(P):
        np.testing.assert_array_equal(back[r], shards[r])


def test_exchange_refuses_row_boundaries_that_do_not_cover_the_matrix():
    lay = g.Layout(8, 8, 2, 2, 2, 1)
    for starts in ([0, 4], [0, 4, 7], [1, 4, 8], [0, 6, 4, 8][:3]):
        with pytest.raises(ValueError, match="row boundaries"):
            g.exchange(lay, starts)
    with pytest.raises(ValueError, match="evenly"):
        g.even_row_starts(9, 2)
    with pytest.raises(ValueError):
        g.Layout(8, 8, 0, 2, 2, 1)


def test_moved_bytes_are_all_but_a_share_of_each_shard():
    """N x N over P ranks, each shard a whole number of p row blocks and N of q column
    blocks: each rank keeps exactly 1/P of its shard and sends (1 - 1/P) N² / P elements."""
    for p, q, n, nb in [(2, 2, 64, 4), (2, 4, 128, 8), (1, 3, 48, 4), (3, 3, 108, 4)]:
        P = p * q
        lay = g.Layout(n, n, nb, nb, p, q)
        moved = g.moved_elements(g.exchange(lay, g.even_row_starts(n, P)), P)
        np.testing.assert_array_equal(moved, np.full(P, (n * n // P) * (P - 1) // P))


# ---- the exchange in JAX, on virtual CPU devices -------------------------------------------


@pytest.mark.parametrize("m,n,mb,nb,p,q", [
    (8, 8, 2, 2, 1, 1), (8, 8, 2, 2, 2, 1), (8, 6, 2, 2, 1, 2), (12, 12, 2, 3, 2, 2),
    (16, 13, 3, 2, 2, 2), (24, 24, 4, 4, 1, 4), (20, 9, 2, 4, 2, 2), (12, 30, 16, 4, 3, 1),
])
@pytest.mark.parametrize("dtype", [np.float32, np.complex128])
def test_rows_to_grid_and_back_in_jax(m, n, mb, nb, p, q, dtype):
    nprocs = p * q
    need_devices(nprocs)
    mesh = Mesh(np.array(jax.devices()[:nprocs]), ("x",))
    lay = g.Layout(m, n, mb, nb, p, q)
    starts = g.even_row_starts(m, nprocs)
    tb = g.tables(lay, starts)
    rng = np.random.default_rng(m + n)
    a = rng.standard_normal((m, n)).astype(dtype)
    if np.iscomplexobj(a):
        a = a + 1j * rng.standard_normal((m, n))
    arr = jax.device_put(a, NamedSharding(mesh, P("x", None)))
    fwd = _spmd.shard_map(lambda x: g.rows_to_grid(x, tb, "x"), mesh, (P("x", None),),
                          P("x", None))
    local = np.asarray(jax.jit(fwd)(arr)).reshape(nprocs, tb.mloc, tb.nloc)
    for r in range(nprocs):
        rows, cols = lay.rows(r), lay.cols(r)
        want = np.zeros((tb.mloc, tb.nloc), a.dtype)
        want[:rows.size, :cols.size] = a[np.ix_(rows, cols)]
        np.testing.assert_array_equal(local[r], want)
    back = _spmd.shard_map(lambda y: g.grid_to_rows(y, tb, "x", m // nprocs, n), mesh,
                           (P("x", None),), P("x", None))
    y = jax.device_put(local.reshape(nprocs * tb.mloc, tb.nloc), NamedSharding(mesh, P("x", None)))
    np.testing.assert_array_equal(np.asarray(jax.jit(back)(y)), a)


def test_rows_to_grid_over_two_mesh_axes():
    need_devices(4)
    mesh = Mesh(np.array(jax.devices()[:4]).reshape(2, 2), ("a", "b"))
    lay = g.Layout(16, 16, 2, 2, 2, 2)
    tb = g.tables(lay, g.even_row_starts(16, 4))
    a = np.arange(256.0).reshape(16, 16)
    arr = jax.device_put(a, NamedSharding(mesh, P(("a", "b"), None)))
    fwd = _spmd.shard_map(lambda x: g.rows_to_grid(x, tb, ("a", "b")), mesh,
                          (P(("a", "b"), None),), P(("a", "b"), None))
    local = np.asarray(jax.jit(fwd)(arr)).reshape(4, tb.mloc, tb.nloc)
    for r in range(4):
        np.testing.assert_array_equal(local[r], a[np.ix_(lay.rows(r), lay.cols(r))])


def test_padding_of_the_all_to_all():
    """Shards of whole row blocks per grid row and whole column blocks: no padding, each
    rank sends exactly its shard (its own piece included)."""
    lay = g.Layout(64, 64, 4, 4, 2, 2)
    tb = g.tables(lay, g.even_row_starts(64, 4))
    assert tb.padded_elements == 64 * 64 // 4
