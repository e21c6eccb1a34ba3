"""syevd: eigenvalues (ascending, replicated) and eigenvectors (columns, row-sharded) of a
row-sharded Hermitian matrix, on virtual CPU devices."""

import _util  # noqa: F401  (devices and x64 before JAX starts)
from _util import DTYPES, THRESH, eig_ratios, herm, mesh_1d, put_rows, with_spectrum

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from jaxmg import _plan, syevd, syevd_shardmap_ctx

GEOMETRIES = [(1, 7, None), (2, 12, 3), (3, 15, 2), (4, 16, 3), (4, 24, 2), (4, 8, None)]


def check_eig(a, w, v, dtype):
    r_w, r_res, r_orth = eig_ratios(a, w, v, dtype)
    assert r_w < THRESH, ("eigenvalues", r_w)
    if v is not None:
        assert r_res < THRESH, ("residual", r_res)
        assert r_orth < THRESH, ("orthogonality", r_orth)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ndev,n,tile", GEOMETRIES)
def test_syevd_vectors(dtype, ndev, n, tile):
    rng = np.random.default_rng(n * 10 + ndev)
    a = herm(n, dtype, rng)
    mesh = mesh_1d(ndev)
    w, v, info = syevd(put_rows(a, mesh), T_A=tile, mesh=mesh, in_specs=(P("x", None),),
                       return_status=True)
    assert int(info) == 0
    assert w.shape == (n,) and w.dtype == np.finfo(dtype).dtype
    assert v.shape == (n, n) and v.dtype == dtype
    assert v.sharding.spec == P("x", None)
    assert np.all(np.diff(np.asarray(w)) >= 0)
    check_eig(a, w, v, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_syevd_values_only(dtype):
    mesh = mesh_1d(4)
    a = herm(20, dtype, np.random.default_rng(2))
    w = syevd(put_rows(a, mesh), T_A=2, return_eigenvectors=False)  # padded: 5 -> 6 rows
    assert isinstance(w, jax.Array) and w.shape == (20,)
    check_eig(a, w, None, dtype)
    w2, info = syevd(put_rows(a, mesh), T_A=5, return_eigenvectors=False, return_status=True)
    assert int(info) == 0
    check_eig(a, w2, None, dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.complex64])
def test_syevd_padding_keeps_eigenvalue_one(dtype):
    # Identity padding would add eigenvalue 1, equal to one of A's: the padded solver must
    # neither report it nor mix the padding into A's eigenvectors for 1.
    rng = np.random.default_rng(8)
    spectrum = np.array([-3.0, -1.0, 0.0, 0.5, 1.0, 1.0, 1.0, 1.5, 2.0, 4.0, 7.0, 9.0])
    a = with_spectrum(spectrum, dtype, rng)
    mesh = mesh_1d(4)
    w, v = syevd(put_rows(a, mesh), T_A=2)  # shard of 3 rows padded to 4
    np.testing.assert_allclose(np.asarray(w), spectrum, atol=50 * 12 * np.finfo(dtype).eps * 9)
    check_eig(a, w, v, dtype)


def test_syevd_padding_extreme_scales():
    mesh = mesh_1d(4)
    rng = np.random.default_rng(9)
    for scale in (1e-12, 1e12):
        a = with_spectrum(scale * np.linspace(-1, 2, 12), np.float64, rng)
        w, v = syevd(put_rows(a, mesh), T_A=2)
        check_eig(a, w, v, np.float64)  # relative to ||A||: no constant added by the padding
    z = np.zeros((12, 12))
    w, v = syevd(put_rows(z, mesh), T_A=2)
    assert np.all(np.asarray(w) == 0)
    check_eig(z, w, v, np.float64)


def test_syevd_positive_definite_and_negative_definite_padded():
    mesh = mesh_1d(3)
    rng = np.random.default_rng(10)
    for spectrum in (np.linspace(1, 10, 15), -np.linspace(1, 10, 15)):
        a = with_spectrum(spectrum, np.complex128, rng)
        w, v = syevd(put_rows(a, mesh), T_A=4)  # 5 rows per shard padded to 8
        check_eig(a, w, v, np.complex128)


def test_syevd_reversed_mesh_and_2d_mesh():
    rng = np.random.default_rng(11)
    a = herm(16, np.float64, rng)
    mesh = mesh_1d(4, order=[3, 1, 2, 0])
    w, v = syevd(put_rows(a, mesh), T_A=3)
    check_eig(a, w, v, np.float64)
    devs = np.array(_util.need_devices(4)).reshape(2, 2)
    mesh2 = Mesh(devs, ("S", "T"))
    for spec in (P("T", None), P(("S", "T"), None)):
        w, v, info = syevd(jax.device_put(a, NamedSharding(mesh2, spec)), T_A=3, mesh=mesh2,
                           in_specs=spec, return_status=True)
        assert int(info) == 0 and v.sharding.spec == spec
        check_eig(a, w, v, np.float64)


