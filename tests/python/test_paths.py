"""Public paths that once went wrong, checked where the choice is made: in the program a call
lowers to. Programs are lowered for CUDA too (``lowering_platforms``), which needs no GPU, so
the GPU path of a call made inside the user's shard_map is checked here as well
(tests/gpu/test_gpu_paths.py runs the same paths on GPUs).

- ``potri_shardmap_ctx`` ran cuSOLVERMg's potri, which returns wrong inverses on 2 GPUs: on
  CUDA it must factor and solve (``jaxmg_potrf`` + ``jaxmg_solve``), never ``jaxmg_potri``;
- ``syevd`` through cuSOLVERMg with the default tile on shards of 4096 rows or more got a
  tile of 2048, above cuSOLVERMg syevd's limit of 1024;
- a call inside the user's shard_map on CPU devices took the GPU's default tile.
"""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

import jaxmg
from jaxmg import _engines

ROWS, REP = P("x", None), P()


def _lowered(mesh, fn, shapes, in_specs, out_specs, platform):
    mapped = jax.shard_map(fn, mesh=mesh, in_specs=in_specs, out_specs=out_specs,
                           check_vma=False)
    args = [jax.ShapeDtypeStruct(s, jnp.float64, sharding=NamedSharding(mesh, spec))
            for s, spec in zip(shapes, in_specs)]
    return jax.jit(mapped).trace(*args).lower(lowering_platforms=(platform,)).as_text()


def _targets(text):
    return sorted(set(re.findall(r"custom_call @(jaxmg_\w+)", text)))


def _tiles(text):
    return sorted(set(int(t) for t in re.findall(r"tile = (\d+)", text)))


@pytest.mark.parametrize("idx", [[0], [1, 0], [0, 1, 2, 3]])
def test_potri_shardmap_ctx_never_runs_cusolvermg_potri(mesh_of, idx):
    mesh = mesh_of(idx)
    n = 24 * len(idx)
    cuda = _lowered(mesh, lambda a: jaxmg.potri_shardmap_ctx(a), [(n, n)], (ROWS,),
                    (ROWS, REP), "cuda")
    assert _targets(cuda) == ["jaxmg_potrf", "jaxmg_solve"]
    cpu = _lowered(mesh, lambda a: jaxmg.potri_shardmap_ctx(a), [(n, n)], (ROWS,),
                   (ROWS, REP), "cpu")
    assert _targets(cpu) == ["jaxmg_potri"]  # the CPU backend's own distributed inverse


@pytest.mark.parametrize("idx", [[0], [1, 0]])
def test_syevd_default_tile_within_cusolvermg_limit(mesh_of, idx):
    mesh = mesh_of(idx)
    n = 8192 * len(idx)  # shards of 8192 rows: potrs's default tile there is 2048
    for vectors in (True, False):
        out = (REP, ROWS, REP) if vectors else (REP, REP)
        text = _lowered(mesh, lambda a: jaxmg.syevd_shardmap_ctx(a, return_eigenvectors=vectors),
                        [(n, n)], (ROWS,), out, "cuda")
        assert _targets(text) == ["jaxmg_syevd" if vectors else "jaxmg_syevd_n"]
        assert _tiles(text) == [1024]
    potrs = _lowered(mesh, lambda a, b: jaxmg.potrs_shardmap_ctx(a, b), [(n, n), (n, 1)],
                     (ROWS, REP), (REP, REP), "cuda")
    assert _tiles(potrs) == [2048]
    assert _engines.tile("syevd", "gpu", 8192, None) == 1024
    assert _engines.tile("syevd", "gpu", 8192, 4096) == 1024  # a user's tile, clamped


@pytest.mark.parametrize("op", ["potrs", "potri", "syevd"])
def test_shardmap_ctx_takes_each_platforms_tile(mesh_of, op):
    """Shards of 600 rows: CPU devices tile by 200 (the largest divisor up to 256), GPUs by
    600 (one tile per shard up to 1024)."""
    mesh = mesh_of([0, 1])
    n = 1200
    if op == "potrs":
        fn, shapes, ins, outs = (lambda a, b: jaxmg.potrs_shardmap_ctx(a, b)), [(n, n), (n, 2)], \
            (ROWS, REP), (REP, REP)
    elif op == "potri":
        fn, shapes, ins, outs = (lambda a: jaxmg.potri_shardmap_ctx(a)), [(n, n)], (ROWS,), \
            (ROWS, REP)
    else:
        fn, shapes, ins, outs = (lambda a: jaxmg.syevd_shardmap_ctx(a)), [(n, n)], (ROWS,), \
            (REP, ROWS, REP)
    assert _tiles(_lowered(mesh, fn, shapes, ins, outs, "cpu")) == [200]
    assert _tiles(_lowered(mesh, fn, shapes, ins, outs, "cuda")) == [600]


def test_shardmap_ctx_on_cpu_runs_with_the_cpu_tile(mesh_of, num):
    """The same call run on CPU devices, against NumPy."""
    mesh = mesh_of([2, 0])
    n = 1200
    a = num.hpd(n, np.float64, seed=3)
    a_s = jax.device_put(a, NamedSharding(mesh, ROWS))
    f = jax.jit(jax.shard_map(lambda a: jaxmg.potri_shardmap_ctx(a), mesh=mesh,
                              in_specs=(ROWS,), out_specs=(ROWS, REP), check_vma=False))
    inv, info = f(a_s)
    assert int(np.asarray(info)[0]) == 0
    x = np.asarray(inv)
    assert np.abs(a @ x - np.eye(n)).max() < 1e-10
