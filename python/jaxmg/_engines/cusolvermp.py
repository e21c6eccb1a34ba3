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

import atexit
import ctypes
import functools
import glob
import os
import threading
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax._src import distributed as _distributed  # the key-value store of jax.distributed
from jax.sharding import Mesh, PartitionSpec as P

from .. import _cuda_libs, _spmd
from .._geometry import Geometry, axis_of
from . import _grid2d
from ._base import Engine, nan_where, transpose_rows

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
        lib.jaxmg_dist_release.restype = ctypes.c_int
        lib.jaxmg_ffi_targets.restype = ctypes.c_char_p
        for target in lib.jaxmg_ffi_targets().decode().split(","):
            stem = target.removeprefix("jaxmg_")
            jax.ffi.register_ffi_target(
                target, jax.ffi.pycapsule(getattr(lib, f"jaxmg_ffi_{stem}_cuda")),
                platform="CUDA")
        _LIB.append(lib)
        # Communicators, handles and grids go at exit, while CUDA is still up (registered
        # on first use of the engine, never at import).
        atexit.register(release)
        return lib


def release() -> int:
    """Releases every communicator, cuSOLVERMp handle and grid of this process; registered
    to run at exit. Returns how many ranks were released."""
    with _LOCK:
        if not _LIB:
            return 0
        _GROUPS.clear()
        return int(_LIB[0].jaxmg_dist_release())


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

class _Grid(NamedTuple):
    """Everything a body needs of the 2D layout of one problem, computed once per shape."""
    lay: _grid2d.Layout
    tb: _grid2d.Tables
    rows: np.ndarray  # (P, mloc): global rows of each rank's local matrix, padded with M
    cols: np.ndarray  # (P, nloc): global columns of each rank's local matrix, padded with -1
    col0: np.ndarray  # (P,): the rank is in grid column 0 (it holds a right-hand side's blocks)


@functools.lru_cache(maxsize=64)
def _grid(m: int, ndev: int, p: int, q: int, nb: int, n: int | None = None) -> _Grid:
    """The layout of an m x n matrix (n = m by default) whose rows split evenly over
    ``ndev`` ranks, on a p x q grid of nb x nb blocks."""
    n = m if n is None else n
    lay = _grid2d.Layout(m, n, nb, nb, p, q)
    tb = _grid2d.tables(lay, _grid2d.even_row_starts(m, ndev))
    rows = np.full((lay.nprocs, tb.mloc), m, np.int32)
    cols = np.full((lay.nprocs, tb.nloc), -1, np.int32)
    for r in range(lay.nprocs):
        rows[r, :lay.rows(r).size] = lay.rows(r)
        cols[r, :lay.cols(r).size] = lay.cols(r)
    col0 = np.array([_grid2d.grid_position(r, p, q)[1] == 0 for r in range(lay.nprocs)])
    return _Grid(lay, tb, rows, cols, col0)


class _Body(NamedTuple):
    """One body's call: the layout, the row axis, this rank's index and the group."""
    g: _Grid
    axis: object
    me: jax.Array
    key: int
    n: int
    nloc: int

    def to_grid(self, x):
        """This rank's local block-cyclic matrix of the row shard x, column-major (the FFI
        buffer: shape (local columns, lld))."""
        return _grid2d.rows_to_grid(x, self.g.tb, self.axis).T

    def to_rows(self, y):
        """The inverse of ``to_grid``: this rank's row shard."""
        return _grid2d.grid_to_rows(y.T, self.g.tb, self.axis, self.nloc, self.n)

    def rhs_to_grid(self, b):
        """This rank's blocks of the replicated N x k ``b`` (mb x k blocks, grid column 0),
        column-major (k, lld); cut from its own copy."""
        bp = jnp.concatenate([b, jnp.zeros((1, b.shape[1]), b.dtype)])
        return bp[jnp.asarray(self.g.rows)[self.me]].T

    def rhs_from_grid(self, x_loc):
        """The replicated solution from every rank's blocks (one psum)."""
        col0 = jnp.asarray(self.g.col0)[self.me]
        part = jnp.zeros((self.n + 1, x_loc.shape[0]), x_loc.dtype).at[
            jnp.asarray(self.g.rows)[self.me]].set(jnp.where(col0, x_loc.T, 0))
        return jax.lax.psum(part[:self.n], self.axis)

    def call(self, name, shapes, args, aliases, **attrs):
        """The FFI call ``name`` with the group, order and blocks attributes."""
        lay = self.g.lay
        common = dict(group=self.key, n=self.n, mb=lay.mb, nb=lay.nb)
        return jax.ffi.ffi_call(name, shapes, input_output_aliases=aliases)(
            *args, **{k: np.int64(v) for k, v in {**common, **attrs}.items()})

    def local(self, dtype):
        return jax.ShapeDtypeStruct((self.g.tb.nloc, self.g.tb.mloc), dtype)

    def status(self, info):
        """(failed on any rank, info[1]) from this rank's cuSOLVERMp info."""
        bad = jax.lax.pmax(info[0], self.axis)
        return bad != 0, jnp.reshape(bad, (1,)).astype(jnp.int32)


