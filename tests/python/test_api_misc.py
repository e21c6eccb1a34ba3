"""Package-level behaviour: no side effects at import, the timeout setting, the default tile,
the Python index maps against the C layout planner, session bookkeeping, and a check that
the residual test used everywhere can fail."""

import ctypes
import json
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

import jaxmg
from jaxmg import _engines, _ffi, _geometry

# ---- import has no side effects ------------------------------------------------------------

_IMPORT_PROBE = textwrap.dedent(
    r"""
    import json, os, sys
    import jax
    import numpy as np

    x64 = sys.argv[1] == "1"
    jax.config.update("jax_enable_x64", x64)
    registered = []
    real_register = jax.ffi.register_ffi_target

    def spy(name, *args, **kwargs):
        registered.append(name)
        return real_register(name, *args, **kwargs)

    jax.ffi.register_ffi_target = spy

    def maps():
        with open("/proc/self/maps") as f:
            return f.read()

    def backends_started():
        from jax._src import xla_bridge
        return bool(getattr(xla_bridge, "_backends", {}))

    env_before = dict(os.environ)
    import jaxmg

    out = {
        "x64_after_import": bool(jax.config.jax_enable_x64),
        "env_changed": sorted(set(os.environ.items()) ^ set(env_before.items())),
        "native_loaded": "libjaxmg" in maps() or bool(jaxmg._ffi._LIBS),
        "registered": list(registered),
        "backends_started": backends_started(),
    }
    # Now use an op: the library is loaded and the targets registered, x64 still untouched.
    a = np.diag(np.arange(1.0, 9.0)).astype(np.float32)
    x = jaxmg.potrs(a, np.ones(8, np.float32))
    out["x"] = np.asarray(x).tolist()
    out["x_dtype"] = str(x.dtype)
    out["x64_after_op"] = bool(jax.config.jax_enable_x64)
    out["native_loaded_after_op"] = "libjaxmg" in maps()
    out["registered_after_op"] = list(registered)
    print("RESULT" + json.dumps(out))
    """
)


def _package_root():
    return os.path.dirname(os.path.dirname(os.path.abspath(jaxmg.__file__)))


