"""The engine choice: the distributed backend ("mg") and the gather-and-solve engine
("single") give the same results and the same LAPACK info, including on failure.
``test_pair_matches_gather`` checks the pipelined two-device factorization
(``_potrs.potrs_pair``, off by default) against NumPy and the gather body, for every dtype,
leading-block sizes and block counts; the failure test runs it too."""

import jax
import jax.numpy as jnp
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


def _fresh_programs(op):
    """Clears the compiled programs of op's module (a switch like USE_WHOLE is read when a
    program is traced)."""
    import importlib

    from jaxmg import _core

    mod = importlib.import_module(f"jaxmg._{op}")
    for cached in (mod._program, mod._differentiable, _core.entry):
        cached.cache_clear()


def _fresh_potrs_programs():
    _fresh_programs("potrs")


@pytest.mark.parametrize("bad_row", [5, 45])
@pytest.mark.parametrize("idx,body", [([0, 1, 2, 3], "whole"), ([1, 0], "whole"),
                                      ([0, 1, 2, 3], "gather"), ([1, 0], "pair")])
def test_single_engine_failure_reports_exact_info(mesh_of, bad_row, idx, body, monkeypatch,
                                                  request):
    from jaxmg import _potrs

    if body != "whole":  # the single engine's potrs through another body (fresh programs)
        monkeypatch.setattr(_potrs, "USE_PAIR", body == "pair")
        monkeypatch.setattr(_potrs, "USE_WHOLE", False)
        _fresh_potrs_programs()
        request.addfinalizer(_fresh_potrs_programs)
    mesh = mesh_of(idx)
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


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex64, np.complex128])
@pytest.mark.parametrize("idx", [[0], [1, 0], [2, 0, 1], [0, 1, 2, 3]])
@pytest.mark.parametrize("n_per,k", [(1, None), (5, 3), (24, 1)])
def test_single_potrs_whole_matches_numpy_and_gather(mesh_of, dtype, idx, n_per, k, monkeypatch,
                                                     request):
    """The single engine's one-call body (position 0 copies only what a lower Cholesky reads
    from its peers, then factors and solves; JAXMG_OP_POTRS_WHOLE) against NumPy with a
    scaled residual, and against the all-gather + XLA body; every device gets the same x."""
    from jaxmg import _potrs

    mesh = mesh_of(idx)
    n = n_per * len(idx)
    a = _hpd(n, dtype, seed=n)
    rng = np.random.default_rng(n)
    b = rng.standard_normal((n,) if k is None else (n, k)).astype(dtype)
    a_s = jax.device_put(a, NamedSharding(mesh, P("x", None)))
    request.addfinalizer(_fresh_potrs_programs)
    outs = {}
    for whole in (True, False):
        monkeypatch.setattr(_potrs, "USE_WHOLE", whole)
        _fresh_potrs_programs()
        x, info = jaxmg.potrs(a_s, b, return_status=True, engine="single")
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
    """The compiled single-engine potrs moves the matrix only inside the jaxmg call."""
    from jaxmg import _core, _potrs

    mesh = mesh_of([0, 1, 2])
    a = jax.device_put(_hpd(12, np.float64), NamedSharding(mesh, P("x", None)))
    b = jax.device_put(np.ones((12, 1)), NamedSharding(mesh, P()))
    _, place, geo = _core.plan(a, None, None, None, True, "potrs")
    hlo = _potrs._program(place, geo, False, _core.get_timeout(), "single").lower(
        a, b).compile().as_text()
    assert hlo.count("jaxmg_potrs_whole") >= 1
    assert "all-gather" not in hlo and "jaxmg_potrs\"" not in hlo


