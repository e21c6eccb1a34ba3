"""The engine choice: the distributed backend ("mg") and the gather-and-solve engine
("single") give the same results and the same LAPACK info, including on failure."""

import jax
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

import jaxmg
from jaxmg import _engine

DTYPES = [np.float64, np.complex128, np.float32]


def _hpd(n, dtype, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, n))
    if np.iscomplexobj(dtype(0)):
        x = x + 1j * rng.standard_normal((n, n))
    return (x @ x.conj().T / n + np.eye(n)).astype(dtype)


def _tol(dtype):
    return 200 * np.finfo(dtype).eps * 48


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("idx", [[0, 1, 2, 3], [2, 0]])
def test_single_engine_matches_mg(mesh_of, dtype, idx):
    mesh = mesh_of(idx)
    n = 24 * len(idx)
    a = _hpd(n, dtype)
    b = np.arange(n * 2, dtype=np.float64).reshape(n, 2).astype(dtype)
    a_s = jax.device_put(a, NamedSharding(mesh, P("x", None)))
    out = {}
    for eng in ("mg", "single"):
        x, s1 = jaxmg.potrs(a_s, b, T_A=8, return_status=True, engine=eng)
        inv, s2 = jaxmg.potri(a_s, T_A=8, return_status=True, engine=eng)
        w, v, s3 = jaxmg.syevd(a_s, T_A=8, return_status=True, engine=eng)
        assert int(s1) == int(s2) == int(s3) == 0
        assert inv.sharding.spec == P("x", None) and v.sharding.spec == P("x", None)
        out[eng] = [np.asarray(t, np.complex128) for t in (x, inv, w)]
        vv = np.asarray(v, np.complex128)
        res = np.abs(a @ vv - vv * np.asarray(w)).max() / np.abs(a).max()
        assert res < _tol(dtype), (eng, res)
    for m, s in zip(out["mg"], out["single"]):
        assert np.abs(m - s).max() <= _tol(dtype) * max(1.0, np.abs(m).max())
    x_ref = np.linalg.solve(a.astype(np.complex128), b)
    assert np.abs(out["single"][0] - x_ref).max() < _tol(dtype) * np.abs(x_ref).max()


@pytest.mark.parametrize("bad_row", [5, 45])
def test_single_engine_failure_reports_exact_info(mesh_of, bad_row):
    mesh = mesh_of([0, 1, 2, 3])
    a = _hpd(48, np.float64)
    a[bad_row, bad_row] = -10.0
    a_s = jax.device_put(a, NamedSharding(mesh, P("x", None)))
    for eng in ("mg", "single"):
        x, info = jaxmg.potrs(a_s, np.ones(48), T_A=4, return_status=True, engine=eng)
        assert int(info) == bad_row + 1, eng
        assert np.isnan(np.asarray(x)).all()
        inv, info = jaxmg.potri(a_s, T_A=4, return_status=True, engine=eng)
        assert int(info) == bad_row + 1, eng
        assert np.isnan(np.asarray(inv)).all()


def test_engine_choice_and_bad_name(mesh_of):
    mesh = mesh_of([0, 1])
    a = jax.device_put(_hpd(16, np.float64), NamedSharding(mesh, P("x", None)))
    with pytest.raises(ValueError, match="engine must be one of"):
        jaxmg.potrs(a, np.ones(16), engine="fast")
    place = jaxmg._mesh.resolve(a, None, None, "potrs")
    assert _engine.choose("auto", "potrs", place, 16, np.float64) == "mg"  # CPU: distributed
    assert _engine.choose("single", "potrs", place, 16, np.float64) == "single"


@pytest.mark.parametrize("dtype", [np.float64, np.complex64])
@pytest.mark.parametrize("tile", [4, 5])
def test_potri_by_solves_matches(mesh_of, dtype, tile):
    """The GPU's distributed inverse (factor + one solve per device), run on CPU devices."""
    from jaxmg import _core, _potri

    mesh = mesh_of([3, 1, 0])
    n = 36
    a = _hpd(n, dtype)
    a_s = jax.device_put(a, NamedSharding(mesh, P("x", None)))
    _, place, geo = _core.plan(a_s, tile, None, None, True, "potri")
    inv, info = _potri._program(place, geo, False, _core.get_timeout(), "solves")(a_s)
    assert int(info[0]) == 0 and inv.sharding.spec == P("x", None)
    x = np.asarray(inv, np.complex128)
    assert np.abs(a @ x - np.eye(n)).max() < 50 * _tol(dtype)
    a[30, 30] = -5.0
    a_s = jax.device_put(a, NamedSharding(mesh, P("x", None)))
    inv, info = _potri._program(place, geo, False, _core.get_timeout(), "solves")(a_s)
    assert int(info[0]) == 31 and np.isnan(np.asarray(inv)).all()
