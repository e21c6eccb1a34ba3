"""The engines (``jaxmg._engines``): the distributed backend (``lapack`` on CPU devices,
``engine="mg"``), ``one_device`` and ``gather`` give the same results and the same LAPACK
info, including on failure; the auto rule and the registry's refusals."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

import jaxmg
from jaxmg import _api, _config, _engines, _plan, _rules
from jaxmg._engines import cusolvermp, one_device
from jaxmg._geometry import Geometry

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


def _fresh_programs():
    """Clears the compiled programs (a rule constant such as POTRS_UPCAST is read when a
    program is traced)."""
    for cached in (_engines.program, _rules.potrs, _rules.potri, _rules.syevd, _api._entry):
        cached.cache_clear()


@pytest.mark.parametrize("bad_row", [5, 45])
@pytest.mark.parametrize("idx,engine", [([0, 1, 2, 3], "one_device"), ([1, 0], "one_device"),
                                        ([0, 1, 2, 3], "gather"), ([1, 0], "gather")])
def test_single_engine_failure_reports_exact_info(mesh_of, bad_row, idx, engine):
    mesh = mesh_of(idx)
    a = _hpd(48, np.float64)
    a[bad_row, bad_row] = -10.0
    a_s = jax.device_put(a, NamedSharding(mesh, P("x", None)))
    for eng in ("mg", engine):
        x, info = jaxmg.potrs(a_s, np.ones(48), T_A=4, return_status=True, engine=eng)
        assert int(info) == bad_row + 1, eng
        assert np.isnan(np.asarray(x)).all()
    for eng in ("mg", "single"):  # one_device has no potri: "single" is gather there
        inv, info = jaxmg.potri(a_s, T_A=4, return_status=True, engine=eng)
        assert int(info) == bad_row + 1, eng
        assert np.isnan(np.asarray(inv)).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex64, np.complex128])
@pytest.mark.parametrize("idx", [[0], [1, 0], [2, 0, 1], [0, 1, 2, 3]])
@pytest.mark.parametrize("n_per,k", [(1, None), (5, 3), (24, 1)])
def test_single_potrs_whole_matches_numpy_and_gather(mesh_of, dtype, idx, n_per, k):
    """``one_device`` (position 0 copies only what a lower Cholesky reads from its peers, then
    factors and solves; JAXMG_OP_POTRS_WHOLE) against NumPy with a scaled residual, and
    against ``gather`` (all-gather + XLA); every device gets the same x."""
    mesh = mesh_of(idx)
    n = n_per * len(idx)
    a = _hpd(n, dtype, seed=n)
    rng = np.random.default_rng(n)
    b = rng.standard_normal((n,) if k is None else (n, k)).astype(dtype)
    a_s = jax.device_put(a, NamedSharding(mesh, P("x", None)))
    outs = {}
    for whole, engine in ((True, "one_device"), (False, "gather")):
        x, info = jaxmg.potrs(a_s, b, return_status=True, engine=engine)
        assert int(info) == 0
        shards = [np.asarray(s.data) for s in x.addressable_shards]
        assert all(np.array_equal(shards[0], s) for s in shards[1:])
        outs[whole] = np.asarray(x)
    x = outs[True]
    assert x.shape == b.shape
    eps = np.finfo(dtype).eps
    res = np.abs(a @ x - b).max() / (n * eps * np.abs(a).sum(1).max() * np.abs(x).max())
    assert res < 30, res
    assert np.abs(x - outs[False]).max() <= _tol(dtype) * np.abs(outs[False]).max()


def test_single_potrs_is_one_call_without_all_gather(mesh_of):
    """The compiled one_device potrs moves the matrix only inside the jaxmg call."""
    mesh = mesh_of([0, 1, 2])
    a = jax.device_put(_hpd(12, np.float64), NamedSharding(mesh, P("x", None)))
    b = jax.device_put(np.ones((12, 1)), NamedSharding(mesh, P()))
    plan, *_ = _plan.plan("potrs", a, None, None, None, True, "single")
    assert plan.engine == "one_device"
    hlo = _engines.program(plan.engine, "potrs", plan.place, plan.geo).lower(
        a, b).compile().as_text()
    assert hlo.count("jaxmg_potrs_whole") >= 1
    assert "all-gather" not in hlo and "jaxmg_potrs\"" not in hlo


@pytest.mark.parametrize("idx", [[0], [1, 0], [0, 1, 2, 3]])
def test_single_potrs_float32_in_float64(mesh_of, idx, monkeypatch, request):
    """Where POTRS_UPCAST applies (GPUs, 8192 <= N <= 16384; here forced on CPU devices)
    one_device solves a float32 problem in float64 and rounds x once: x is float32 and
    its forward error is at float32 rounding even for an ill-conditioned matrix, where the
    float32 solve (below the threshold, same matrix) is off by far more."""

    mesh = mesh_of(idx)
    n = 16 * len(idx)
    rng = np.random.default_rng(n)
    q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    a = ((q * np.logspace(0, -6, n)) @ q.T).astype(np.float32)  # cond ~ 1e6
    a = (a + a.T) / 2
    b = rng.standard_normal((n, 2)).astype(np.float32)
    exact = np.linalg.solve(a.astype(np.float64), b.astype(np.float64))
    a_s = jax.device_put(a, NamedSharding(mesh, P("x", None)))
    request.addfinalizer(_fresh_programs)
    monkeypatch.setattr(one_device, "UPCAST_PLATFORMS", ("gpu", "cpu"))
    errs = {}
    for min_n in (16, n + 1):
        monkeypatch.setattr(one_device, "POTRS_UPCAST", {"float32": ("float64", min_n, 10**6)})
        _fresh_programs()
        x, info = jaxmg.potrs(a_s, b, return_status=True, engine="one_device")
        assert int(info) == 0 and x.dtype == np.float32
        errs[min_n] = np.abs(np.asarray(x, np.float64) - exact).max() / np.abs(exact).max()
    assert errs[16] < 1e-6, errs  # rounding of x to float32
    assert errs[n + 1] > 1e-4, errs  # float32 arithmetic with cond ~ 1e6
    plan, *_ = _plan.plan("potrs", a_s, None, None, None, True, "one_device")
    monkeypatch.setattr(one_device, "POTRS_UPCAST", {"float32": ("float64", 16, 10**6)})
    _fresh_programs()
    hlo = _engines.program(plan.engine, "potrs", plan.place, plan.geo).lower(
        a_s, jnp.asarray(b)).as_text()
    assert "jaxmg_potrs_whole" in hlo and "f64" in hlo  # the call's operands are float64


def test_potrs_compute_dtype_rules(monkeypatch):
    """float32 only, GPUs only, in the measured range of N, never with float64 disabled."""
    assert one_device.potrs_compute_dtype("gpu", 8192, np.float32) == np.float64
    assert one_device.potrs_compute_dtype("gpu", 16384, np.float32) == np.float64
    assert one_device.potrs_compute_dtype("gpu", 8191, np.float32) == np.float32
    assert one_device.potrs_compute_dtype("gpu", 16385, np.float32) == np.float32
    assert one_device.potrs_compute_dtype("cpu", 8192, np.float32) == np.float32
    for dt in (np.float64, np.complex64, np.complex128):
        assert one_device.potrs_compute_dtype("gpu", 8192, dt) == dt
    jax.config.update("jax_enable_x64", False)
    try:
        assert one_device.potrs_compute_dtype("gpu", 8192, np.float32) == np.float32
    finally:
        jax.config.update("jax_enable_x64", True)


def _herm(n, dtype, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, n))
    if np.iscomplexobj(dtype(0)):
        x = x + 1j * rng.standard_normal((n, n))
    return ((x + x.conj().T) / 2).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex64, np.complex128])
@pytest.mark.parametrize("idx", [[0], [1, 0], [2, 0, 1], [0, 1, 2, 3]])
@pytest.mark.parametrize("n_per", [1, 5, 24])
def test_single_syevd_whole_matches_numpy_and_gather(mesh_of, dtype, idx, n_per):
    """``one_device``'s syevd (position 0 gathers what a lower eigensolver reads, solves
    alone, every device copies w, info and its rows of V; JAXMG_OP_SYEVD_WHOLE and
    _N_WHOLE) against NumPy with scaled residuals, and against ``gather`` (XLA's eigh)."""
    mesh = mesh_of(idx)
    n = n_per * len(idx)
    a = _herm(n, dtype, seed=n)
    a_s = jax.device_put(a, NamedSharding(mesh, P("x", None)))
    outs = {}
    for whole, engine in ((True, "one_device"), (False, "gather")):
        w, v, info = jaxmg.syevd(a_s, return_status=True, engine=engine)
        w_only, info_n = jaxmg.syevd(a_s, return_eigenvectors=False, return_status=True,
                                     engine=engine)
        assert int(info) == int(info_n) == 0
        assert v.sharding.spec == P("x", None) and v.shape == (n, n)
        shards = [np.asarray(s.data) for s in w.addressable_shards]
        assert all(np.array_equal(shards[0], s) for s in shards[1:])
        outs[whole] = [np.asarray(t) for t in (w, v, w_only)]
    w, v, w_only = outs[True]
    eps = np.finfo(dtype).eps
    a64 = a.astype(np.complex128)
    scale = n * eps * max(np.linalg.norm(a64, 2), np.finfo(np.float64).tiny)
    w_ref = np.linalg.eigvalsh(a64)
    assert np.abs(w - w_ref).max() / scale < 30
    assert np.abs(w_only - w_ref).max() / scale < 30
    v64 = v.astype(np.complex128)
    assert np.abs(a64 @ v64 - v64 * w).max() / scale < 30
    assert np.abs(v64.conj().T @ v64 - np.eye(n)).max() / (n * eps) < 30
    assert np.abs(w - outs[False][0]).max() / scale < 30


def test_single_syevd_is_one_call_without_all_gather(mesh_of):
    """The compiled one_device syevd moves the matrix only inside the jaxmg call."""
    mesh = mesh_of([0, 1, 2])
    a = jax.device_put(_herm(12, np.float64), NamedSharding(mesh, P("x", None)))
    plan, *_ = _plan.plan("syevd", a, None, None, None, True, "one_device")
    for vectors, target in ((True, "jaxmg_syevd_whole"), (False, "jaxmg_syevd_n_whole")):
        hlo = _engines.program("one_device", "syevd", plan.place, plan.geo,
                               vectors=vectors).lower(a).compile().as_text()
        assert hlo.count(target) >= 1
        assert "all-gather" not in hlo and "all-to-all" not in hlo


@pytest.mark.parametrize("idx", [[0, 1, 2, 3], [1, 0]])
def test_single_syevd_failure_matches_mg(mesh_of, idx):
    """A matrix LAPACK's eigensolver cannot reduce (all +inf): the one-call body reports the
    solver's info, as the distributed backend does, and NaN in w and V."""
    mesh = mesh_of(idx)
    a_s = jax.device_put(np.full((16, 16), np.inf), NamedSharding(mesh, P("x", None)))
    infos = {}
    for eng in ("mg", "single"):
        w, v, info = jaxmg.syevd(a_s, return_status=True, engine=eng)
        assert int(info) > 0, eng
        assert np.isnan(np.asarray(w)).all() and np.isnan(np.asarray(v)).all(), eng
        infos[eng] = int(info)
        w, info = jaxmg.syevd(a_s, return_eigenvectors=False, return_status=True, engine=eng)
        assert int(info) == infos[eng] and np.isnan(np.asarray(w)).all(), eng
    assert infos["mg"] == infos["single"]


@pytest.mark.parametrize("dtype,single_n,mg_n", [(np.float64, 16384, 20480),
                                                  (np.float32, 12288, 16384),
                                                  (np.complex128, 6144, 8192),
                                                  (np.complex64, 8192, 12288)])
def test_auto_potrs_crossover_on_gpus(mesh_of, dtype, single_n, mg_n):
    """On GPUs ``auto`` runs potrs through one_device below the crossover measured for the
    dtype on 2 H200 (the last N where it won) and through cuSOLVERMg from it on (the first N
    where cuSOLVERMg won); the other ops stay on a single-device engine while the matrix
    fits (potri on gather: one_device has none)."""
    import types

    mesh = mesh_of([0, 1])
    gpu = types.SimpleNamespace(platform="gpu", ndev=2, mesh=mesh, device=mesh.devices.flat[0])
    assert _engines.choose("auto", "potrs", gpu, single_n, dtype) == "one_device"
    assert _engines.choose("auto", "potrs", gpu, mg_n, dtype) == "cusolvermg"
    assert _engines.choose("auto", "syevd", gpu, mg_n, dtype) == "one_device"
    assert _engines.choose("auto", "potri", gpu, mg_n, dtype) == "gather"
    one = types.SimpleNamespace(platform="gpu", ndev=1, mesh=mesh_of([0]),
                                device=mesh.devices.flat[0])
    assert _engines.choose("auto", "potrs", one, mg_n, dtype) == "one_device"
    huge = int((_engines._device_bytes(mesh.devices.flat[0]) / np.dtype(dtype).itemsize) ** 0.5)
    assert _engines.choose("auto", "syevd", one, huge, dtype) == "cusolvermg"


def test_engine_choice_and_bad_name(mesh_of):
    mesh = mesh_of([0, 1])
    a = jax.device_put(_hpd(16, np.float64), NamedSharding(mesh, P("x", None)))
    with pytest.raises(ValueError, match="engine must be one of"):
        jaxmg.potrs(a, np.ones(16), engine="fast")
    with pytest.raises(ValueError, match="engine must be one of"):
        jaxmg.potrs(a, np.ones(16), engine="split")
    place = jaxmg._mesh.resolve(a, None, None, "potrs")
    assert _engines.choose("auto", "potrs", place, 16, np.float64) == "lapack"  # distributed
    assert _engines.choose("mg", "potrs", place, 16, np.float64) == "lapack"
    assert _engines.choose("single", "potrs", place, 16, np.float64) == "one_device"
    assert _engines.choose("single", "potri", place, 16, np.float64) == "gather"


def test_engine_refusals_name_the_reason(mesh_of):
    """An engine that cannot run a call says why, before anything runs."""
    mesh = mesh_of([0, 1])
    a = jax.device_put(_hpd(16, np.float64), NamedSharding(mesh, P("x", None)))
    with pytest.raises(ValueError, match="'cusolvermg' runs on gpu devices, the mesh has cpu"):
        jaxmg.potrs(a, np.ones(16), engine="cusolvermg")
    with pytest.raises(ValueError, match="'one_device' does not implement potri"):
        jaxmg.potri(a, engine="one_device")
    place = jaxmg._mesh.resolve(a, None, None, "potrs")
    one = _engines.ENGINES["one_device"]
    assert "spans several processes" in one.refuses("potrs", place, False)
    assert one.refuses("potrs", place, True) is None
    import types

    gpus17 = types.SimpleNamespace(platform="gpu", ndev=17, mesh=mesh)
    for name in ("cusolvermg", "one_device"):  # cuSOLVERMg's and whole.c's 16 GPUs
        assert "at most 16 gpu devices" in _engines.ENGINES[name].refuses("potrs", gpus17, True)
    assert _engines.ENGINES["gather"].refuses("potrs", gpus17, True) is None


def test_every_engine_implements_what_it_declares(mesh_of):
    """Each registered engine runs every op it implements on CPU devices (the GPU-only
    cusolvermg through its bodies, which run on any platform's FFI targets), against NumPy."""
    mesh = mesh_of([2, 0, 1])
    n = 24
    a = _hpd(n, np.float64, seed=5)
    b = np.arange(2 * n, dtype=np.float64).reshape(n, 2)
    a_s = jax.device_put(a, NamedSharding(mesh, P("x", None)))
    b_s = jax.device_put(b, NamedSharding(mesh, P()))
    plan, *_ = _plan.plan("potrs", a_s, 4, None, None, True, engine=None)
    place, geo = plan.place, plan.geo
    inv_ref, x_ref = np.linalg.inv(a), np.linalg.solve(a, b)
    w_ref = np.linalg.eigvalsh(a)
    for name, eng in _engines.ENGINES.items():
        if eng.prepare:  # sets up GPU communicators (tests/gpu/test_cusolvermp.py)
            continue
        for op in eng.bodies:
            prog = _engines.program(name, op, place, geo)
            if op == "potrs":
                got = prog(a_s, b_s)[0]
                np.testing.assert_allclose(np.asarray(got), x_ref, rtol=1e-10, err_msg=name)
            elif op == "potri":
                got = prog(a_s)[0]
                np.testing.assert_allclose(np.asarray(got), inv_ref, atol=1e-10, err_msg=name)
            elif op == "syevd":
                got = prog(a_s)[0]
                np.testing.assert_allclose(np.asarray(got), w_ref, atol=1e-10, err_msg=name)
            elif op == "potrf":
                f, info = prog(a_s)
                assert int(info[0]) == 0
                solve = _engines.program(name, "solve", place, geo)
                np.testing.assert_allclose(np.asarray(solve(f, b_s)), x_ref, rtol=1e-10)
                inv = _engines.program(name, "inverse", place, geo)(f)
                np.testing.assert_allclose(np.asarray(inv), inv_ref, atol=1e-10)
                ld = _engines.program(name, "logdet", place, geo)(f)
                np.testing.assert_allclose(float(ld), np.linalg.slogdet(a)[1], rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.float64, np.complex64])