def _body(geo, row_axes, key, grid) -> _Body:
    axis = axis_of(row_axes)
    g = _grid(geo.n, geo.ndev, grid[0], grid[1], block(geo.nloc))
    return _Body(g, axis, jax.lax.axis_index(axis), key, geo.n, geo.nloc)


_INFO2 = jax.ShapeDtypeStruct((2,), jnp.int32)
_INFO1 = jax.ShapeDtypeStruct((1,), jnp.int32)


def potrs(a_loc, b, *, geo, row_axes, group_axes, key, grid, keep_factor=False):
    """Factor and solve: (x, info[1]) (+ this rank's rows of the factor's matrix with
    ``keep_factor``: the 2D local blocks are moved back)."""
    c = _body(geo, row_axes, key, grid)
    nrhs = b.shape[1]
    a_out, x_loc, info = c.call(
        "jaxmg_dist_potrs",
        (c.local(a_loc.dtype), jax.ShapeDtypeStruct((nrhs, c.g.tb.mloc), b.dtype), _INFO2),
        (c.to_grid(a_loc), c.rhs_to_grid(b)), {0: 0, 1: 1},
        nrhs=nrhs, nbb=max(nrhs, 1), solve=nrhs > 0, factor=1)
    bad, info1 = c.status(info)
    x = nan_where(bad, c.rhs_from_grid(x_loc))
    if keep_factor:
        return x, info1, nan_where(bad, c.to_rows(a_out))
    return x, info1


def _eye_local(c, dtype):
    """This rank's local blocks of the N x N identity, laid out like A (column-major)."""
    rows = jnp.asarray(c.g.rows)[c.me]
    cols = jnp.asarray(c.g.cols)[c.me]
    return (rows[:, None] == cols[None, :]).astype(dtype).T


# A factor kept between calls (``linalg.cho_factor``, the derivative rules) is L in the lower
# triangle of this rank's rows of an N x N matrix sharded by rows, as the factorization moved
# it back (what is above the diagonal is not read): the ops of a factor take it to the 2D
# layout again (one all_to_all, about 1/P of the shard stays) and call Potrs alone.

def potrf(a_loc, *, geo, row_axes, group_axes, key, grid):
    """The Cholesky factor: (this rank's rows of L (lower triangle), info[1]); NaN on
    failure."""
    c = _body(geo, row_axes, key, grid)
    a_out, _, info = c.call(
        "jaxmg_dist_potrs",
        (c.local(a_loc.dtype), jax.ShapeDtypeStruct((0, c.g.tb.mloc), a_loc.dtype), _INFO2),
        (c.to_grid(a_loc), jnp.zeros((0, c.g.tb.mloc), a_loc.dtype)), {0: 0, 1: 1},
        nrhs=0, nbb=1, solve=0, factor=1)
    bad, info1 = c.status(info)
    return nan_where(bad, c.to_rows(a_out)), info1