@pytest.mark.parametrize("idx", [[0], [1, 0], [0, 1, 2, 3]])
def test_single_potrs_float32_in_float64(mesh_of, idx, monkeypatch, request):
    """Where POTRS_UPCAST applies (GPUs, 8192 <= N <= 16384; here forced on CPU devices)
    the single engine solves a float32 problem in float64 and rounds x once: x is float32 and
    its forward error is at float32 rounding even for an ill-conditioned matrix, where the
    float32 solve (below the threshold, same matrix) is off by far more."""
    from jaxmg import _core, _potrs

    mesh = mesh_of(idx)
    n = 16 * len(idx)
    rng = np.random.default_rng(n)
    q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    a = ((q * np.logspace(0, -6, n)) @ q.T).astype(np.float32)  # cond ~ 1e6
    a = (a + a.T) / 2
    b = rng.standard_normal((n, 2)).astype(np.float32)
    exact = np.linalg.solve(a.astype(np.float64), b.astype(np.float64))
    a_s = jax.device_put(a, NamedSharding(mesh, P("x", None)))
    request.addfinalizer(_fresh_potrs_programs)
    monkeypatch.setattr(_engine, "UPCAST_PLATFORMS", ("gpu", "cpu"))
    errs = {}
    for min_n in (16, n + 1):
        monkeypatch.setattr(_engine, "POTRS_UPCAST", {"float32": ("float64", min_n, 10**6)})
        _fresh_potrs_programs()
        x, info = jaxmg.potrs(a_s, b, return_status=True, engine="single")
        assert int(info) == 0 and x.dtype == np.float32
        errs[min_n] = np.abs(np.asarray(x, np.float64) - exact).max() / np.abs(exact).max()
    assert errs[16] < 1e-6, errs  # rounding of x to float32
    assert errs[n + 1] > 1e-4, errs  # float32 arithmetic with cond ~ 1e6
    _, place, geo = _core.plan(a_s, None, None, None, True, "potrs")
    monkeypatch.setattr(_engine, "POTRS_UPCAST", {"float32": ("float64", 16, 10**6)})
    _fresh_potrs_programs()
    hlo = _potrs._program(place, geo, False, _core.get_timeout(), "single").lower(
        a_s, jnp.asarray(b)).as_text()
    assert "jaxmg_potrs_whole" in hlo and "f64" in hlo  # the call's operands are float64


def test_potrs_compute_dtype_rules(monkeypatch):
    """float32 only, GPUs only, in the measured range of N, never with float64 disabled."""
    assert _engine.potrs_compute_dtype("gpu", 8192, np.float32) == np.float64
    assert _engine.potrs_compute_dtype("gpu", 16384, np.float32) == np.float64
    assert _engine.potrs_compute_dtype("gpu", 8191, np.float32) == np.float32
    assert _engine.potrs_compute_dtype("gpu", 16385, np.float32) == np.float32
    assert _engine.potrs_compute_dtype("cpu", 8192, np.float32) == np.float32
    for dt in (np.float64, np.complex64, np.complex128):
        assert _engine.potrs_compute_dtype("gpu", 8192, dt) == dt
    jax.config.update("jax_enable_x64", False)
    try:
        assert _engine.potrs_compute_dtype("gpu", 8192, np.float32) == np.float32
    finally:
        jax.config.update("jax_enable_x64", True)


def _fresh_syevd_programs():
    _fresh_programs("syevd")


def _herm(n, dtype, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, n))
    if np.iscomplexobj(dtype(0)):
        x = x + 1j * rng.standard_normal((n, n))
    return ((x + x.conj().T) / 2).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex64, np.complex128])
