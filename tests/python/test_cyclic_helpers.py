"""The seeds' layout helpers: cyclic_1d, verify_cyclic, get_cols_cyclic, padding helpers, plot."""

import _util  # noqa: F401  (devices and x64 before JAX starts)
from _util import DTYPES, hpd, mesh_1d, put_rows, rand

import functools
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

import jaxmg
from jaxmg import (
    calculate_padding,
    cyclic_1d,
    get_cols_cyclic,
    pad_rows,
    plot_block_to_cyclic,
    unpad_rows,
    verify_cyclic,
)
from jaxmg._cyclic import block_cyclic_owners


def test_calculate_padding():
    assert calculate_padding(2500, 250) == 0
    assert calculate_padding(2500, 2048) == 1596  # the tutorial's "padding added" case
    assert calculate_padding(5, 2) == 1
    assert calculate_padding(3, 5) == 2
    with pytest.raises(ValueError):
        calculate_padding(4, 0)


def test_pad_and_unpad_rows():
    a = jnp.arange(12.0).reshape(4, 3)
    p = pad_rows(a, 2)
    assert p.shape == (6, 3) and np.all(np.asarray(p[4:]) == 0)
    np.testing.assert_array_equal(np.asarray(unpad_rows(p, 2)), np.asarray(a))
    np.testing.assert_array_equal(np.asarray(unpad_rows(a, 0)), np.asarray(a))  # not empty
    np.testing.assert_array_equal(np.asarray(pad_rows(a, 0)), np.asarray(a))
    # Per shard inside shard_map, as the seeds use them.
    mesh = mesh_1d(4)
    f = jax.shard_map(functools.partial(pad_rows, padding=1), mesh=mesh, in_specs=P("x", None),
                      out_specs=P("x", None))
    out = np.asarray(f(put_rows(np.ones((8, 2)), mesh)))
    assert out.shape == (12, 2) and out.sum() == 16 and np.all(out[2::3] == 0)
    with pytest.raises(ValueError):
        unpad_rows(a, 5)


def test_get_cols_cyclic_by_hand():
    # 8 columns, 2 devices, tiles of 2: tiles go 0,1,0,1 to devices; N_batch = 4.
    assert get_cols_cyclic(8, 4, 2, 2) == [
        (0, 0, 0), (1, 1, 1), (2, 2, 4), (3, 3, 5), (4, 4, 2), (5, 5, 3), (6, 6, 6), (7, 7, 7)]
    # 8 columns over 4 devices, shard 2, tiles of 3 padded to N_batch 3.
    assert get_cols_cyclic(8, 3, 3, 4) == [
        (0, 0, 0), (1, 1, 1), (2, 3, 2), (3, 4, 3), (4, 6, 4), (5, 7, 5), (6, 9, 6), (7, 10, 7)]
    # 12 columns over 3 devices, shard 4, tiles of 3: N_batch 6 (2 rows of padding each).
    dst = [d for _, _, d in get_cols_cyclic(12, 6, 3, 3)]
    assert dst == [0, 1, 2, 6, 7, 8, 12, 13, 14, 3, 4, 5]
    src = [s for _, s, _ in get_cols_cyclic(12, 6, 3, 3)]
    assert src == [0, 1, 2, 3, 6, 7, 8, 9, 12, 13, 14, 15]