@pytest.mark.parametrize("tile", [4, 5])
def test_potri_by_solves_matches(mesh_of, dtype, tile):
    """The GPU's distributed inverse (cusolvermg: factor + one solve per device), run on CPU
    devices."""
    mesh = mesh_of([3, 1, 0])
    n = 36
    a = _hpd(n, dtype)
    a_s = jax.device_put(a, NamedSharding(mesh, P("x", None)))
    plan, *_ = _plan.plan("potri", a_s, tile, None, None, True, engine=None)
    prog = _engines.program("cusolvermg", "potri", plan.place, plan.geo)
    inv, info = prog(a_s)
    assert int(info[0]) == 0 and inv.sharding.spec == P("x", None)
    x = np.asarray(inv, np.complex128)
    assert np.abs(a @ x - np.eye(n)).max() < 50 * _tol(dtype)
    a[30, 30] = -5.0
    a_s = jax.device_put(a, NamedSharding(mesh, P("x", None)))
    inv, info = prog(a_s)
    assert int(info[0]) == 31 and np.isnan(np.asarray(inv)).all()


def test_the_cusolvermp_engine_is_refused_clearly_where_it_cannot_run(mesh_of):
    mesh = mesh_of([0, 1])
    a = jax.device_put(_hpd(8, np.float64, seed=1), NamedSharding(mesh, P("x", None)))
    with pytest.raises(ValueError, match="cusolvermp.*gpu"):
        jaxmg.potrs(a, np.ones((8, 1)), T_A=4, mesh=mesh, in_specs=(P("x", None), P(None, None)),
                    engine="cusolvermp")
    why = cusolvermp.available()
    assert why is None or "pip install" in why


def test_engines_that_set_up_from_the_mesh_refuse_the_users_shard_map():
    geo = Geometry(8, 2, 4)
    with pytest.raises(ValueError, match="cannot run inside your own shard_map"):
        _engines.body("cusolvermp", "potrs", geo, ("x",), (), "gpu")