@pytest.mark.parametrize("idx", [[0], [1, 0], [2, 0, 1], [0, 1, 2, 3]])
@pytest.mark.parametrize("n_per", [1, 5, 24])
def test_single_syevd_whole_matches_numpy_and_gather(mesh_of, dtype, idx, n_per, monkeypatch,
                                                     request):
    """The single engine's one-call syevd (position 0 gathers what a lower eigensolver reads,
    solves alone, every device copies w, info and its rows of V; JAXMG_OP_SYEVD_WHOLE and
    _N_WHOLE) against NumPy with scaled residuals, and against the all-gather + XLA body."""
    from jaxmg import _syevd

    mesh = mesh_of(idx)
    n = n_per * len(idx)
    a = _herm(n, dtype, seed=n)
    a_s = jax.device_put(a, NamedSharding(mesh, P("x", None)))
    request.addfinalizer(_fresh_syevd_programs)
    outs = {}
    for whole in (True, False):
        monkeypatch.setattr(_syevd, "USE_WHOLE", whole)
        _fresh_syevd_programs()
        w, v, info = jaxmg.syevd(a_s, return_status=True, engine="single")
        w_only, info_n = jaxmg.syevd(a_s, return_eigenvectors=False, return_status=True,
                                     engine="single")
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
    """The compiled single-engine syevd moves the matrix only inside the jaxmg call."""
    from jaxmg import _core, _syevd

    mesh = mesh_of([0, 1, 2])
    a = jax.device_put(_herm(12, np.float64), NamedSharding(mesh, P("x", None)))
    _, place, geo = _core.plan(a, None, None, None, True, "syevd", max_tile=_syevd.MAX_TILE)
    for vectors, target in ((True, "jaxmg_syevd_whole"), (False, "jaxmg_syevd_n_whole")):
        hlo = _syevd._program(place, geo, vectors, False, _core.get_timeout(), "single").lower(
            a).compile().as_text()
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
    """On GPUs ``auto`` runs potrs through the single engine below the crossover measured for
    the dtype on 2 H200 (the last N where it won) and through cuSOLVERMg from it on (the first
    N where cuSOLVERMg won); the other ops stay on the single engine while the matrix fits."""
    import types

    mesh = mesh_of([0, 1])
    gpu = types.SimpleNamespace(platform="gpu", ndev=2, mesh=mesh)
    assert _engine.choose("auto", "potrs", gpu, single_n, dtype) == "single"
    assert _engine.choose("auto", "potrs", gpu, mg_n, dtype) == "mg"
    assert _engine.choose("auto", "syevd", gpu, mg_n, dtype) == "single"
    one = types.SimpleNamespace(platform="gpu", ndev=1, mesh=mesh_of([0]))
    assert _engine.choose("auto", "potrs", one, mg_n, dtype) == "single"


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


# ---- the split engine: two-device Cholesky, no gather (python/jaxmg/_split.py) -----------

ALL_DTYPES = [np.float32, np.float64, np.complex64, np.complex128]


def _rows(a, mesh, spec=P("x", None)):
    return jax.device_put(a, NamedSharding(mesh, spec))


@pytest.mark.parametrize("dtype", ALL_DTYPES)
@pytest.mark.parametrize("n", [48, 46, 2])  # h = 24 (4 chunks divide it), 23 (they do not), 1
@pytest.mark.parametrize("k", [None, 3])  # a vector, and 3 right-hand sides
def test_split_engine_solves(mesh_of, num, dtype, n, k):
    mesh = mesh_of([3, 1])  # scrambled order, a partial mesh of the 4 devices
    a = num.hpd(n, dtype, seed=n)
    b = num.rhs((n,) if k is None else (n, k), dtype, seed=n + 1)
    a_s = _rows(a, mesh)
    x, info = jaxmg.potrs(a_s, b, return_status=True, engine="split")
    assert int(info) == 0
    num.assert_solves(a, x, b, dtype)
    num.assert_on_every_device(x, list(mesh.devices.flat))
    x_mg = np.asarray(jaxmg.potrs(a_s, b, engine="mg"), np.complex128)
    x_ref = np.linalg.solve(a.astype(np.complex128), b.astype(np.complex128))
    scale = np.abs(x_ref).max()
    assert np.abs(np.asarray(x, np.complex128) - x_ref).max() < _tol(dtype) * scale
    assert np.abs(np.asarray(x, np.complex128) - x_mg).max() < _tol(dtype) * scale