def _potrs_with(c, fac_loc, b_t, nrhs, nbb, shape):
    _, x_loc, _ = c.call(
        "jaxmg_dist_potrs", (c.local(fac_loc.dtype), shape, _INFO2), (c.to_grid(fac_loc), b_t),
        {0: 0, 1: 1}, nrhs=nrhs, nbb=nbb, solve=1, factor=0)
    return x_loc


def solve(fac_loc, b, *, geo, row_axes, group_axes, key, grid):
    """x = A⁻¹ b from the factor (b: N x k, replicated; x replicated)."""
    c = _body(geo, row_axes, key, grid)
    nrhs = b.shape[1]
    x_loc = _potrs_with(c, fac_loc, c.rhs_to_grid(b), nrhs, max(nrhs, 1),
                        jax.ShapeDtypeStruct((nrhs, c.g.tb.mloc), b.dtype))
    return c.rhs_from_grid(x_loc)


def inverse(fac_loc, *, geo, row_axes, group_axes, key, grid):
    """This rank's rows of A⁻¹ from the factor: Potrs with B = I laid out like A."""
    c = _body(geo, row_axes, key, grid)
    x_loc = _potrs_with(c, fac_loc, _eye_local(c, fac_loc.dtype), geo.n, c.g.lay.nb,
                        c.local(fac_loc.dtype))
    return c.to_rows(x_loc)


def logdet(fac_loc, *, geo, row_axes, group_axes, key, grid):
    """log det A = 2 Σ log L_ii, from the diagonal entries in this rank's rows."""
    axis = axis_of(row_axes)
    nloc = fac_loc.shape[0]
    i = jnp.arange(nloc)
    diag = fac_loc[i, jax.lax.axis_index(axis) * nloc + i]
    return jax.lax.psum(2 * jnp.sum(jnp.log(jnp.real(diag))), axis)


def potri(a_loc, *, geo, row_axes, group_axes, key, grid):
    """The inverse: this rank's rows of inv(A), info[1]. One factorization and one solve
    with B = I laid out like A (N x N in the same blocks; memory O(N² / P) per rank)."""
    c = _body(geo, row_axes, key, grid)
    _, x_loc, info = c.call(
        "jaxmg_dist_potrs", (c.local(a_loc.dtype), c.local(a_loc.dtype), _INFO2),
        (c.to_grid(a_loc), _eye_local(c, a_loc.dtype)), {0: 0, 1: 1}, nrhs=geo.n,
        nbb=c.g.lay.nb, solve=1, factor=1)
    bad, info1 = c.status(info)
    return nan_where(bad, c.to_rows(x_loc)), info1


def syevd(a_loc, *, geo, row_axes, group_axes, key, grid, vectors=True):
    """Eigenvalues (replicated) and this rank's rows of the eigenvectors: (w, V rows or None,
    info[1])."""
    c = _body(geo, row_axes, key, grid)
    real = jnp.finfo(a_loc.dtype).dtype
    _, v, w, info = c.call(
        "jaxmg_dist_syevd",
        (c.local(a_loc.dtype), c.local(a_loc.dtype), jax.ShapeDtypeStruct((geo.n,), real),
         _INFO1), (c.to_grid(a_loc),), {0: 0}, vectors=bool(vectors))
    bad, info1 = c.status(info)
    w = nan_where(bad, w)
    if not vectors:
        return w, None, info1
    return w, nan_where(bad, c.to_rows(v)), info1


def solve_gen(a_loc, b, *, geo, row_axes, key, grid, transposed=False):
    """A x = b for a general A (LU with partial pivoting, Getrf + Getrs): (x, info[1]),
    x replicated; info = the first exactly zero pivot of U (x NaN then). ``transposed``:
    Aᵀ x = b (A's rows exchanged into Aᵀ's first, one all_to_all)."""
    if transposed:
        a_loc = transpose_rows(a_loc, axis_of(row_axes), geo.ndev)
    c = _body(geo, row_axes, key, grid)
    nrhs = b.shape[1]
    _, x_loc, info = c.call(
        "jaxmg_dist_getrs",
        (c.local(a_loc.dtype), jax.ShapeDtypeStruct((nrhs, c.g.tb.mloc), b.dtype), _INFO2),
        (c.to_grid(a_loc), c.rhs_to_grid(b)), {0: 0, 1: 1}, nrhs=nrhs, nbb=nrhs)
    bad, info1 = c.status(info)
    return nan_where(bad, c.rhs_from_grid(x_loc)), info1


