"""Engine ``cusolvermp``: NVIDIA's cuSOLVERMp over every GPU of the mesh, one rank per GPU,
in any number of processes and nodes (NCCL underneath; src/cusolvermp/engine.c). The engine of
meshes that span several processes (``jax.distributed``), selectable on any GPU mesh.

Each call moves the row-sharded matrix into the 2D block-cyclic layout that cuSOLVERMp
wants with one ``all_to_all`` (``_grid2d.rows_to_grid``; each rank keeps about 1/P of its
shard and sends the rest), runs cuSOLVERMp on the local blocks, and moves results that are
sharded by rows back the same way. Right-hand sides and eigenvalues are replicated: every
rank cuts its block of ``b`` out of its own copy, and the solution comes back with one
``psum``.

Set-up, once per mesh (``group``): a p x q grid (``_grid2d.choose_grid``, or
``JAXMG_MP_GRID``) per replica group; rank 0 of each group makes an NCCL unique id, which
reaches the other processes through JAX's distributed key-value store (nothing beyond
``jax.distributed.initialize()``), and every process creates the communicators of its own
GPUs. Blocks are ``mb = nb = JAXMG_MP_BLOCK`` (default ``DEFAULT_BLOCK``) rows and columns,
at most the shard.

Needs NVIDIA's cuSOLVERMp (``pip install "jaxmg[mp-cuda13]"``: the nvidia-cusolvermp-cu13
wheel, 0.8.x, whose NCCL needs are met by the NCCL 2.28 that JAX installs) and a jaxmg built
with it (``libjaxmg_dist_cuda13.so``).
"""

from __future__ import annotations

import ctypes
import functools
import glob
import os
import threading

import jax
import jax.numpy as jnp
import numpy as np
from jax._src import distributed as _distributed  # the key-value store of jax.distributed
from jax.sharding import Mesh, PartitionSpec as P

from .. import _cuda_libs, _spmd
from .._geometry import Geometry, axis_of
from . import _grid2d
from ._base import Engine, nan_where

DEFAULT_BLOCK = 512
INSTALL = ('the cuSOLVERMp engine needs NVIDIA cuSOLVERMp and a jaxmg built with it: '
           'pip install "jaxmg[mp-cuda13]" (nvidia-cusolvermp-cu13 0.8.x), then reinstall jaxmg')
_HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_LOCK = threading.Lock()
_LIB: list = []


def library() -> ctypes.CDLL:
    """libjaxmg_dist_cuda<major>.so for the CUDA major JAX uses, with cuSOLVERMp and NCCL
    found as ``_cuda_libs`` finds the CUDA libraries; RuntimeError saying what to install."""
    with _LOCK:
        if _LIB:
            return _LIB[0]
        major = _cuda_libs.jax_cuda_major()
        cands = sorted(glob.glob(os.path.join(_HERE, "libjaxmg_dist_cuda*.so")))
        if major is not None:
            cands = [c for c in cands if c.endswith(f"_cuda{major}.so")] or cands
        if not cands:
            raise RuntimeError(f"jaxmg: {INSTALL} (no libjaxmg_dist_cuda*.so in {_HERE})")
        try:
            lib = _cuda_libs.load_backend_file(cands[0], major)
        except OSError as e:
            raise RuntimeError(f"jaxmg: {INSTALL} ({e})") from None
        lib.jaxmg_dist_init.argtypes = [
            ctypes.c_int64, ctypes.c_char_p, ctypes.c_int, ctypes.c_int,
            ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_int), ctypes.c_int,
            ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.jaxmg_dist_unique_id.argtypes = [ctypes.c_char_p, ctypes.c_int]
        lib.jaxmg_ffi_targets.restype = ctypes.c_char_p
        for target in lib.jaxmg_ffi_targets().decode().split(","):
            stem = target.removeprefix("jaxmg_")
            jax.ffi.register_ffi_target(
                target, jax.ffi.pycapsule(getattr(lib, f"jaxmg_ffi_{stem}_cuda")),
                platform="CUDA")
        _LIB.append(lib)
        return lib