@pytest.mark.parametrize("chunks,blocks", [(1, 1), (3, 2), (8, 3), (100, 100)])
@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
def test_split_engine_chunk_counts(mesh_of, num, chunks, blocks, dtype):
    """Any number of chunks of U and block rows of S (more than the 11 rows clamp to 11)."""
    import functools

    from jaxmg import _core, _split

    mesh = mesh_of([0, 1])
    n = 22
    a, b = num.hpd(n, dtype, seed=3), num.rhs((n, 2), dtype, seed=4)
    a_s = _rows(a, mesh)
    _, place, geo = _core.plan(a_s, None, None, None, True, "potrs")
    body = functools.partial(_split.potrs_split, geo=geo, row_axes=place.row_axes,
                             group_axes=place.group_axes, chunks=chunks, blocks=blocks)
    fn = jax.jit(_core.shard_map(body, mesh, in_specs=(place.spec, P()), out_specs=(P(), P())))
    x, info = fn(a_s, jax.device_put(b, NamedSharding(mesh, P())))
    assert int(info[0]) == 0
    num.assert_solves(a, x, b, dtype)


def test_split_engine_reads_only_the_upper_triangle(mesh_of, num):
    """A21 and the strict lower triangles of A11 and A22 are never read (NaN there is fine)."""
    mesh = mesh_of([0, 1])
    n, h = 40, 20
    a = num.hpd(n, np.complex128, seed=8)
    b = num.rhs((n, 2), np.complex128, seed=9)
    junk = a.copy()
    junk[np.tril_indices(n, -1)] = np.nan
    x = jaxmg.potrs(_rows(junk, mesh), b, engine="split")
    num.assert_solves(a, x, b, np.complex128)
    assert h == n // 2


@pytest.mark.parametrize("dtype", [np.float64, np.complex64])
@pytest.mark.parametrize("bad_row", [3, 17, 20, 38])  # pivots in the first and second halves
def test_split_engine_failure_reports_exact_info(mesh_of, num, dtype, bad_row):
    mesh = mesh_of([0, 1])
    a = num.hpd(40, dtype, seed=2)
    a[bad_row, bad_row] = -50.0
    a_s = _rows(a, mesh)
    want = num.lapack_info(a)
    assert want > 0
    for eng in ("mg", "split"):
        x, info = jaxmg.potrs(a_s, np.ones(40, dtype), T_A=4, return_status=True, engine=eng)
        assert int(info) == want, eng
        assert np.isnan(np.asarray(x)).all(), eng


def test_split_engine_under_jit_vmap_and_donate(mesh_of, num):
    mesh = mesh_of([2, 0])
    n = 30
    a = num.hpd(n, np.float64, seed=11)
    a_s = _rows(a, mesh)
    bs = num.rhs((4, n), np.float64, seed=12)
    specs = (P("x", None), P(None, None))
    got = jax.jit(lambda m, r: jaxmg.potrs(m, r, mesh=mesh, in_specs=specs, engine="split"))(
        a_s, bs[0])
    num.assert_solves(a, got, bs[0], np.float64)
    batched = jax.vmap(lambda r: jaxmg.potrs(a_s, r, engine="split"))(bs)
    want = np.linalg.solve(a, bs.T).T
    np.testing.assert_allclose(np.asarray(batched), want, rtol=1e-10, atol=1e-12)
    donated = _rows(a, mesh)
    x = jaxmg.potrs(donated, bs[1], engine="split", donate=True)
    num.assert_solves(a, x, bs[1], np.float64)


