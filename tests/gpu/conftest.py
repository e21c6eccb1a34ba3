"""GPU tests: every test under tests/gpu, and any test marked ``gpu``, needs NVIDIA GPUs
visible to JAX and is skipped cleanly (never failed, never hung) when there are none.

The CPU suite (tests/python) pins JAX_PLATFORMS=cpu only on machines without NVIDIA devices,
so on a GPU machine both directories can run in one pytest session. The ``gpus`` fixture
skips a test that needs more GPUs than the machine has.
"""

import functools
import os

import pytest

_HERE = os.path.dirname(os.path.abspath(__file__)) + os.sep


@functools.lru_cache(maxsize=1)
def _gpu_devices():
    try:
        import jax

        return tuple(jax.devices("gpu"))
    except Exception:  # no GPU backend, no device, or JAX_PLATFORMS leaves GPUs out
        return ()


def pytest_collection_modifyitems(config, items):
    for item in items:
        if str(item.path).startswith(_HERE):
            item.add_marker(pytest.mark.gpu)
        if item.get_closest_marker("gpu") is not None and not _gpu_devices():
            item.add_marker(pytest.mark.skip(reason="needs NVIDIA GPUs visible to JAX"))


@pytest.fixture(scope="session")
def gpus():
    """The GPUs JAX sees (a skip when there are none)."""
    devs = list(_gpu_devices())
    if not devs:
        pytest.skip("needs NVIDIA GPUs visible to JAX")
    return devs


@pytest.fixture
def need_gpus(gpus):
    """need_gpus(k): the first k GPUs, or a skip when there are fewer."""

    def take(k):
        if len(gpus) < k:
            pytest.skip(f"needs {k} GPUs, found {len(gpus)}")
        return gpus[:k]

    return take
