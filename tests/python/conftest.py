"""Shared set-up of the CPU multi-device tests.

Four virtual CPU devices are requested before JAX initialises (unless the user already chose
a device count), so meshes of 1, 2, 3 and 4 devices, in any order, can be built from
subsets. ``jax_enable_x64`` is turned on in the test process (the tests need float64); the
library itself never touches it (test_api_misc.py checks that in a fresh interpreter).

Every test places its data on CPU devices explicitly, so the suite also runs on a machine
with GPUs (there JAX_PLATFORMS is left alone so that tests/gpu sees the GPUs in the same
pytest session).
"""

import os
import types

_DEVICE_COUNT = 4


def _configure_environment() -> None:
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_force_host_platform_device_count" not in flags:
        flags = f"{flags} --xla_force_host_platform_device_count={_DEVICE_COUNT}".strip()
        os.environ["XLA_FLAGS"] = flags
    if "JAX_PLATFORMS" not in os.environ and not os.path.exists("/dev/nvidiactl"):
        os.environ["JAX_PLATFORMS"] = "cpu"


_configure_environment()

import jax  # noqa: E402  (after the environment is set)
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from jax.sharding import AxisType, Mesh  # noqa: E402

jax.config.update("jax_enable_x64", True)

# Scaled residual ratios above this fail (reference LAPACK's test threshold is 30).
RESIDUAL_THRESHOLD = 30.0


def cpu_devices():
    return jax.devices("cpu")


@pytest.fixture(scope="session")
def cpus():
    devs = cpu_devices()
    if len(devs) < _DEVICE_COUNT:
        pytest.skip(
            f"needs {_DEVICE_COUNT} CPU devices, got {len(devs)} (XLA_FLAGS sets another count)"
        )
    return devs


@pytest.fixture(autouse=True)
def _on_cpu():
    """Arrays that tests create without a placement land on CPU device 0."""
    with jax.default_device(cpu_devices()[0]):
        yield


@pytest.fixture(scope="session")
def mesh_of(cpus):
    """mesh_of(ids, names=("x",), shape=None, explicit=False): a mesh over the CPU devices
    ``ids`` in that order (so [3, 0, 2] is a partial mesh in a scrambled order)."""

    def make(ids, names=("x",), shape=None, explicit=False):
        devs = np.array([cpus[i] for i in ids], dtype=object)
        shape = (len(ids),) if shape is None else tuple(shape)
        kind = AxisType.Explicit if explicit else AxisType.Auto
        return Mesh(devs.reshape(shape), tuple(names), axis_types=(kind,) * len(names))

    return make


def random_hpd(n, dtype, seed=0):
    """A random Hermitian positive definite matrix that is far from diagonal:
    X X^H / n + I / 4 with X Gaussian (complex for complex dtypes)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, n))
    if np.issubdtype(np.dtype(dtype), np.complexfloating):
        x = x + 1j * rng.standard_normal((n, n))
    a = x @ x.conj().T / n + 0.25 * np.eye(n)
    return a.astype(dtype)


def random_rhs(shape, dtype, seed=1):
    rng = np.random.default_rng(seed)
    b = rng.standard_normal(shape)
    if np.issubdtype(np.dtype(dtype), np.complexfloating):
        b = b + 1j * rng.standard_normal(shape)
    return b.astype(dtype)


def residual_ratio(a, x, b, dtype):
    """||b - A x|| / (n ||A|| ||x|| eps), infinity norms, computed in complex128 with the
    eps of ``dtype``; b and x may be vectors or N x k matrices."""
    a = np.asarray(a).astype(np.complex128)
    x = np.asarray(x).astype(np.complex128)
    b = np.asarray(b).astype(np.complex128)
    assert x.shape == b.shape, (x.shape, b.shape)
    if b.ndim == 1:
        x, b = x[:, None], b[:, None]
    n = a.shape[0]
    eps = np.finfo(np.dtype(dtype)).eps
    num = np.linalg.norm(b - a @ x, np.inf)
    den = n * np.linalg.norm(a, np.inf) * np.linalg.norm(x, np.inf) * eps
    return float(num / den)


def assert_solves(a, x, b, dtype, threshold=RESIDUAL_THRESHOLD):
    """x solves A x = b: finite, right shape and dtype, scaled residual below threshold."""
    x_host = np.asarray(x)
    assert x_host.shape == np.shape(b)
    assert x_host.dtype == np.dtype(dtype)
    assert np.all(np.isfinite(x_host)), "solution has non-finite entries"
    ratio = residual_ratio(a, x_host, b, dtype)
    assert ratio < threshold, f"scaled residual ratio {ratio:.3g} >= {threshold}"
    return ratio


def assert_on_every_device(x, devices):
    """x is replicated over ``devices``: one full copy on each, all equal."""
    shards = {s.device: np.asarray(s.data) for s in x.addressable_shards}
    assert set(devices) <= set(shards), (sorted(d.id for d in shards), [d.id for d in devices])
    full = np.asarray(x)
    for d in devices:
        assert shards[d].shape == full.shape
        np.testing.assert_array_equal(shards[d], full)


def lapack_potrf_info(a):
    """LAPACK's info for the Cholesky factorisation of a (via SciPy)."""
    from scipy.linalg import lapack

    a = np.asarray(a)
    fn = {
        np.dtype(np.float32): lapack.spotrf,
        np.dtype(np.float64): lapack.dpotrf,
        np.dtype(np.complex64): lapack.cpotrf,
        np.dtype(np.complex128): lapack.zpotrf,
    }[a.dtype]
    _, info = fn(a, lower=True)
    return int(info)


@pytest.fixture(scope="session")
def num():
    """The numerical helpers of this file (fixtures rather than imports: tests/gpu has its
    own conftest module, and two modules named ``conftest`` cannot both be imported)."""
    return types.SimpleNamespace(
        hpd=random_hpd,
        rhs=random_rhs,
        ratio=residual_ratio,
        assert_solves=assert_solves,
        assert_on_every_device=assert_on_every_device,
        lapack_info=lapack_potrf_info,
        threshold=RESIDUAL_THRESHOLD,
    )


@pytest.fixture
def forget_jaxmg_caches(monkeypatch):
    """After the test (its patches undone), every program and rule jaxmg cached (its
    modules' ``functools.lru_cache``s) and JAX's compiled programs are forgotten: for tests
    that stand in for an engine or its FFI calls, so that no later test reuses what was
    built while they did."""
    import sys

    yield
    monkeypatch.undo()
    for name, mod in list(sys.modules.items()):
        if name != "jaxmg" and not name.startswith("jaxmg."):
            continue
        for obj in list(vars(mod).values()):
            if callable(getattr(obj, "cache_clear", None)):
                obj.cache_clear()
    jax.clear_caches()
