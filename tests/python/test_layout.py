"""Property tests: the C layout planner (``jaxmg_layout_*`` in libjaxmg.so, through ctypes)
agrees with the Python geometry (``jaxmg._geometry.Geometry``) that builds the gathers of the
right-hand side and the solution, and its block moves realise the permutation in place."""

from __future__ import annotations

import ctypes

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxmg import _ffi
from jaxmg._geometry import Geometry


class Layout(ctypes.Structure):
    _fields_ = [("n", ctypes.c_int64), ("nloc", ctypes.c_int64), ("ndev", ctypes.c_int64),
                ("tile", ctypes.c_int64)]


@pytest.fixture(scope="module")
def lib():
    lib = _ffi.core()
    i64, p_lay = ctypes.c_int64, ctypes.POINTER(Layout)
    p_i64 = ctypes.POINTER(ctypes.c_int64)
    sig = {
        "jaxmg_layout_init": (ctypes.c_int, [p_lay, i64, i64, i64]),
        "jaxmg_layout_src": (i64, [p_lay, i64]),
        "jaxmg_layout_dst": (i64, [p_lay, i64]),
        "jaxmg_layout_src_block": (i64, [p_lay, i64]),
        "jaxmg_layout_is_identity": (ctypes.c_int, [p_lay]),
        "jaxmg_layout_moves": (i64, [p_lay, ctypes.c_int, p_i64]),
        "jaxmg_layout_apply_moves_host": (
            None, [p_lay, p_i64, i64, ctypes.c_void_p, i64, i64, ctypes.c_size_t, ctypes.c_void_p]),
        "jaxmg_pad_nloc": (i64, [i64, i64]),
        "jaxmg_pad_index": (i64, [i64, i64, i64]),
        "jaxmg_unpad_index": (i64, [i64, i64, i64]),
    }
    for name, (res, args) in sig.items():
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = res, args
    return lib


def make_layout(lib, nloc, ndev, tile):
    lay = Layout()
    assert lib.jaxmg_layout_init(ctypes.byref(lay), nloc, ndev, tile) == 0
    assert (lay.n, lay.nloc, lay.ndev, lay.tile) == (nloc * ndev, nloc, ndev, tile)
    return lay


@st.composite
def geometries(draw, dividing=True):
    """(nloc, ndev, tile): ndev 1..8, nloc 1..64, tile dividing nloc (or any tile)."""
    ndev = draw(st.integers(1, 8))
    nloc = draw(st.integers(1, 64))
    if dividing:
        tile = draw(st.sampled_from([t for t in range(1, nloc + 1) if nloc % t == 0]))
    else:
        tile = draw(st.integers(1, nloc + 8))
    return nloc, ndev, tile


SETTINGS = settings(max_examples=40, deadline=None, derandomize=True, database=None)


@SETTINGS
@given(geometries())
def test_src_dst_agree_with_python(lib, geo):
    nloc, ndev, tile = geo
    lay = make_layout(lib, nloc, ndev, tile)
    py = Geometry(nloc * ndev, ndev, tile)
    n = py.n_pad
    assert n == lay.n and not py.padded
    src = np.array([lib.jaxmg_layout_src(lay, g) for g in range(n)])
    dst = np.array([lib.jaxmg_layout_dst(lay, j) for j in range(n)])
    np.testing.assert_array_equal(src, py.src)
    np.testing.assert_array_equal(dst, py.dst)
    # A bijection, and dst is its inverse.
    np.testing.assert_array_equal(np.sort(src), np.arange(n))
    np.testing.assert_array_equal(src[dst], np.arange(n))
    np.testing.assert_array_equal(dst[src], np.arange(n))
    identity = bool(np.array_equal(src, np.arange(n)))
    assert bool(lib.jaxmg_layout_is_identity(lay)) == identity == py.identity_layout
    # The block permutation is the element permutation at block granularity.
    blocks = np.array([lib.jaxmg_layout_src_block(lay, t) for t in range(n // tile)])
    np.testing.assert_array_equal(src[::tile], blocks * tile)


@SETTINGS
@given(geometries(), st.integers(1, 3), st.sampled_from([4, 8, 16]))
def test_moves_round_trip(lib, geo, ncols, esz):
    nloc, ndev, tile = geo
    lay = make_layout(lib, nloc, ndev, tile)
    py = Geometry(nloc * ndev, ndev, tile)
    n, nblocks = lay.n, lay.n // tile
    ld = n + 3  # a gap between columns that must stay untouched
    # Elements of esz bytes: rows of esz // 4 int32 words, each word unique.
    words = esz // 4
    a = np.arange(ncols * ld * words, dtype=np.int32).reshape(ncols, ld, words)
    orig = a.copy()
    stage = np.zeros(tile * ncols * words, dtype=np.int32)

    def apply(inverse):
        moves = np.full(4 * nblocks, -99, dtype=np.int64)
        p_moves = moves.ctypes.data_as(ctypes.POINTER(ctypes.c_int64))
        nm = lib.jaxmg_layout_moves(lay, inverse, p_moves)
        assert 0 <= 2 * nm <= 3 * nblocks  # within the documented 4K capacity
        pairs = moves[: 2 * nm]
        assert np.all((pairs >= -1) & (pairs < nblocks))
        assert (nm == 0) == py.identity_layout
        lib.jaxmg_layout_apply_moves_host(lay, p_moves, nm, a.ctypes.data, ld, ncols, esz,
                                          stage.ctypes.data)
        return nm

    nf = apply(0)
    np.testing.assert_array_equal(a[:, :n], orig[:, py.src])  # new[g] = old[src(g)]
    np.testing.assert_array_equal(a[:, n:], orig[:, n:])
    ni = apply(1)
    assert ni == nf
    np.testing.assert_array_equal(a, orig)  # forward then inverse is the identity
    apply(1)
    np.testing.assert_array_equal(a[:, :n], orig[:, py.dst])  # new[j] = old[dst(j)]


@SETTINGS
@given(geometries(dividing=False))
def test_padding_maps_agree_with_python(lib, geo):
    nloc, ndev, tile = geo
    py = Geometry(nloc * ndev, ndev, tile)
    npad = lib.jaxmg_pad_nloc(nloc, tile)
    assert npad == py.nloc_pad
    assert npad % tile == 0 and nloc <= npad < nloc + tile
    assert py.padded == (npad != nloc)
    pad = np.array([lib.jaxmg_pad_index(j, nloc, npad) for j in range(py.n)])
    np.testing.assert_array_equal(pad, py.pad_index)
    unpad = np.array([lib.jaxmg_unpad_index(p, nloc, npad) for p in range(py.n_pad)])
    is_pad = (np.arange(py.n_pad) % npad) >= nloc
    np.testing.assert_array_equal(unpad[is_pad], -1)
    np.testing.assert_array_equal(unpad[pad], np.arange(py.n))  # round trip
    assert np.count_nonzero(~is_pad) == py.n
    # The padded problem is a valid layout whose maps are the Python geometry's.
    lay = make_layout(lib, npad, ndev, tile)
    src = np.array([lib.jaxmg_layout_src(lay, g) for g in range(py.n_pad)])
    np.testing.assert_array_equal(src, py.src)


def test_init_rejects_bad_geometry(lib):
    lay = Layout()
    for nloc, ndev, tile in [(4, 0, 2), (4, 2, 0), (0, 2, 1), (6, 2, 4), (4, 2, 8), (-4, 2, 2)]:
        assert lib.jaxmg_layout_init(ctypes.byref(lay), nloc, ndev, tile) == 1  # JAXMG_EINVAL
