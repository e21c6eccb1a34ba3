"""potri: the full Hermitian inverse of a row-sharded HPD matrix, on virtual CPU devices."""

import _util  # noqa: F401  (devices and x64 before JAX starts)
from _util import DTYPES, THRESH, hpd, inv_ratio, mesh_1d, put_rows, rand


import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from jaxmg import potri, potri_shardmap_ctx, potri_symmetrize

# (devices, N, T_A): one device, exact tiles, several tiles per device, padding (T_A not
# dividing the shard), odd device count, default tile.
GEOMETRIES = [(1, 7, None), (2, 12, 3), (3, 15, 2), (4, 16, 3), (4, 24, 2), (4, 8, None)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ndev,n,tile", GEOMETRIES)
def test_potri_matches_inverse(dtype, ndev, n, tile):
    rng = np.random.default_rng(n * 10 + ndev)
    a = hpd(n, dtype, rng)
    mesh = mesh_1d(ndev)
    x, info = potri(put_rows(a, mesh), T_A=tile, mesh=mesh, in_specs=(P("x", None),),
                    return_status=True)
    assert int(info) == 0
    assert x.shape == (n, n) and x.dtype == dtype
    assert x.sharding.spec == P("x", None)
    xn = np.asarray(x)
    ratio = inv_ratio(a, xn, dtype)
    assert ratio < THRESH, ratio
    # The full inverse, Hermitian, not a triangle.
    scale = np.abs(xn).max()
    assert np.abs(xn - xn.conj().T).max() <= 10 * n * np.finfo(dtype).eps * scale


def test_potri_inferred_mesh_and_spec():
    mesh = mesh_1d(4)
    a = hpd(16, np.float64, np.random.default_rng(1))
    x = potri(put_rows(a, mesh))
    assert inv_ratio(a, x, np.float64) < THRESH


@pytest.mark.parametrize("order", [[3, 2, 1, 0], [2, 0], [1, 3, 0]])
def test_potri_reversed_and_partial_meshes(order):
    mesh = mesh_1d(len(order), order=order)
    n = 6 * len(order)
    a = hpd(n, np.complex128, np.random.default_rng(len(order)))
    x = potri(put_rows(a, mesh), T_A=4)  # 4 does not divide 6: padded
    assert inv_ratio(a, x, np.complex128) < THRESH


def test_potri_2d_mesh_replica_groups():
    devs = np.array(_util.need_devices(4)).reshape(2, 2)
    mesh = Mesh(devs, ("S", "T"))
    a = hpd(12, np.float64, np.random.default_rng(7))
    x, info = potri(jax.device_put(a, NamedSharding(mesh, P("T", None))), T_A=2, mesh=mesh,
                    in_specs=P("T", None), return_status=True)
    assert int(info) == 0 and inv_ratio(a, x, np.float64) < THRESH
    x2 = potri(jax.device_put(a, NamedSharding(mesh, P(("S", "T"), None))), T_A=2)
    assert x2.sharding.spec == P(("S", "T"), None)
    assert inv_ratio(a, x2, np.float64) < THRESH


@pytest.mark.parametrize("bad_row", [0, 5, 13])
@pytest.mark.parametrize("tile", [2, 3])
def test_potri_not_positive_definite(bad_row, tile):
    # Diagonal with one negative entry: the pivot of that row fails, whatever the order.
    n = 16
    a = np.diag(np.arange(1.0, n + 1))
    a[bad_row, bad_row] = -1.0
    mesh = mesh_1d(4)
    x, info = potri(put_rows(a, mesh), T_A=tile, return_status=True)
    assert int(info) == bad_row + 1
    assert np.isnan(np.asarray(x)).all()


def test_potri_status_is_optional_and_jit_matches_eager():
    mesh = mesh_1d(4)
    a = put_rows(hpd(12, np.float32, np.random.default_rng(3)), mesh)
    eager = potri(a, T_A=3)
    assert isinstance(eager, jax.Array)
    jitted = jax.jit(lambda m: potri(m, T_A=3, mesh=mesh, in_specs=P("x", None)))(a)
    np.testing.assert_array_equal(np.asarray(eager), np.asarray(jitted))


@pytest.mark.parametrize("explicit", [False, True])
def test_potri_donate_consumes_input(explicit):
    mesh = explicit_mesh(4) if explicit else mesh_1d(4)
    a_np = hpd(16, np.float64, np.random.default_rng(4))
    a = put_rows(a_np, mesh)
    x = potri(a, T_A=4, donate=True)
    assert a.is_deleted()
    assert inv_ratio(a_np, x, np.float64) < THRESH
    b = put_rows(a_np, mesh)
    potri(b, T_A=4)
    assert not b.is_deleted()


def test_potri_argument_errors():
    mesh = mesh_1d(4)
    a = put_rows(np.eye(12), mesh)
    with pytest.raises(ValueError, match="does not divide"):
        potri(a, T_A=2, pad=False)  # shard of 3 rows
    with pytest.raises(ValueError, match="square"):
        potri(jnp.ones((4, 8)))
    with pytest.raises(TypeError, match="float32, float64"):
        potri(put_rows(np.eye(8, dtype=np.int32), mesh))
    with pytest.raises(ValueError, match="sharded by rows"):
        potri(a, mesh=mesh, in_specs=P(None, "x"))


@pytest.mark.parametrize("dtype", [np.float64, np.complex64])
@pytest.mark.parametrize("tile", [None, 2])
def test_potri_shardmap_ctx(dtype, tile):
    mesh = mesh_1d(4)
    n = 12
    a = hpd(n, dtype, np.random.default_rng(5))

    def body(a_loc):
        inv_loc, status = potri_shardmap_ctx(a_loc * 2, T_A=tile)  # user's own pre-processing
        return inv_loc, status

    f = jax.shard_map(body, mesh=mesh, in_specs=P("x", None),
                      out_specs=(P("x", None), P()), check_vma=False)
    x, status = jax.jit(f)(put_rows(a, mesh))
    assert status.shape == (1,) and int(status[0]) == 0
    assert inv_ratio(2 * a, x, dtype) < THRESH


def test_potri_shardmap_ctx_reports_failure():
    mesh = mesh_1d(4)
    a = np.diag(np.arange(1.0, 9.0))
    a[6, 6] = 0.0
    f = jax.shard_map(lambda m: potri_shardmap_ctx(m, T_A=1), mesh=mesh, in_specs=P("x", None),
                      out_specs=(P("x", None), P()), check_vma=False)
    x, status = f(put_rows(a, mesh))
    assert int(status[0]) == 7 and np.isnan(np.asarray(x)).all()


def test_potri_shardmap_ctx_outside_shard_map():
    with pytest.raises(ValueError, match="inside jax.shard_map"):
        potri_shardmap_ctx(jnp.eye(4))


def test_potri_symmetrize():
    rng = np.random.default_rng(6)
    h = hpd(6, np.complex128, rng)
    junk = np.triu(h) + np.tril(rng.standard_normal((6, 6)), -1)  # lower triangle garbage
    out = np.asarray(potri_symmetrize(jnp.asarray(junk)))
    np.testing.assert_allclose(out, h, rtol=1e-14, atol=1e-14)
    # On jaxmg's (already full) inverse it changes nothing, and keeps the input alive.
    mesh = mesh_1d(2)
    x = potri(put_rows(h, mesh))
    y = potri_symmetrize(x)
    assert not x.is_deleted()
    np.testing.assert_allclose(np.asarray(y), np.asarray(x), rtol=0, atol=1e-13)
    with pytest.raises(ValueError, match="square"):
        potri_symmetrize(jnp.ones((2, 3)))


def explicit_mesh(k):
    axis_type = getattr(jax.sharding, "AxisType", None)
    if axis_type is None:
        pytest.skip("this JAX has no explicit mesh axes")
    return jax.make_mesh((k,), ("x",), axis_types=(axis_type.Explicit,),
                         devices=_util.need_devices(k))


def test_potri_unsharded_input_on_explicit_mesh():
    # jax.make_mesh gives Explicit axes in recent JAX; shard_map then refuses inputs whose
    # sharding differs from its in_specs unless jaxmg reshards them first.
    mesh = explicit_mesh(4)
    a = hpd(12, np.float64, np.random.default_rng(21))
    for arg in (a, jnp.asarray(a)):
        x = potri(arg, T_A=3, mesh=mesh, in_specs=(P("x", None),))
        assert inv_ratio(a, x, np.float64) < THRESH
    x = jax.jit(lambda m: potri(m, T_A=2, mesh=mesh, in_specs=P("x", None)))(jnp.asarray(a))
    assert inv_ratio(a, x, np.float64) < THRESH
    cols = jax.device_put(a, NamedSharding(mesh, P(None, "x")))  # sharded the wrong way
    x = potri(cols, T_A=3, mesh=mesh, in_specs=P("x", None))
    assert inv_ratio(a, x, np.float64) < THRESH


def test_ops_move_an_array_from_another_device_onto_the_mesh():
    """An array committed to a device outside the given mesh is moved there (as potrs does)."""
    import jax
    from jax.sharding import Mesh, PartitionSpec as P

    import jaxmg
    from jaxmg import linalg

    devs = jax.devices()
    mesh = Mesh(np.array(devs[:2]), ("x",))
    rng = np.random.default_rng(4)
    x = rng.standard_normal((16, 16))
    a = x @ x.T + 16 * np.eye(16)
    a_other = jax.device_put(a, devs[3])
    spec = (P("x", None),)
    inv = jaxmg.potri(a_other, mesh=mesh, in_specs=spec)
    np.testing.assert_allclose(np.asarray(inv) @ a, np.eye(16), atol=1e-12)
    w, v = jaxmg.syevd(a_other, mesh=mesh, in_specs=spec)
    np.testing.assert_allclose(np.asarray(w), np.linalg.eigvalsh(a), rtol=1e-12)
    f = linalg.cho_factor(a_other, mesh=mesh, in_specs=spec)
    np.testing.assert_allclose(np.asarray(linalg.cho_solve(f, np.ones(16))),
                               np.linalg.solve(a, np.ones(16)), rtol=1e-10)


@pytest.mark.parametrize("dtype", DTYPES)
def test_potri_symmetrize_on_explicit_mesh(dtype):
    # jax.make_mesh's default (Explicit) axes: the sharding is part of the type, and the
    # helper must keep it, eagerly and inside jit, on potri's output and on a raw triangle.
    mesh = explicit_mesh(2)
    rng = np.random.default_rng(22)
    h = hpd(8, dtype, rng)
    junk = (np.triu(h) + np.tril(rand(rng, (8, 8), dtype), -1)).astype(dtype)
    sharding = NamedSharding(mesh, P("x", None))
    arr = jax.device_put(junk, sharding)
    with jax.set_mesh(mesh):
        for f in (potri_symmetrize, jax.jit(potri_symmetrize)):
            out = f(arr)
            assert out.sharding.is_equivalent_to(sharding, 2)
            np.testing.assert_allclose(np.asarray(out), h, rtol=0, atol=0)
    x = potri(jax.device_put(h, sharding))
    y = potri_symmetrize(x)
    tol = 100 * np.finfo(dtype).eps * np.abs(np.asarray(x)).max()
    np.testing.assert_allclose(np.asarray(y), np.asarray(x), rtol=0, atol=tol)