def test_get_cols_cyclic_is_a_valid_layout():
    for n, ndev, tile in [(40, 4, 3), (30, 3, 4), (16, 2, 16), (9, 3, 1)]:
        shard = n // ndev
        batch = shard + calculate_padding(shard, tile)
        cols = get_cols_cyclic(n, batch, tile, ndev)
        dst = np.array([d for _, _, d in cols])
        assert len(set(dst.tolist())) == n and dst.min() >= 0 and dst.max() < ndev * batch
        # Every tile of T_A consecutive columns lands contiguously on one device.
        for t0 in range(0, n, tile):
            block = dst[t0 : t0 + tile]
            assert np.all(np.diff(block) == 1)
            assert len({int(d) // batch for d in block}) == 1


# The original's test grid: N in ndev*[2, 3, 4, 10], T_A in [1, 2, 3, 5], all dtypes
# (a subset of the cross product, to keep CI fast).
CASES = [(8, 1), (12, 2), (16, 3), (40, 5), (40, 3), (8, 5), (12, 1), (16, 2)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,tile", CASES)
def test_cyclic_1d_verifies(dtype, n, tile):
    mesh = mesh_1d(4)
    a = rand(np.random.default_rng(n), (n, n), dtype)
    out = jax.jit(functools.partial(cyclic_1d, mesh=mesh, in_specs=(P("x", None),)),
                  static_argnums=1)(put_rows(a, mesh), T_A=tile)
    shard = n // 4
    batch = shard if tile >= shard else shard + calculate_padding(shard, tile)
    assert out.shape == (4 * batch, n) and out.dtype == dtype
    assert out.sharding.spec == P("x", None)
    verify_cyclic(a, out, T_A=tile)
    # Rows that receive nothing are zero.
    dst = [d for _, _, d in get_cols_cyclic(n, batch, min(tile, shard), 4)]
    rest = np.setdiff1d(np.arange(4 * batch), dst)
    assert np.all(np.asarray(out)[rest] == 0)


def test_cyclic_1d_identity_layouts_and_meshes():
    a = np.arange(64.0).reshape(16, 4)
    mesh = mesh_1d(4)
    # One tile per device (or a bigger tile): the layout is the row sharding itself.
    for tile in (4, 7, 100):
        np.testing.assert_array_equal(np.asarray(cyclic_1d(put_rows(a, mesh), tile, mesh, P("x", None))), a)
    # One device.
    m1 = mesh_1d(1)
    np.testing.assert_array_equal(np.asarray(cyclic_1d(put_rows(a, m1), 3, m1, P("x", None), pad=True))[:16], a)
    # Two mesh axes flattened, as in the tutorial's P(("S", "T"), None).
    mesh2 = Mesh(np.array(_util.need_devices(4)).reshape(2, 2), ("S", "T"))
    spec = P(("S", "T"), None)
    out = cyclic_1d(jax.device_put(a, NamedSharding(mesh2, spec)), 2, mesh2, (spec,))
    verify_cyclic(a, out, 2)
    # Rows over one axis only: 2 devices along "T".
    out = cyclic_1d(jax.device_put(a, NamedSharding(mesh2, P("T", None))), 3, mesh2, [P("T", None)])
    verify_cyclic(a, out, 3)  # ndev read from the result's sharding
    with pytest.raises(AssertionError):
        verify_cyclic(a, out, 3, ndev=4)


def test_verify_cyclic_detects_wrong_layouts():
    mesh = mesh_1d(4)
    a = hpd(16, np.float64, np.random.default_rng(0))
    out = cyclic_1d(put_rows(a, mesh), 2, mesh, (P("x", None),))
    verify_cyclic(a, out, 2)
    with pytest.raises(AssertionError, match="row"):
        verify_cyclic(a, put_rows(a, mesh), 2)  # not rearranged
    with pytest.raises(AssertionError):
        verify_cyclic(a, out, 1)  # another tile size
    broken = np.asarray(out).copy()
    broken[5] += 1.0
    with pytest.raises(AssertionError, match="row"):
        verify_cyclic(a, broken, 2, ndev=4)
    with pytest.raises(AssertionError, match="shape"):
        verify_cyclic(a, np.asarray(out)[:8], 3, ndev=4)


def test_cyclic_1d_argument_errors():
    mesh = mesh_1d(4)
    a = put_rows(np.eye(12), mesh)
    with pytest.raises(ValueError, match="single PartitionSpec"):
        cyclic_1d(a, 2, mesh, (P("x", None), P(None, None)))
    with pytest.raises(TypeError, match="PartitionSpec"):
        cyclic_1d(a, 2, mesh, 12345)
    for spec in (P(None, "x"), P(None, None), P("x", "x")):
        with pytest.raises(ValueError, match=r"P\(axis, None\)"):
            cyclic_1d(a, 2, mesh, (spec,))
    with pytest.raises(ValueError, match="pad=False"):
        cyclic_1d(a, 2, mesh, (P("x", None),), pad=False)
    with pytest.raises(ValueError, match="2D"):
        cyclic_1d(jnp.ones(4), 2, mesh, P("x", None))
    with pytest.raises(ValueError, match="T_A"):
        cyclic_1d(a, 0, mesh, P("x", None))


def test_block_cyclic_owners():
    before, after = block_cyclic_owners(10, 2, 2)  # shard 5, padding 1
    assert before.tolist() == [0, 0, 0, 0, 0, 2, 1, 1, 1, 1, 1, 2]
    assert after.tolist() == [0, 0, 1, 1, 0, 0, 1, 1, 0, 0, 2, 2]
    before, after = block_cyclic_owners(8, 2, 4)
    assert before.tolist() == [0, 0, 1, 1, 2, 2, 3, 3] and after.tolist() == before.tolist()


def test_plot_block_to_cyclic():
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axs = plot_block_to_cyclic(40, 3, 4, N_rows=4)
    try:
        assert len(axs) == 2
        img = axs[1].images[0].get_array()
        assert img.shape == (4, 4 * 12)
        np.testing.assert_array_equal(np.asarray(img[0]), block_cyclic_owners(40, 3, 4)[1])
    finally:
        plt.close(fig)


def test_plot_block_to_cyclic_without_matplotlib(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ImportError, match="pip install matplotlib"):
        plot_block_to_cyclic(8, 2, 2)


def test_exports():
    for name in ("potrs", "potrs_shardmap_ctx", "potri", "potri_shardmap_ctx", "potri_symmetrize",
                 "syevd", "syevd_shardmap_ctx", "cyclic_1d", "pad_rows", "unpad_rows",
                 "calculate_padding", "verify_cyclic", "get_cols_cyclic", "plot_block_to_cyclic",
                 "linalg"):
        assert hasattr(jaxmg, name) and name in jaxmg.__all__