def available() -> str | None:
    """None when the engine can run here, else why not."""
    try:
        library()
    except RuntimeError as e:
        return str(e)
    return None


def block(nloc: int) -> int:
    """mb = nb: ``JAXMG_MP_BLOCK`` or ``DEFAULT_BLOCK``, at most the shard."""
    b = int(os.environ.get("JAXMG_MP_BLOCK") or DEFAULT_BLOCK)
    if b < 1:
        raise ValueError(f"jaxmg: JAXMG_MP_BLOCK must be positive, got {b}")
    return max(1, min(b, nloc))


# ---- communicators ---------------------------------------------------------------------------

_GROUPS: dict = {}


def share(name: str, owner: bool, make) -> bytes:
    """``make()`` on the owner's process and the same bytes on every other process of the
    mesh, through JAX's distributed key-value store (``jax.distributed.initialize()`` is
    all it needs; no MPI). A process that waits gives up after ``JAXMG_TIMEOUT`` seconds
    (default 300) with an error instead of hanging."""
    client = _distributed.global_state.client
    key = f"jaxmg/dist/{name}"
    if owner:
        value = make()
        if client is not None and jax.process_count() > 1:
            client.key_value_set_bytes(key, value)
        return value
    if client is None:
        raise RuntimeError("jaxmg: the mesh spans several processes but jax.distributed is "
                           "not initialized")
    timeout = int(float(os.environ.get("JAXMG_TIMEOUT") or 300) * 1000)
    return client.blocking_key_value_get_bytes(key, timeout)


def group(mesh, row_axes: tuple, p: int, q: int) -> int:
    """The key of the communicators of ``mesh`` (one group per replica along the other
    axes, ranks = flattened positions along ``row_axes``), created on first use: collective,
    every process of the mesh must get here (SPMD programs do)."""
    devs = tuple(d.id for d in mesh.devices.flat)
    cache = (devs, tuple(mesh.axis_names), row_axes, p, q)
    if cache in _GROUPS:
        return _GROUPS[cache]
    lib = library()
    key = len(_GROUPS) + 1
    names = list(mesh.axis_names)
    perm = [names.index(a) for a in names if a not in row_axes] + [names.index(a) for a in row_axes]
    grid = np.transpose(mesh.devices, perm)
    nranks = int(np.prod([mesh.shape[a] for a in row_axes]))
    groups = grid.reshape(-1, nranks)
    me = jax.process_index()
    nbytes = lib.jaxmg_dist_id_bytes()
    for g, members in enumerate(groups):
        local = [(r, d) for r, d in enumerate(members) if d.process_index == me]
        if not local:
            continue
        def make():
            buf = ctypes.create_string_buffer(nbytes)
            if lib.jaxmg_dist_unique_id(buf, nbytes) != 0:
                raise RuntimeError("jaxmg: ncclGetUniqueId failed")
            return buf.raw

        name = f"{key}-{g}-{'-'.join(str(d.id) for d in members)}"
        uid = share(name, members[0].process_index == me, make)
        ranks = (ctypes.c_int * len(local))(*[r for r, _ in local])
        ids = (ctypes.c_int * len(local))(*[d.local_hardware_id for _, d in local])
        err = ctypes.create_string_buffer(512)
        rc = lib.jaxmg_dist_init(key, uid, nranks, len(local), ranks, ids, p, q, err, 512)
        if rc != 0:
            raise RuntimeError(f"jaxmg: the cuSOLVERMp engine could not set up its "
                               f"communicators: {err.value.decode(errors='replace')}")
    _GROUPS[cache] = key
    return key


# ---- bodies ------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=64)
def _layout(n: int, ndev: int, p: int, q: int, nb: int):
    lay = _grid2d.Layout(n, n, nb, nb, p, q)
    return lay, _grid2d.tables(lay, _grid2d.even_row_starts(n, ndev))