def eigh_gen(a_loc, b_loc, *, geo, row_axes, key, grid, vectors=True):
    """A v = λ B v (Sygvd, type 1): (w, this rank's rows of V or None, info[1]); V
    B-orthonormal, info = N + k when B's leading minor of order k is not positive
    definite (outputs NaN then)."""
    c = _body(geo, row_axes, key, grid)
    real = jnp.finfo(a_loc.dtype).dtype
    loc = c.local(a_loc.dtype)
    _, _, z, w, info = c.call(
        "jaxmg_dist_sygvd", (loc, loc, loc, jax.ShapeDtypeStruct((geo.n,), real), _INFO1),
        (c.to_grid(a_loc), c.to_grid(b_loc)), {0: 0, 1: 1}, vectors=bool(vectors))
    bad, info1 = c.status(info)
    w = nan_where(bad, w)
    if not vectors:
        return w, info1
    return w, nan_where(bad, c.to_rows(z)), info1


# name -> (body, input kinds, output kinds): "rows" sharded by rows, "rep" replicated
GENERAL = {
    "solve_gen": (solve_gen, ("rows", "rep"), ("rep", "rep")),
    "solve_gen_t": (functools.partial(solve_gen, transposed=True), ("rows", "rep"),
                    ("rep", "rep")),
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


def qr(a_loc, *, m, n, row_axes, key, grid):
    """A = Q R of the m x n A (m >= n; Geqrf + Orgqr): (this rank's rows of Q, R (n x n,
    replicated: each rank scatters the entries it holds, one psum), info[1]); NaN on
    failure."""
    axis = axis_of(row_axes)
    nloc = a_loc.shape[0]
    g = _grid(m, m // nloc, grid[0], grid[1], block(nloc), n)
    c = _Body(g, axis, jax.lax.axis_index(axis), key, n, nloc)
    loc = c.local(a_loc.dtype)
    q_loc, r_loc, info = c.call("jaxmg_dist_qr", (loc, loc, _INFO1), (c.to_grid(a_loc),),
                                {0: 0}, m=m)
    bad, info1 = c.status(info)
    gi = jnp.asarray(g.rows)[c.me][:, None]
    gj = jnp.asarray(g.cols)[c.me][None, :]
    keep = (gi < n) & (gj >= 0) & (gi <= gj)
    r = jnp.zeros((n + 1, n + 1), a_loc.dtype).at[jnp.where(keep, gi, n), jnp.where(keep, gj, n)]
    r = jax.lax.psum(r.set(jnp.where(keep, r_loc.T, 0)), axis)[:n, :n]
    return nan_where(bad, c.to_rows(q_loc)), nan_where(bad, r), info1


@functools.lru_cache(maxsize=64)
def qr_program(place, m: int, n: int):
    """The jitted program of ``qr`` over ``place``: (Q rows, R, info[1]) of an m x n A
    sharded by rows, m a multiple of the row devices."""
    geo = Geometry(m, place.ndev, m // place.ndev)
    kw = prepare("qr", place, geo)
    fn = functools.partial(qr, m=m, n=n, row_axes=place.row_axes, **kw)
    return jax.jit(_spmd.shard_map(fn, place.mesh, (place.spec,), (place.spec, P(), P())))


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
    bodies={"potrs": potrs, "potri": potri, "syevd": syevd, "potrf": potrf, "solve": solve,
            "inverse": inverse, "logdet": logdet},
    summary="cuSOLVERMp over every GPU of the mesh, one rank per GPU, any number of processes",
    check=refuses,
    prepare=prepare,
)