def test_syevd_jit_matches_eager():
    mesh = mesh_1d(4)
    a = put_rows(herm(12, np.float64, np.random.default_rng(12)), mesh)
    w1, v1 = syevd(a, T_A=3)
    w2, v2 = jax.jit(lambda m: syevd(m, T_A=3, mesh=mesh, in_specs=P("x", None)))(a)
    np.testing.assert_array_equal(np.asarray(w1), np.asarray(w2))
    np.testing.assert_array_equal(np.asarray(v1), np.asarray(v2))


def test_syevd_tile_cap():
    # cuSOLVERMg's syevd takes tiles up to 1024: larger T_A values are clamped, not refused.
    mesh = mesh_1d(1)
    spec = jax.ShapeDtypeStruct((4096, 4096), jnp.float32, sharding=NamedSharding(mesh, P("x", None)))
    geo = _plan.plan("syevd", spec, 4096, None, None, True)[0].geo
    assert geo.tile == 1024 and not geo.padded
    geo = _plan.plan("potri", spec, 4096, None, None, True)[0].geo
    assert geo.tile == 4096
    # End to end, a T_A larger than everything still works.
    a = herm(8, np.float64, np.random.default_rng(13))
    w, v = syevd(put_rows(a, mesh_1d(2)), T_A=4096)
    check_eig(a, w, v, np.float64)


def test_syevd_argument_errors():
    mesh = mesh_1d(4)
    with pytest.raises(ValueError, match="does not divide"):
        syevd(put_rows(np.eye(12), mesh), T_A=2, pad=False)
    with pytest.raises(ValueError, match="square"):
        syevd(jnp.ones((4, 8)))
    with pytest.raises(ValueError, match="T_A must be a positive integer"):
        syevd(put_rows(np.eye(8), mesh), T_A=0)


@pytest.mark.parametrize("dtype", [np.float32, np.complex128])
@pytest.mark.parametrize("tile", [None, 2])
def test_syevd_shardmap_ctx(dtype, tile):
    mesh = mesh_1d(4)
    a = herm(12, dtype, np.random.default_rng(14))

    def body(a_loc):
        return syevd_shardmap_ctx(a_loc, T_A=tile)

    f = jax.shard_map(body, mesh=mesh, in_specs=P("x", None),
                      out_specs=(P(), P("x", None), P()), check_vma=False)
    w, v, status = jax.jit(f)(put_rows(a, mesh))
    assert status.shape == (1,) and int(status[0]) == 0
    check_eig(a, w, v, dtype)

    g = jax.shard_map(lambda m: syevd_shardmap_ctx(m, T_A=tile, return_eigenvectors=False),
                      mesh=mesh, in_specs=P("x", None), out_specs=(P(), P()), check_vma=False)
    w2, status2 = g(put_rows(a, mesh))
    assert int(status2[0]) == 0
    check_eig(a, w2, None, dtype)


def test_syevd_shardmap_ctx_2d_mesh_axis_name():
    devs = np.array(_util.need_devices(4)).reshape(2, 2)
    mesh = Mesh(devs, ("S", "T"))
    a = herm(8, np.complex64, np.random.default_rng(15))

    f = jax.shard_map(lambda m: syevd_shardmap_ctx(m, T_A=3, axis_name="T"), mesh=mesh,
                      in_specs=P("T", None), out_specs=(P(), P("T", None), P()),
                      check_vma=False)
    w, v, status = f(jax.device_put(a, NamedSharding(mesh, P("T", None))))
    assert int(status[0]) == 0
    check_eig(a, w, v, np.complex64)
    with pytest.raises(ValueError, match="axis_name"):
        jax.shard_map(lambda m: syevd_shardmap_ctx(m), mesh=mesh, in_specs=P("T", None),
                      out_specs=(P(), P("T", None), P()), check_vma=False)(
            jax.device_put(a, NamedSharding(mesh, P("T", None))))


def test_syevd_unsharded_input_on_explicit_mesh():
    axis_type = getattr(jax.sharding, "AxisType", None)
    if axis_type is None:
        pytest.skip("this JAX has no explicit mesh axes")
    mesh = jax.make_mesh((4,), ("x",), axis_types=(axis_type.Explicit,),
                         devices=_util.need_devices(4))
    a = herm(12, np.complex128, np.random.default_rng(22))
    w, v = syevd(jnp.asarray(a), T_A=2, mesh=mesh, in_specs=P("x", None))
    check_eig(a, w, v, np.complex128)
    w, v = jax.jit(lambda m: syevd(m, mesh=mesh, in_specs=P("x", None)))(a)
    check_eig(a, w, v, np.complex128)