def _rank_rows(lay, mloc: int) -> np.ndarray:
    """(P, mloc): the global rows of every rank's local matrix, padded with N (dropped)."""
    out = np.full((lay.nprocs, mloc), lay.m, np.int32)
    for r in range(lay.nprocs):
        rows = lay.rows(r)
        out[r, :rows.size] = rows
    return out


def _rank_in_col0(lay) -> np.ndarray:
    return np.array([_grid2d.grid_position(r, lay.p, lay.q)[1] == 0
                     for r in range(lay.nprocs)])


def potrs(a_loc, b, *, geo, row_axes, group_axes, key, grid, keep_factor=False):
    """Factor and solve: (x, info[1]) (+ this rank's rows of the factor's matrix with
    ``keep_factor``: the 2D local blocks are moved back)."""
    p, q = grid
    axis = axis_of(row_axes)
    lay, tb = _layout(geo.n, geo.ndev, p, q, block(geo.nloc))
    local = _grid2d.rows_to_grid(a_loc, tb, axis)         # (mloc, nloc) of A
    me = jax.lax.axis_index(axis)
    rows = jnp.asarray(_rank_rows(lay, tb.mloc))[me]       # (mloc,)
    bp = jnp.concatenate([b, jnp.zeros((1, b.shape[1]), b.dtype)])
    b_loc = bp[rows]                                       # (mloc, nrhs): B's local rows
    nrhs = b.shape[1]
    a_out, x_loc, info = jax.ffi.ffi_call(
        "jaxmg_dist_potrs",
        (jax.ShapeDtypeStruct((tb.nloc, tb.mloc), a_loc.dtype),
         jax.ShapeDtypeStruct((nrhs, tb.mloc), b.dtype),
         jax.ShapeDtypeStruct((2,), jnp.int32)),
        input_output_aliases={0: 0, 1: 1})(
            local.T, b_loc.T, group=np.int64(key), n=np.int64(geo.n), mb=np.int64(lay.mb),
            nb=np.int64(lay.nb), nrhs=np.int64(nrhs), nbb=np.int64(max(nrhs, 1)),
            solve=np.int64(nrhs > 0))
    col0 = jnp.asarray(_rank_in_col0(lay))[me]
    part = jnp.zeros((geo.n + 1, nrhs), b.dtype).at[rows].set(
        jnp.where(col0, x_loc.T, 0))[:geo.n]
    x = jax.lax.psum(part, axis)
    bad = jax.lax.pmax(info[0], axis)
    info1 = jnp.reshape(bad, (1,)).astype(jnp.int32)
    x = nan_where(bad != 0, x)
    if keep_factor:
        shard = _grid2d.grid_to_rows(a_out.T, tb, axis, geo.nloc, geo.n)
        return x, info1, nan_where(bad != 0, shard)
    return x, info1


def _rank_cols(lay, nloc: int) -> np.ndarray:
    """(P, nloc): the global columns of every rank's local matrix, padded with -1."""
    out = np.full((lay.nprocs, nloc), -1, np.int32)
    for r in range(lay.nprocs):
        cols = lay.cols(r)
        out[r, :cols.size] = cols
    return out


def potri(a_loc, *, geo, row_axes, group_axes, key, grid):
    """The inverse: this rank's rows of inv(A), info[1]. One factorization and one solve
    with B = I laid out like A (N x N in the same blocks; memory O(N² / P) per rank)."""
    p, q = grid
    axis = axis_of(row_axes)
    lay, tb = _layout(geo.n, geo.ndev, p, q, block(geo.nloc))
    local = _grid2d.rows_to_grid(a_loc, tb, axis)
    me = jax.lax.axis_index(axis)
    rows = jnp.asarray(_rank_rows(lay, tb.mloc))[me]
    cols = jnp.asarray(_rank_cols(lay, tb.nloc))[me]
    eye = (rows[:, None] == cols[None, :]).astype(a_loc.dtype)   # (mloc, nloc) of I
    _, x_loc, info = jax.ffi.ffi_call(
        "jaxmg_dist_potrs",
        (jax.ShapeDtypeStruct((tb.nloc, tb.mloc), a_loc.dtype),
         jax.ShapeDtypeStruct((tb.nloc, tb.mloc), a_loc.dtype),
         jax.ShapeDtypeStruct((2,), jnp.int32)),
        input_output_aliases={0: 0, 1: 1})(
            local.T, eye.T, group=np.int64(key), n=np.int64(geo.n), mb=np.int64(lay.mb),
            nb=np.int64(lay.nb), nrhs=np.int64(geo.n), nbb=np.int64(lay.nb), solve=np.int64(1))
    bad = jax.lax.pmax(info[0], axis)
    inv = _grid2d.grid_to_rows(x_loc.T, tb, axis, geo.nloc, geo.n)
    return nan_where(bad != 0, inv), jnp.reshape(bad, (1,)).astype(jnp.int32)


