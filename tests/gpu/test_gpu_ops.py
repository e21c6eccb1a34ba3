"""The CUDA backend (cuSOLVERMg) through the public API, on every GPU JAX sees.

Run on 1 GPU and on 2 (``tests/gpu/run_gpu.sh`` does both): every op (potrs, potri, syevd
with and without vectors) x dtype x tile (dividing the shard, not dividing it, the default)
x N (small, 4096; 16384 for the real potrs), checked with scaled residual ratios computed in
float64/complex128 with NumPy (LAPACK's threshold 30). Large cases check sampled columns /
eigenpairs so the host work stays O(N^2). Also: a matrix that is not positive definite
(info and NaN on every device), a reversed device order, plan reuse, right-hand sides in
several cuSOLVERMg chunks, injected faults (an error on every device, then recovery), and no
leaked rendezvous sessions.

Every test here is marked ``gpu`` and skipped cleanly without GPUs (tests/gpu/conftest.py).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

import jaxmg
from jaxmg import _ffi

jax.config.update("jax_enable_x64", True)

pytestmark = pytest.mark.gpu

# Both engines run every test that goes through the public ops; tests of the cuSOLVERMg
# machinery itself (plans, faults, sessions) run with "mg" only.
MG_ONLY = {"test_repeated_calls_reuse_the_plan", "test_injected_fault_fails_everywhere_then_recovers",
           "test_no_leaked_sessions", "test_potrs_shardmap_ctx", "test_cho_factor_solve"}


@pytest.fixture(autouse=True, params=["mg", "single"])
def engine(request, monkeypatch):
    """Every public call of the test runs on ``engine="mg"`` (cusolvermg) or ``"single"``
    (one_device, or gather for potri) whatever the auto rule would pick."""
    from jaxmg import _engines

    name = request.node.originalname or request.node.name
    if request.param == "single" and name in MG_ONLY:
        pytest.skip("exercises the cuSOLVERMg engine only")
    forced, real = request.param, _engines.choose
    monkeypatch.setattr(_engines, "choose",
                        lambda engine, op, place, n, dtype: real(forced, op, place, n, dtype))
    return forced

THRESHOLD = 30.0
DTYPES = [np.float32, np.float64, np.complex64, np.complex128]
DTYPE_IDS = ["f32", "f64", "c64", "c128"]
FAULT_ALLOC, FAULT_SOLVER = 2, 3
SAMPLE = 48  # columns / eigenpairs checked on large problems


# (T_A dividing the shard, T_A not dividing it) on 1 and on 2 GPUs: 96 -> shards of 96/48
# rows, 4096 -> 4096/2048 rows.
TILES = {96: (16, 20), 4096: (256, 384)}


# ---- helpers --------------------------------------------------------------------------------


def _need(name):
    fn = getattr(jaxmg, name, None)
    if fn is None:
        pytest.skip(f"jaxmg.{name} is not in this build of the Python package")
    return fn


@pytest.fixture(scope="module")
def mesh(gpus):
    return Mesh(np.array(gpus, dtype=object), ("x",))


def _wide(x):
    x = np.asarray(x)
    return x.astype(np.complex128 if np.iscomplexobj(x) else np.float64)


@functools.lru_cache(maxsize=6)
def _hpd(n, dtype_name):
    """A random Hermitian positive definite matrix X X^H / n + I/4 (condition ~17), made on
    GPU 0 in double precision, cast to ``dtype``; returned as (device array, host float64 or
    complex128 copy of exactly the matrix the solver sees)."""
    dtype = np.dtype(dtype_name)
    dev = jax.devices("gpu")[0]
    with jax.default_device(dev):
        kr, ki = jax.random.split(jax.random.PRNGKey(n))
        x = jax.random.normal(kr, (n, n), jnp.float64)
        if np.issubdtype(dtype, np.complexfloating):
            x = x + 1j * jax.random.normal(ki, (n, n), jnp.float64)
        a = x @ jnp.conj(x).T / n + 0.25 * jnp.eye(n)
        a = ((a + jnp.conj(a).T) / 2).astype(dtype)
        a.block_until_ready()
    return a, _wide(a)


def _rhs(n, k, dtype, seed=3):
    rng = np.random.default_rng(seed)
    b = rng.standard_normal((n, k))
    if np.issubdtype(np.dtype(dtype), np.complexfloating):
        b = b + 1j * rng.standard_normal((n, k))
    return b.astype(dtype)


def _rows(a, mesh):
    return jax.device_put(a, NamedSharding(mesh, P("x", None)))


def _eps(dtype):
    return float(np.finfo(np.dtype(dtype)).eps)


def _sample(n, seed=0):
    if n <= 512:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    picks = rng.choice(n, SAMPLE - 2, replace=False)
    return np.unique(np.concatenate([[0, n - 1], picks]))


def _replicated_equal(x):
    shards = [np.asarray(s.data) for s in x.addressable_shards]
    for s in shards[1:]:
        np.testing.assert_array_equal(s, shards[0])


def _solve_ratio(a64, x, b, dtype):
    """||B - A X||_inf / (n ||A||_inf ||X||_inf eps)."""
    x64, b64 = _wide(x), _wide(b)
    n = a64.shape[0]
    num = np.linalg.norm(b64 - a64 @ x64, np.inf)
    den = n * np.linalg.norm(a64, np.inf) * np.linalg.norm(x64, np.inf) * _eps(dtype)
    return float(num / den)


def _check_potrs(a64, b, x, dtype):
    x_host = np.asarray(x)
    assert x_host.shape == b.shape and x_host.dtype == np.dtype(dtype)
    assert np.all(np.isfinite(x_host)), "solution has non-finite entries"
    r = _solve_ratio(a64, x_host, b, dtype)
    assert r < THRESHOLD, f"scaled residual ratio {r:.3g}"
    _replicated_equal(x)


def _check_inverse(a64, inv, dtype):
    x = _wide(inv)
    n = a64.shape[0]
    assert np.all(np.isfinite(x)), "inverse has non-finite entries"
    # The upper triangle is a copy of the lower one: Hermitian to the last bit but for
    # rounding in the diagonal's imaginary part.
    herm = np.max(np.abs(x - x.conj().T)) / np.max(np.abs(x))
    assert herm < 10 * _eps(dtype), f"inverse not Hermitian: {herm:.3g}"
    cols = _sample(n)
    eye = np.zeros((n, cols.size), dtype=x.dtype)
    eye[cols, np.arange(cols.size)] = 1
    xs = x[:, cols]
    num = np.linalg.norm(a64 @ xs - eye, np.inf)
    den = n * np.linalg.norm(a64, np.inf) * np.linalg.norm(xs, np.inf) * _eps(dtype)
    r = float(num / den)
    assert r < THRESHOLD, f"scaled residual ratio of A inv(A) - I: {r:.3g}"


@functools.lru_cache(maxsize=8)
def _reference_eigvalsh(n, dtype_name):
    """Eigenvalues of _hpd(n, dtype) in double precision: NumPy for small n, else one GPU's
    jnp.linalg.eigvalsh in float64/complex128 (NumPy would take minutes at n = 4096)."""
    a64 = _hpd(n, dtype_name)[1]
    if n <= 1024:
        return np.linalg.eigvalsh(a64)
    with jax.default_device(jax.devices("gpu")[0]):
        return np.asarray(jnp.linalg.eigvalsh(jnp.asarray(a64)))


def _check_eigenvalues(a64, w, dtype, ref=None):
    w = np.asarray(w)
    n = a64.shape[0]
    assert w.shape == (n,) and w.dtype == np.finfo(np.dtype(dtype)).dtype
    assert np.all(np.isfinite(w)) and np.all(np.diff(w) >= 0), "eigenvalues not ascending"
    if ref is None:
        ref = _reference_eigvalsh(n, np.dtype(dtype).name)
    r = float(np.max(np.abs(w - ref)) / (n * np.linalg.norm(a64, np.inf) * _eps(dtype)))
    assert r < THRESHOLD, f"eigenvalue error ratio {r:.3g}"


def _check_eigenpairs(a64, w, v, dtype):
    n = a64.shape[0]
    v64, w64 = _wide(v), np.asarray(w, np.float64)
    assert v64.shape == (n, n)
    assert np.all(np.isfinite(v64)), "eigenvectors have non-finite entries"
    cols = _sample(n, seed=1)
    vs = v64[:, cols]
    res = a64 @ vs - vs * w64[cols]
    r = float(np.max(np.linalg.norm(res, axis=0)) / (n * np.linalg.norm(a64, np.inf) * _eps(dtype)))
    assert r < THRESHOLD, f"eigenpair residual ratio {r:.3g}"
    orth = float(np.max(np.abs(vs.conj().T @ vs - np.eye(cols.size))) / (n * _eps(dtype)))
    assert orth < THRESHOLD, f"eigenvector orthogonality ratio {orth:.3g}"


def _cases():
    out = []
    for n in (96, 4096):
        for tid in ("divides", "pads", "default"):
            if n == 4096 and tid == "default":
                continue
            out.append((n, tid))
    return out


def _tile(n, tid):
    if tid == "default":
        return None
    t_div, t_pad = TILES[n]
    return t_div if tid == "divides" else t_pad


# ---- potrs ------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("n,tid", _cases())
def test_potrs(mesh, n, tid, dtype):
    a, a64 = _hpd(n, np.dtype(dtype).name)
    b = _rhs(n, 3, dtype)
    x, info = jaxmg.potrs(_rows(a, mesh), b, T_A=_tile(n, tid), return_status=True)
    assert int(info) == 0
    _check_potrs(a64, b, x, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_potrs_large(mesh, dtype):
    n = 16384
    a, a64 = _hpd.__wrapped__(n, np.dtype(dtype).name)  # not cached: 2 GB on the host
    b = _rhs(n, 4, dtype)
    x, info = jaxmg.potrs(_rows(a, mesh), b, T_A=1024, return_status=True)
    assert int(info) == 0
    _check_potrs(a64, b, x, dtype)


def test_potrs_float32_in_float64(mesh, engine):
    """The single engine solves float32 problems with 8192 <= N <= 16384 in float64 (faster
    there on H200s, _engines.one_device.POTRS_UPCAST): x is float32 and its forward error is float32
    rounding, where float32 arithmetic loses far more (cond 1e5 here: 1.5e-5 with LAPACK's
    spotrf/spotrs)."""
    if engine != "single":
        pytest.skip("the single engine's float32-in-float64 path")
    n = 8192
    rng = np.random.default_rng(5)
    a = np.diag(np.logspace(0, -5, n))
    for _ in range(2):  # H a H with H = I - 2 u u^T: dense, the same eigenvalues, O(n^2)
        u = rng.standard_normal(n)
        u /= np.linalg.norm(u)
        au = a @ u
        a = a - 2 * np.outer(u, au) - 2 * np.outer(au, u) + 4 * (u @ au) * np.outer(u, u)
    a = ((a + a.T) / 2).astype(np.float32)
    b = rng.standard_normal((n, 2)).astype(np.float32)
    exact = np.linalg.solve(a.astype(np.float64), b.astype(np.float64))
    x = jaxmg.potrs(_rows(a, mesh), b)
    assert x.dtype == np.float32
    err = np.abs(np.asarray(x, np.float64) - exact).max() / np.abs(exact).max()
    assert err < 1e-6, err
    _replicated_equal(x)


@pytest.mark.parametrize("nrhs", [1, 600])
def test_potrs_many_rhs_and_vector(mesh, nrhs):
    """600 right-hand sides take three cuSOLVERMg calls (256, 256, 88); a 1-D b one."""
    n = 96
    a, a64 = _hpd(n, "float64")
    b = _rhs(n, nrhs, np.float64)
    if nrhs == 1:
        b = b[:, 0]
    x = jaxmg.potrs(_rows(a, mesh), b, T_A=16)
    x_host = np.asarray(x)
    assert x_host.shape == b.shape
    r = _solve_ratio(a64, x_host.reshape(n, -1), b.reshape(n, -1), np.float64)
    assert r < THRESHOLD, r
    _replicated_equal(x)


def test_potrs_shardmap_ctx(mesh):
    n = 96
    a, a64 = _hpd(n, "float64")
    b = _rhs(n, 2, np.float64)

    def body(a_loc, b_rep):
        return jaxmg.potrs_shardmap_ctx(a_loc, b_rep, T_A=16)

    f = jax.jit(jax.shard_map(body, mesh=mesh, in_specs=(P("x", None), P(None, None)),
                              out_specs=(P(None, None), P(None)), check_vma=False))
    x, info = f(_rows(a, mesh), jax.device_put(b, NamedSharding(mesh, P(None, None))))
    assert np.all(np.asarray(info) == 0)
    assert _solve_ratio(a64, np.asarray(x), b, np.float64) < THRESHOLD


# ---- potri ------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("n,tid", _cases())
def test_potri(mesh, n, tid, dtype):
    potri = _need("potri")
    a, a64 = _hpd(n, np.dtype(dtype).name)
    inv, info = potri(_rows(a, mesh), T_A=_tile(n, tid), return_status=True)
    assert int(info) == 0
    assert inv.shape == (n, n) and inv.dtype == np.dtype(dtype)
    _check_inverse(a64, inv, dtype)
    if n <= 512:
        ref = np.linalg.inv(a64)
        err = np.max(np.abs(_wide(inv) - ref)) / np.max(np.abs(ref))
        assert err < 1e3 * _eps(dtype), err


# ---- syevd ------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("n,tid", _cases())
def test_syevd(mesh, n, tid, dtype):
    syevd = _need("syevd")
    a, a64 = _hpd(n, np.dtype(dtype).name)
    w, v, info = syevd(_rows(a, mesh), T_A=_tile(n, tid), return_status=True)
    assert int(info) == 0
    _check_eigenvalues(a64, w, dtype)
    _check_eigenpairs(a64, w, v, dtype)
    _replicated_equal(w)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("n,tid", [(96, "divides"), (96, "pads"), (96, "default"),
                                   (4096, "pads")])
def test_syevd_values_only(mesh, n, tid, dtype):
    syevd = _need("syevd")
    a, a64 = _hpd(n, np.dtype(dtype).name)
    w, info = syevd(_rows(a, mesh), T_A=_tile(n, tid), return_eigenvectors=False,
                    return_status=True)
    assert int(info) == 0
    _check_eigenvalues(a64, w, dtype)
    _replicated_equal(w)


@pytest.mark.parametrize("deterministic", ["1", None], ids=["det", "nondet"])
def test_syevd_deterministic_mode(mesh, engine, deterministic, monkeypatch):
    """syevd's single engine runs cuSOLVER's syevd in its non-deterministic mode unless
    JAXMG_DETERMINISTIC is set (read at each call). Both modes are accurate; with it set, two
    calls give bitwise identical w and V."""
    if engine != "single":
        pytest.skip("the mode is the single engine's (cuSOLVERDn)")
    if deterministic is None:
        monkeypatch.delenv("JAXMG_DETERMINISTIC", raising=False)
    else:
        monkeypatch.setenv("JAXMG_DETERMINISTIC", deterministic)
    n = 2048
    a, a64 = _hpd(n, "float64")
    runs = []
    for _ in range(2):
        w, v, info = jaxmg.syevd(_rows(a, mesh), return_status=True)
        assert int(info) == 0
        _check_eigenvalues(a64, w, np.float64)
        _check_eigenpairs(a64, w, v, np.float64)
        runs.append((np.asarray(w), np.asarray(v)))
    if deterministic:
        assert np.array_equal(runs[0][0], runs[1][0])
        assert np.array_equal(runs[0][1], runs[1][1])


# ---- Cholesky factor kept on the devices (POTRF + SOLVE targets) ------------------------------


@pytest.mark.parametrize("dtype", [np.float64, np.complex64], ids=["f64", "c64"])
def test_cho_factor_solve(mesh, dtype):
    linalg = getattr(jaxmg, "linalg", None)
    if linalg is None or not hasattr(linalg, "cho_factor"):
        pytest.skip("jaxmg.linalg.cho_factor is not in this build of the Python package")
    n = 96
    a, a64 = _hpd(n, np.dtype(dtype).name)
    fac = linalg.cho_factor(_rows(a, mesh), T_A=16)
    for seed in (1, 2):  # one factorization, several solves; the factor is only read
        b = _rhs(n, 2, dtype, seed=seed)
        x = linalg.cho_solve(fac, b)
        _check_potrs(a64, b, x, dtype)


# ---- failures, device order, plans, faults ----------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float64, np.complex64], ids=["f64", "c64"])
def test_not_positive_definite(mesh, dtype):
    """A negative pivot in a row held by the last device: LAPACK's info (1-based original
    row) and NaN outputs on every device, for potrs and potri."""
    n = 96
    k = n - 3
    a = np.diag(np.arange(1, n + 1)).astype(dtype)
    a[k, k] = -1
    b = _rhs(n, 2, dtype)
    x, info = jaxmg.potrs(_rows(a, mesh), b, T_A=16, return_status=True)
    assert int(info) == k + 1
    assert np.all(np.isnan(np.asarray(x)))
    for s in x.addressable_shards:
        assert np.all(np.isnan(np.asarray(s.data)))
    if hasattr(jaxmg, "potri"):
        inv, info = jaxmg.potri(_rows(a, mesh), T_A=16, return_status=True)
        assert int(info) == k + 1
        assert np.all(np.isnan(np.asarray(inv)))
    # The backend is healthy afterwards.
    good, good64 = _hpd(n, np.dtype(dtype).name)
    _check_potrs(good64, b, jaxmg.potrs(_rows(good, mesh), b, T_A=16), dtype)


def test_reversed_device_order(gpus):
    """Mesh positions, not CUDA ordinals, decide who holds which tiles."""
    mesh = Mesh(np.array(gpus[::-1], dtype=object), ("x",))
    n = 96
    a, a64 = _hpd(n, "float64")
    b = _rhs(n, 2, np.float64)
    _check_potrs(a64, b, jaxmg.potrs(_rows(a, mesh), b, T_A=16), np.float64)
    if hasattr(jaxmg, "potri"):
        _check_inverse(a64, jaxmg.potri(_rows(a, mesh), T_A=16), np.float64)
    if hasattr(jaxmg, "syevd"):
        w, v = jaxmg.syevd(_rows(a, mesh), T_A=16)
        _check_eigenvalues(a64, w, np.float64)
        _check_eigenpairs(a64, w, v, np.float64)


def test_repeated_calls_reuse_the_plan(mesh):
    n = 80  # a shape no other test uses
    a, a64 = _hpd(n, "float64")
    b = _rhs(n, 2, np.float64)
    x = jaxmg.potrs(_rows(a, mesh), b, T_A=8)
    jax.block_until_ready(x)
    count = _ffi.cuda_plan_count()
    assert count >= 1
    for _ in range(3):
        x = jaxmg.potrs(_rows(a, mesh), b, T_A=8)
        _check_potrs(a64, b, x, np.float64)
    assert _ffi.cuda_plan_count() == count


@pytest.fixture
def fault_reset():
    jaxmg.set_timeout(60.0)
    yield
    _ffi.set_fault(0, -1, 0, platform="gpu")
    jaxmg.set_timeout(None)


@pytest.mark.parametrize("point", [FAULT_ALLOC, FAULT_SOLVER], ids=["alloc", "solver"])
@pytest.mark.parametrize("where", ["first", "last"])
def test_injected_fault_fails_everywhere_then_recovers(mesh, point, where, fault_reset):
    ndev = mesh.devices.size
    rank = 0 if where == "first" else ndev - 1
    n = 96
    a, a64 = _hpd(n, "float64")
    b = _rhs(n, 2, np.float64)
    _ffi.ensure_registered("gpu")
    _ffi.set_fault(point, rank, 1, platform="gpu")
    with pytest.raises(Exception) as exc:
        jax.block_until_ready(jaxmg.potrs(_rows(a, mesh), b, T_A=16))
    assert "injected" in str(exc.value)
    _ffi.set_fault(0, -1, 0, platform="gpu")
    _check_potrs(a64, b, jaxmg.potrs(_rows(a, mesh), b, T_A=16), np.float64)


def test_no_leaked_sessions(mesh):
    n = 96
    a, _ = _hpd(n, "float64")
    jax.block_until_ready(jaxmg.potrs(_rows(a, mesh), _rhs(n, 1, np.float64), T_A=16))
    assert _ffi.live_sessions("gpu") == 0
