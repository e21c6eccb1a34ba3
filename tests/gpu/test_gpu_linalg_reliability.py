"""jaxmg.linalg on the GPUs, and reliability there: load without growth, two Python threads
on disjoint meshes. Marked gpu (tests/gpu/conftest.py): skipped without GPUs."""

from __future__ import annotations

import gc
import os
import threading

import jax
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

import jaxmg
from jaxmg import _ffi, linalg

# Float64 cases: set here too, so the file also runs alone.
jax.config.update("jax_enable_x64", True)

pytestmark = pytest.mark.gpu


def _hpd(n, dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, n))
    if np.iscomplexobj(dtype(0)):
        x = x + 1j * rng.standard_normal((n, n))
    return (x @ x.conj().T / n + np.eye(n)).astype(dtype)


def _rows(a, mesh):
    return jax.device_put(a, NamedSharding(mesh, P("x", None)))


@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
@pytest.mark.parametrize("engine", ["mg", "single"])
def test_linalg_on_all_gpus(gpus, dtype, engine):
    mesh = Mesh(np.array(gpus), ("x",))
    n = 512
    a = _hpd(n, dtype)
    b = np.arange(n * 3, dtype=np.float64).reshape(n, 3).astype(dtype) / n
    a_s = _rows(a, mesh)
    eps = np.finfo(dtype).eps
    scale = n * np.linalg.norm(a, 1) * eps

    f = linalg.cho_factor(a_s)
    x = np.asarray(linalg.cho_solve(f, b))
    assert np.abs(a @ x - b).max() / (scale * np.abs(x).max()) < 30
    x = np.asarray(linalg.solve(a_s, b, assume_a="pos"))
    assert np.abs(a @ x - b).max() / (scale * np.abs(x).max()) < 30
    inv = np.asarray(jaxmg.potri(a_s, engine=engine))
    assert np.abs(a @ inv - np.eye(n)).max() / (scale * np.abs(inv).max()) < 30
    w, v = jaxmg.syevd(a_s, engine=engine)
    w, v = np.asarray(w), np.asarray(v)
    assert np.abs(a @ v - v * w).max() / scale < 30
    sign, logdet = linalg.slogdet(a_s)
    ref_sign, ref = np.linalg.slogdet(a)
    assert abs(float(logdet) - ref) < 1e-8 * abs(ref) + 1e-8 and abs(complex(sign) - ref_sign) < 1e-12
    w2, v2 = linalg.eigh(a_s)
    np.testing.assert_allclose(np.asarray(w2), np.linalg.eigvalsh(a), atol=50 * eps * np.abs(w).max())


def _rss():
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_load_no_growth_on_gpus(gpus):
    meshes = [Mesh(np.array(gpus), ("x",)), Mesh(np.array(gpus[::-1]), ("x",))]
    cases = []
    for i, mesh in enumerate(meshes):
        n = 256 * len(gpus)
        a = _hpd(n, seed=i)
        cases.append((a, _rows(a, mesh), np.ones((n, 2))))

    def one_round():
        outs = []
        for a, a_s, b in cases:
            outs.append(jaxmg.potrs(a_s, b, T_A=128, engine="mg"))
            outs.append(jaxmg.potri(a_s, T_A=128, engine="mg"))
            outs.append(jaxmg.syevd(a_s, T_A=128, engine="mg", return_eigenvectors=False))
        jax.block_until_ready(outs)
        return outs

    for _ in range(10):
        one_round()
    gc.collect()
    rss0, thr0 = _rss(), len(os.listdir("/proc/self/task"))
    mem0 = [d.memory_stats().get("bytes_in_use", 0) for d in gpus]
    plans0 = _ffi.cuda_plan_count()
    rounds = int(os.environ.get("JAXMG_GPU_LOAD_ROUNDS", "167"))  # 6 calls a round: ~1000
    for _ in range(rounds):
        outs = one_round()
    a, _, b = cases[0]
    x = np.asarray(outs[0])
    assert np.abs(a @ x - b).max() < 1e-9
    gc.collect()
    assert _ffi.live_sessions("gpu") == 0
    assert _ffi.cuda_plan_count() == plans0, "plans must be reused, not recreated"
    assert len(os.listdir("/proc/self/task")) <= thr0 + 2
    mem1 = [d.memory_stats().get("bytes_in_use", 0) for d in gpus]
    assert all(m1 <= m0 + (16 << 20) for m0, m1 in zip(mem0, mem1)), (mem0, mem1)
    assert _rss() - rss0 < 256 << 20


def test_two_threads_on_disjoint_gpu_meshes(gpus):
    if len(gpus) < 2:
        pytest.skip("needs 2 GPUs")
    results, errors = {}, []

    def work(name, dev, seed):
        try:
            mesh = Mesh(np.array([dev]), ("x",))
            a = _hpd(256, seed=seed)
            b = np.ones((256, 1))
            a_s = _rows(a, mesh)
            for _ in range(20):
                x = jaxmg.potrs(a_s, b, T_A=64, engine="mg")
            results[name] = (a, b, np.asarray(x))
        except Exception as e:  # reported below
            errors.append(e)

    ts = [threading.Thread(target=work, args=(f"t{i}", gpus[i], i)) for i in range(2)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(timeout=300)
    assert not errors, errors
    for a, b, x in results.values():
        assert np.abs(a @ x - b).max() < 1e-9