def syevd(a_loc, *, geo, row_axes, group_axes, key, grid, vectors=True):
    """Eigenvalues (replicated) and this rank's rows of the eigenvectors: (w, V rows or None,
    info[1])."""
    p, q = grid
    axis = axis_of(row_axes)
    lay, tb = _layout(geo.n, geo.ndev, p, q, block(geo.nloc))
    local = _grid2d.rows_to_grid(a_loc, tb, axis)
    real = jnp.finfo(a_loc.dtype).dtype
    _, v, w, info = jax.ffi.ffi_call(
        "jaxmg_dist_syevd",
        (jax.ShapeDtypeStruct((tb.nloc, tb.mloc), a_loc.dtype),
         jax.ShapeDtypeStruct((tb.nloc, tb.mloc), a_loc.dtype),
         jax.ShapeDtypeStruct((geo.n,), real), jax.ShapeDtypeStruct((1,), jnp.int32)),
        input_output_aliases={0: 0})(
            local.T, group=np.int64(key), n=np.int64(geo.n), mb=np.int64(lay.mb),
            nb=np.int64(lay.nb), vectors=np.int64(bool(vectors)))
    bad = jax.lax.pmax(info[0], axis)
    info1 = jnp.reshape(bad, (1,)).astype(jnp.int32)
    w = nan_where(bad != 0, w)
    if not vectors:
        return w, None, info1
    rows = _grid2d.grid_to_rows(v.T, tb, axis, geo.nloc, geo.n)
    return w, nan_where(bad != 0, rows), info1


def solve_gen(a_loc, b, *, geo, row_axes, key, grid):
    """A x = b for a general A (LU with partial pivoting, Getrf + Getrs): (x, info[1]),
    x replicated; info = the first exactly zero pivot of U (x NaN then)."""
    p, q = grid
    axis = axis_of(row_axes)
    lay, tb = _layout(geo.n, geo.ndev, p, q, block(geo.nloc))
    local = _grid2d.rows_to_grid(a_loc, tb, axis)
    me = jax.lax.axis_index(axis)
    rows = jnp.asarray(_rank_rows(lay, tb.mloc))[me]
    bp = jnp.concatenate([b, jnp.zeros((1, b.shape[1]), b.dtype)])
    nrhs = b.shape[1]
    _, x_loc, info = jax.ffi.ffi_call(
        "jaxmg_dist_getrs",
        (jax.ShapeDtypeStruct((tb.nloc, tb.mloc), a_loc.dtype),
         jax.ShapeDtypeStruct((nrhs, tb.mloc), b.dtype),
         jax.ShapeDtypeStruct((2,), jnp.int32)),
        input_output_aliases={0: 0, 1: 1})(
            local.T, bp[rows].T, group=np.int64(key), n=np.int64(geo.n), mb=np.int64(lay.mb),
            nb=np.int64(lay.nb), nrhs=np.int64(nrhs), nbb=np.int64(nrhs))
    col0 = jnp.asarray(_rank_in_col0(lay))[me]
    part = jnp.zeros((geo.n + 1, nrhs), b.dtype).at[rows].set(
        jnp.where(col0, x_loc.T, 0))[:geo.n]
    x = jax.lax.psum(part, axis)
    bad = jax.lax.pmax(info[0], axis)
    return nan_where(bad != 0, x), jnp.reshape(bad, (1,)).astype(jnp.int32)