@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
def test_split_engine_grad_matches_mg(mesh_of, num, dtype):
    mesh = mesh_of([0, 1])
    n = 24
    a, b = num.hpd(n, dtype, seed=13), num.rhs((n, 2), dtype, seed=14)
    w = num.rhs((n, 2), dtype, seed=15)

    def loss(eng):
        return lambda m, r: jnp.sum(jnp.abs(jaxmg.potrs(m, r, engine=eng) * w) ** 2)

    a_s = _rows(a, mesh)
    got = jax.grad(loss("split"), argnums=(0, 1))(a_s, b)
    want = jax.grad(loss("mg"), argnums=(0, 1))(a_s, b)
    for g, m in zip(got, want):
        np.testing.assert_allclose(np.asarray(g), np.asarray(m), rtol=1e-9, atol=1e-11)
    dense = jax.grad(lambda m, r: jnp.sum(jnp.abs(jnp.linalg.solve(m, r) * w) ** 2),
                     argnums=1)(jnp.asarray(a), jnp.asarray(b))
    np.testing.assert_allclose(np.asarray(got[1]), np.asarray(dense), rtol=1e-9, atol=1e-11)


def test_split_engine_with_replica_groups(mesh_of, num):
    """Rows over one axis of a 2 x 2 mesh: each replica group solves on its own 2 devices."""
    mesh = mesh_of([0, 1, 2, 3], names=("S", "T"), shape=(2, 2))
    n = 20
    a, b = num.hpd(n, np.complex128, seed=16), num.rhs((n, 2), np.complex128, seed=17)
    x, info = jaxmg.potrs(_rows(a, mesh, P("T", None)), b, return_status=True, engine="split")
    assert int(info) == 0
    num.assert_solves(a, x, b, np.complex128)


def test_split_engine_rejections(mesh_of, num):
    a = num.hpd(24, np.float64)
    two = _rows(a, mesh_of([0, 1]))
    with pytest.raises(ValueError, match="only implemented for potrs"):
        jaxmg.potri(two, engine="split")
    with pytest.raises(ValueError, match="only implemented for potrs"):
        jaxmg.syevd(two, engine="split")
    for ids in ([0, 1, 2, 3], [0, 1, 2], [1]):
        with pytest.raises(ValueError, match="exactly 2 devices"):
            jaxmg.potrs(_rows(a, mesh_of(ids)), np.ones(24), engine="split")
    place = jaxmg._mesh.resolve(two, None, None, "potrs")
    assert _engine.choose("auto", "potrs", place, 24, np.float64) != "split"


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex64, np.complex128])
@pytest.mark.parametrize("blocks,first", [(1, None), (2, None), (3, 1), (2, 7), (3, 1000)])
@pytest.mark.parametrize("n", [10, 96])
def test_pair_matches_gather(mesh_of, dtype, blocks, first, n):
    """potrs_pair (own rows first, only the other diagonal block moves) against NumPy, with
    a scaled residual, and against the gather body of the single engine."""
    import functools

    from jaxmg import _core, _potrs
    from jaxmg._geometry import Geometry

    mesh = mesh_of([1, 0])
    a = _hpd(n, dtype, seed=n + blocks)
    rng = np.random.default_rng(blocks)
    b = rng.standard_normal((n, 3)).astype(dtype)
    geo = Geometry(n, 2, n // 2)
    outs = []
    for body in (_potrs.potrs_pair, _potrs.potrs_single):
        kw = {"blocks": blocks, "first": first} if body is _potrs.potrs_pair else {}
        fn = functools.partial(body, geo=geo, row_axes=("x",), group_axes=(), **kw)
        prog = jax.jit(_core.shard_map(fn, mesh, in_specs=(P("x", None), P()),
                                       out_specs=(P(), P())))
        x, info = prog(jax.device_put(a, NamedSharding(mesh, P("x", None))), b)
        assert int(info[0]) == 0
        outs.append(np.asarray(x))
    x = outs[0]
    eps = np.finfo(dtype).eps
    res = np.abs(a @ x - b).max() / (n * eps * np.abs(a).sum(1).max() * np.abs(x).max())
    assert res < 30, res
    assert np.abs(x - outs[1]).max() <= _tol(dtype) * np.abs(outs[1]).max()