@pytest.mark.parametrize("x64", [False, True], ids=["x64-off", "x64-on"])
def test_import_has_no_side_effects(x64):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [_package_root(), env.get("PYTHONPATH")]))
    env.setdefault("JAX_PLATFORMS", "cpu")
    env.pop("JAX_ENABLE_X64", None)
    proc = subprocess.run(
        [sys.executable, "-c", _IMPORT_PROBE, "1" if x64 else "0"],
        env=env, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT")][-1]
    out = json.loads(line[len("RESULT"):])
    assert out["x64_after_import"] is x64, "importing jaxmg changed jax_enable_x64"
    assert out["env_changed"] == [], "importing jaxmg changed the environment"
    assert out["native_loaded"] is False, "importing jaxmg loaded the native library"
    assert out["registered"] == [], "importing jaxmg registered FFI targets"
    assert out["backends_started"] is False, "importing jaxmg initialised JAX's backends"
    # The first op loads and registers, and works in float32 whatever the x64 setting.
    assert out["x64_after_op"] is x64
    assert out["native_loaded_after_op"] is True
    assert "jaxmg_potrs" in out["registered_after_op"]
    assert out["x_dtype"] == "float32"
    np.testing.assert_allclose(out["x"], 1.0 / np.arange(1.0, 9.0), rtol=1e-6)


def test_public_names():
    assert set(jaxmg.__all__) >= {"potrs", "potrs_shardmap_ctx", "set_timeout", "get_timeout"}
    import types

    for name in jaxmg.__all__:
        obj = getattr(jaxmg, name)
        assert callable(obj) or isinstance(obj, types.ModuleType), name
    assert isinstance(jaxmg.__version__, str) and jaxmg.__version__
    assert "potrf" in jaxmg.potrs.__doc__ and "potrs" in jaxmg.potrs.__doc__


# ---- timeout -------------------------------------------------------------------------------

@pytest.fixture
def restore_timeout():
    yield
    jaxmg.set_timeout(None)


def test_timeout_setting(restore_timeout, monkeypatch):
    monkeypatch.delenv("JAXMG_TIMEOUT", raising=False)
    assert jaxmg.get_timeout() == 300.0
    monkeypatch.setenv("JAXMG_TIMEOUT", "12.5")
    assert jaxmg.get_timeout() == 12.5
    for bad_env in ["abc", "-3", "0", "inf", "nan"]:
        monkeypatch.setenv("JAXMG_TIMEOUT", bad_env)
        assert jaxmg.get_timeout() == 300.0, bad_env
    jaxmg.set_timeout(7)
    assert jaxmg.get_timeout() == 7.0
    jaxmg.set_timeout(None)
    assert jaxmg.get_timeout() == 300.0


@pytest.mark.parametrize("bad", [0, -1.0, float("inf"), float("nan"), True, "5"])
def test_timeout_rejects_bad_values(restore_timeout, bad):
    with pytest.raises(ValueError, match="set_timeout.*positive"):
        jaxmg.set_timeout(bad)


def test_timeout_reaches_the_call(restore_timeout, mesh_of):
    """The timeout is read at trace time and passed to the native call as milliseconds."""
    mesh = mesh_of([0, 1])
    a = jax.device_put(np.eye(8), NamedSharding(mesh, P("x", None)))

    def lowered_text():
        fn = jax.jit(lambda a, b: jaxmg.potrs(a, b, mesh=mesh, in_specs=(P("x", None),)))
        return fn.lower(a, np.ones(8)).as_text()

    jaxmg.set_timeout(7.5)
    assert "timeout_ms = 7500" in lowered_text()
    jaxmg.set_timeout(None)
    assert "timeout_ms = 300000" in lowered_text()


# ---- default tile --------------------------------------------------------------------------

@pytest.mark.parametrize("platform,cap,upto", [("cpu", 256, 4 * 256 + 3), ("gpu", 1024, 4096),
                                               ("gpu", 2048, 3 * 4096 + 3)])
def test_default_tile(platform, cap, upto):
    """GPU shards below 4096 rows cap the tile at 1024, larger ones at 2048."""
    for nloc in range(1 if cap < 2048 else 4096, upto):
        tile = _engines.tile("potrs", platform, nloc, None)
        assert 1 <= tile <= max(cap, 1), (nloc, tile)
        if nloc <= cap:
            assert tile == nloc  # one tile per device, no padding
            continue
        divisors = [d for d in range(1, cap + 1) if nloc % d == 0]
        if max(divisors) >= cap // 4:
            assert tile == max(divisors), (nloc, tile)  # the largest divisor: no padding
        else:
            assert tile == cap, (nloc, tile)  # padding to the cap, not a tiny tile


# ---- Python index maps against the C layout planner ----------------------------------------

class _Layout(ctypes.Structure):
    _fields_ = [("n", ctypes.c_int64), ("nloc", ctypes.c_int64), ("ndev", ctypes.c_int64),
                ("tile", ctypes.c_int64)]


@pytest.mark.parametrize("nloc,ndev,tile", [(6, 4, 2), (8, 3, 4), (12, 2, 3), (5, 1, 5),
                                            (9, 4, 9), (10, 3, 1)])
def test_geometry_matches_c_layout(nloc, ndev, tile):
    lib = _ffi.core()
    lib.jaxmg_layout_init.argtypes = [ctypes.POINTER(_Layout)] + [ctypes.c_int64] * 3
    lib.jaxmg_layout_init.restype = ctypes.c_int
    lib.jaxmg_layout_src.argtypes = [ctypes.POINTER(_Layout), ctypes.c_int64]
    lib.jaxmg_layout_src.restype = ctypes.c_int64
    lib.jaxmg_layout_dst.argtypes = [ctypes.POINTER(_Layout), ctypes.c_int64]
    lib.jaxmg_layout_dst.restype = ctypes.c_int64
    lay = _Layout()
    assert lib.jaxmg_layout_init(ctypes.byref(lay), nloc, ndev, tile) == 0
    geo = _geometry.Geometry(nloc * ndev, ndev, tile)
    n = nloc * ndev
    c_src = [lib.jaxmg_layout_src(ctypes.byref(lay), g) for g in range(n)]
    c_dst = [lib.jaxmg_layout_dst(ctypes.byref(lay), j) for j in range(n)]
    np.testing.assert_array_equal(geo.src, c_src)
    np.testing.assert_array_equal(geo.dst, c_dst)
    np.testing.assert_array_equal(np.sort(geo.src), np.arange(n))  # a permutation
    np.testing.assert_array_equal(geo.src[geo.dst], np.arange(n))


@pytest.mark.parametrize("n,ndev,tile", [(24, 4, 4), (30, 3, 4), (16, 2, 5)])
def test_padding_maps_round_trip(n, ndev, tile):
    geo = _geometry.Geometry(n, ndev, tile)
    assert geo.padded and geo.nloc_pad % tile == 0 and geo.nloc_pad > geo.nloc
    b = np.arange(n * 2, dtype=np.float64).reshape(n, 2) + 1
    c = np.asarray(_geometry.to_solver_rows(b, geo))
    assert c.shape == (geo.n_pad, 2)
    assert np.count_nonzero(c[:, 0]) == n  # the padding rows are zero
    np.testing.assert_array_equal(np.asarray(_geometry.from_solver_rows(c, geo)), b)
    # info of the padded problem maps back to the user's row (1-based), 0 stays 0.
    infos = np.array([0] + [int(p) + 1 for p in geo.pad_index], dtype=np.int32)
    mapped = np.asarray(_geometry.unpad_info(infos, geo))
    np.testing.assert_array_equal(mapped, np.arange(n + 1))


# ---- bookkeeping and the residual check itself ---------------------------------------------

def test_no_sessions_left_behind(mesh_of, num):
    mesh = mesh_of([0, 1, 2])
    a = num.hpd(12, np.float64, seed=40)
    bad = np.array(a)
    bad[10, 10] = -1.0
    for m, expect in [(a, 0), (bad, 11)]:
        x, info = jaxmg.potrs(jax.device_put(m, NamedSharding(mesh, P("x", None))),
                              np.ones(12), T_A=2, return_status=True)
        x.block_until_ready()
        assert int(info) == expect
    assert _ffi.live_sessions() == 0


def test_residual_check_rejects_a_wrong_solution(num):
    n = 16
    a = num.hpd(n, np.float64, seed=41)
    b = num.rhs((n, 2), np.float64)
    x = np.linalg.solve(a, b)
    assert num.ratio(a, x, b, np.float64) < num.threshold
    wrong = x.copy()
    wrong[3, 1] *= 1 + 1e-9
    assert num.ratio(a, wrong, b, np.float64) > num.threshold
    with pytest.raises(AssertionError):
        num.assert_solves(a, wrong, b, np.float64)
    with pytest.raises(AssertionError):
        num.assert_solves(a, np.full_like(x, np.nan), b, np.float64)


def test_default_tile_large_gpu_shards():
    # Measured: 2048 beats 1024 by 2-14 % for shards of 4096 rows and more (docs/benchmarks.md).
    def default(nloc):
        return _engines.tile("potrs", "gpu", nloc, None)

    assert default(4096) == 2048
    assert default(6144) == 2048
    assert default(16384) == 2048
    assert default(81920) == 2048
    assert default(4095) <= 1024
    assert default(2048) == 1024