def eigh_gen(a_loc, b_loc, *, geo, row_axes, key, grid, vectors=True):
    """A v = λ B v (Sygvd, type 1): (w, this rank's rows of V or None, info[1]); V
    B-orthonormal, info = N + k when B's leading minor of order k is not positive
    definite (outputs NaN then)."""
    p, q = grid
    axis = axis_of(row_axes)
    lay, tb = _layout(geo.n, geo.ndev, p, q, block(geo.nloc))
    la = _grid2d.rows_to_grid(a_loc, tb, axis)
    lb = _grid2d.rows_to_grid(b_loc, tb, axis)
    real = jnp.finfo(a_loc.dtype).dtype
    loc = jax.ShapeDtypeStruct((tb.nloc, tb.mloc), a_loc.dtype)
    _, _, z, w, info = jax.ffi.ffi_call(
        "jaxmg_dist_sygvd",
        (loc, loc, loc, jax.ShapeDtypeStruct((geo.n,), real),
         jax.ShapeDtypeStruct((1,), jnp.int32)),
        input_output_aliases={0: 0, 1: 1})(
            la.T, lb.T, group=np.int64(key), n=np.int64(geo.n), mb=np.int64(lay.mb),
            nb=np.int64(lay.nb), vectors=np.int64(bool(vectors)))
    bad = jax.lax.pmax(info[0], axis)
    info1 = jnp.reshape(bad, (1,)).astype(jnp.int32)
    w = nan_where(bad != 0, w)
    if not vectors:
        return w, info1
    rows = _grid2d.grid_to_rows(z.T, tb, axis, geo.nloc, geo.n)
    return w, nan_where(bad != 0, rows), info1


# name -> (body, input kinds, output kinds): "rows" sharded by rows, "rep" replicated
GENERAL = {
    "solve_gen": (solve_gen, ("rows", "rep"), ("rep", "rep")),
    "eigh_gen": (eigh_gen, ("rows", "rows"), ("rep", "rows", "rep")),
    "eigvalsh_gen": (functools.partial(eigh_gen, vectors=False), ("rows", "rows"),
                     ("rep", "rep")),
}


@functools.lru_cache(maxsize=64)
def general_program(op: str, place, n: int):
    """The jitted program of a general op of ``GENERAL`` over ``place``; ``n`` a multiple
    of the row devices."""
    body, ins, outs = GENERAL[op]
    geo = Geometry(n, place.ndev, n // place.ndev)
    kw = prepare(op, place, geo)
    fn = functools.partial(body, geo=geo, row_axes=place.row_axes, **kw)
    spec = {"rows": place.spec, "rep": P()}
    return jax.jit(_spmd.shard_map(fn, place.mesh, tuple(spec[k] for k in ins),
                                   tuple(spec[k] for k in outs)))


def refuses(op: str, place) -> str | None:
    """Why the engine cannot run on ``place`` (beyond the common checks), or None."""
    if not isinstance(place.mesh, Mesh):
        return ("engine 'cusolvermp' sets up its communicators from a concrete mesh; call it "
                "outside jit, or pass mesh= a jax.sharding.Mesh")
    return available()


def prepare(op: str, place, geo) -> dict:
    """The body's extra keywords for ``place``: the group key and grid (communicators set
    up here, collectively, on first use)."""
    p, q = _grid2d.choose_grid(place.ndev)
    return {"key": group(place.mesh, tuple(place.row_axes), p, q), "grid": (p, q)}


ENGINE = Engine(
    name="cusolvermp",
    platforms=("gpu",),
    bodies={"potrs": potrs, "potri": potri, "syevd": syevd},
    summary="cuSOLVERMp over every GPU of the mesh, one rank per GPU, any number of processes",
    check=refuses,
    prepare=prepare,
)
