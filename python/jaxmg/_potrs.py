"""Cholesky solve: ``potrs`` (cuSOLVERMg ``cusolverMgPotrf`` + ``cusolverMgPotrs`` on GPUs, a
distributed tiled LAPACK Cholesky on CPU devices)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from . import _cholesky, _core, _engine, _ffi, _mesh, _mpmd, _rules, _split
from ._geometry import (
    Geometry, from_solver_rows, pad_shard, to_solver_rows, unpad_info, unpad_shard,
)


def _conj(x):
    """The shard read column-major is conj(A): solve conj(A) conj(x) = conj(b)."""
    return jnp.conj(x) if jnp.iscomplexobj(x) else x


def potrs_local(a_loc, b, geo: Geometry, row_axes, group_axes, keep_factor=False):
    """Per-device body: returns (x, info[1]); x replicated, N x k. With ``keep_factor`` also
    the shard overwritten by the factor (an output that a donated ``a`` can alias)."""
    dtype = a_loc.dtype
    ids = _core.mesh_ids(row_axes, group_axes)
    a_p = pad_shard(a_loc, geo, ids[1])
    c = _conj(to_solver_rows(b, geo))
    k = b.shape[1]
    a_out, xt, info = _core.call(
        "jaxmg_potrs",
        (
            jax.ShapeDtypeStruct(a_p.shape, dtype),
            jax.ShapeDtypeStruct((k, geo.n_pad), dtype),
            jax.ShapeDtypeStruct((1,), jnp.int32),
        ),
        (a_p, c.T, ids),
        geo,
        aliases={0: 0},
        axes=(row_axes, group_axes),
    )
    x, info = from_solver_rows(_conj(xt.T), geo), unpad_info(info, geo)
    return (x, info, unpad_shard(a_out, geo)) if keep_factor else (x, info)


potrf_local = _cholesky.potrf_local
solve_local = _cholesky.solve_local


def exact_info(failed, a_loc, geo: Geometry, row_axes, group_axes):
    """LAPACK info of the single engine: 0, or on failure (the same branch on every device)
    the exact failing pivot from the distributed factorization."""
    return jax.lax.cond(
        failed,
        lambda a: potrf_local(a, geo, row_axes, group_axes)[1],
        lambda a: jnp.zeros((1,), jnp.int32),
        a_loc,
    )


def potrs_single(a_loc, b, geo: Geometry, row_axes, group_axes, keep_factor=False):
    """Per-device body of the single engine (see _engine.py): (x, info[1])."""
    a = _engine.gather(a_loc, row_axes)
    L = _engine.cholesky(a)
    failed = _engine.agree_failed(_engine.diag_failed(L), row_axes)
    tri = jax.lax.linalg.triangular_solve
    y = tri(L, b, left_side=True, lower=True)
    x = tri(L, y, left_side=True, lower=True, transpose_a=True, conjugate_a=True)
    x = jnp.where(failed, jnp.full_like(x, jnp.nan), x)
    info = exact_info(failed, a_loc, geo, row_axes, group_axes)
    return (x, info, a_loc) if keep_factor else (x, info)


def potrs_whole(a_loc, b, geo: Geometry, row_axes, group_axes, keep_factor=False,
                platform="gpu"):
    """Per-device body of the single engine when the mesh lives in this process: one jaxmg
    call (``JAXMG_OP_POTRS_WHOLE``) in which position 0 copies from its peers only the part of
    the matrix a lower Cholesky reads (N²/8 elements from the other device on 2 GPUs, against
    N²/2 for an all-gather), factors and solves alone (cuSOLVERDn on GPUs, LAPACK on CPU
    devices) and the others copy x and info from it. info is LAPACK's (the exact pivot); on
    failure x is NaN. Memory: N x N on position 0 only. Computes in
    ``_engine.potrs_compute_dtype`` (float32 in float64 on GPUs for 8192 <= N <= 16384: faster there).
    (x, info[1])."""
    dtype = a_loc.dtype
    wide = _engine.potrs_compute_dtype(platform, geo.n, dtype)
    ids = _core.mesh_ids(row_axes, group_axes)
    k = b.shape[1]
    xt, info = _core.call(
        "jaxmg_potrs_whole",
        (jax.ShapeDtypeStruct((k, geo.n), wide), jax.ShapeDtypeStruct((1,), jnp.int32)),
        (a_loc.astype(wide), _conj(b).T.astype(wide), ids),
        geo.whole,
        axes=(row_axes, group_axes),
    )
    x = _conj(xt.T).astype(dtype)
    x = jnp.where(info[0] > 0, jnp.full_like(x, jnp.nan), x)
    return (x, info, a_loc) if keep_factor else (x, info)


# The single engine's potrs gathers with potrs_whole (one jaxmg call) when the mesh lives in
# this process and this is True; else (or across processes) with an all-gather and XLA's
# solvers (potrs_single). Kept switchable for bench/diag_potrs_whole.py.
USE_WHOLE = True

# The single engine's potrs on exactly two devices runs potrs_pair (below) instead of
# gather + Cholesky when this is True. Off: measured on 2 H200 it is no faster than the
# gather in float64 (bench/diag_potrs_pair.py, docs/benchmarks.md); kept, tested, for the
# diagnostic and for GPUs with slower links.
USE_PAIR = False
PAIR_BLOCKS = 2  # block rows of the Schur complement formed (only its lower block triangle)
PAIR_FIRST = None  # rows factored before the transfer is needed (None: all of the own block)


def potrs_pair(a_loc, b, geo: Geometry, row_axes, group_axes, keep_factor=False,
               blocks=None, first=None):
    """The single engine's ``potrs`` on exactly two devices, with half the transfer and the
    transfer overlapping the first part of the factorization.

    Device r holds rows [r h, (r + 1) h) of A (h = N / 2): its diagonal block A_rr and the
    off-diagonal block A_ro. Each device factors A with its own rows first, i.e. the
    symmetric permutation M = [A_rr A_ro; A_or A_oo] (no data moves for that). With the
    first k = ``first`` rows of M as the leading block: L1 = chol(M[:k, :k]),
    W = L1^-1 M[:k, k:], S = M[k:, k:] - W^H W, L2 = chol(S). Only A_oo, the other device's
    diagonal block (N^2 / 4 elements, half of what an all-gather moves), crosses between the
    devices, and nothing needs it before S is formed: it travels (one ``ppermute``) while
    L1, W and W^H W are computed. M[k:, k:] is read from the own rows (A_or = A_ro^H) and
    A_oo. The solve follows the same order; each device keeps the half of x that belongs to
    its own rows and one all-gather of N x k elements makes x, identical on both devices.
    Both devices do the whole factorization (as the single engine does): the same wall time
    as one doing it and broadcasting, and no broadcast. Only the lower block triangle of
    W^H W is formed (``blocks`` block rows).

    Reads the lower triangles of A_rr and A_oo and all of A_ro; ``info`` as the single
    engine (agreed failure, exact pivot recomputed by the distributed factorization)."""
    if geo.ndev != 2 or 2 * geo.nloc != geo.n:
        raise ValueError(f"potrs_pair needs exactly 2 devices, got {geo.ndev}")
    blocks = max(1, int(PAIR_BLOCKS if blocks is None else blocks))
    h, n = geo.nloc, geo.n
    k = h if first is None else max(1, min(int(first), h))
    m = n - k
    axis = _engine._axis(row_axes)
    r = jax.lax.axis_index(axis)
    o = 1 - r
    own = jax.lax.dynamic_slice_in_dim(a_loc, r * h, h, axis=1)
    off = jax.lax.dynamic_slice_in_dim(a_loc, o * h, h, axis=1)
    other = jax.lax.ppermute(own, axis, [(0, 1), (1, 0)])
    tri = jax.lax.linalg.triangular_solve
    conj = jnp.conj if jnp.iscomplexobj(a_loc) else (lambda x: x)
    hi = jax.lax.Precision.HIGHEST

    def hdot(x, y):  # x^H y, contracting the rows of both (no transpose materialized)
        return jax.lax.dot_general(conj(x), y, (((0,), (0,)), ((), ())), precision=hi)

    L1 = _engine.cholesky(own[:k, :k])
    W = tri(L1, jnp.concatenate([own[:k, k:], off[:k]], axis=1), left_side=True, lower=True)
    # M[k:, k:], lower block triangle: [A_rr[k:, k:] 0; A_or[:, k:] A_oo] with A_or = A_ro^H
    top = jnp.pad(own[k:, k:], ((0, 0), (0, h)))
    bottom = jnp.concatenate([conj(off[k:]).T, other], axis=1)
    T = jnp.concatenate([top, bottom], axis=0) if k < h else other
    bounds = [(i * m) // blocks for i in range(blocks + 1)]
    rows = []
    for r0, r1 in zip(bounds[:-1], bounds[1:]):
        s = T[r0:r1, :r1] - hdot(W[:, r0:r1], W[:, :r1])
        rows.append(jnp.pad(s, ((0, 0), (0, m - r1))))
    L2 = _engine.cholesky(jnp.concatenate(rows, axis=0))
    b_r = jax.lax.dynamic_slice_in_dim(b, r * h, h, axis=0)
    b_o = jax.lax.dynamic_slice_in_dim(b, o * h, h, axis=0)
    bm = jnp.concatenate([b_r, b_o], axis=0)
    y1 = tri(L1, bm[:k], left_side=True, lower=True)
    y2 = tri(L2, bm[k:] - hdot(W, y1), left_side=True, lower=True)
    x2 = tri(L2, y2, left_side=True, lower=True, transpose_a=True, conjugate_a=True)
    x1 = tri(L1, y1 - jnp.matmul(W, x2, precision=hi), left_side=True, lower=True,
             transpose_a=True, conjugate_a=True)
    x_r = jnp.concatenate([x1, x2[: h - k]], axis=0)
    x = _engine.gather(x_r, row_axes)
    failed = _engine.agree_failed(_engine.diag_failed(L1) | _engine.diag_failed(L2), row_axes)
    x = jnp.where(failed, jnp.full_like(x, jnp.nan), x)
    info = exact_info(failed, a_loc, geo, row_axes, group_axes)
    return (x, info, a_loc) if keep_factor else (x, info)


@functools.lru_cache(maxsize=256)
def _program(place: _mesh.Placement, geo: Geometry, donate: bool, timeout: float,
             engine: str = "mg"):
    del timeout  # part of the cache key: read by _core.call at trace time
    # A donated input is only reused when an output can alias it: with donate, the factor
    # comes out too (and is dropped), so the solver works in the caller's buffer.
    if USE_PAIR and geo.ndev == 2:
        single = functools.partial(potrs_pair, first=PAIR_FIRST)
    elif USE_WHOLE and _mpmd.in_this_process(place.mesh):
        single = functools.partial(potrs_whole, platform=place.platform)
    else:
        single = potrs_single
    local = {"single": single, "split": _split.potrs_split}.get(engine, potrs_local)
    body = functools.partial(
        local, geo=geo,
        row_axes=place.row_axes, group_axes=place.group_axes, keep_factor=donate,
    )
    replicated = jax.sharding.PartitionSpec()
    out_specs = (replicated, replicated) + ((place.spec,) if donate else ())
    fn = _core.shard_map(
        body, place.mesh, in_specs=(place.spec, replicated), out_specs=out_specs,
    )
    return jax.jit(fn, donate_argnums=(0,) if donate else ())


@functools.lru_cache(maxsize=256)
def _differentiable(place: _mesh.Placement, geo: Geometry, donate: bool, timeout: float,
                    engine: str = "mg"):
    """``(a, b) -> (x, info[1])``, differentiable w.r.t. both (forward and reverse, any order).

    Undifferentiated, it is the fused program (one ``potrs`` call, ``donate`` honoured);
    under ``vmap`` with only ``b`` batched still one call, the batch as columns. Its
    JVP factors A once (``potrf``) and runs the solves with that factor through
    ``custom_linear_solve`` (``_rules.solve``): x and dx = A⁻¹ (db − dA x) cost one
    factorization and two solves; the reverse mode reuses the same factor for
    b̄ = A⁻ᵀ x̄ and forms Ā = −b̄ xᵀ row by row."""

    def call(a, b):
        x, info = _program(place, geo, donate, timeout, engine)(a, b)[:2]
        return x, info

    fused = _cholesky.columns_vmap(call, geo.n)

    @jax.custom_jvp
    def solve(a, b):
        return fused(a, b)

    @solve.defjvp
    def _jvp(primals, tangents):
        a, b = primals
        fac, info = _rules.factor(place, geo, a)
        x, dx = jax.jvp(lambda a, b: _rules.solve(place, geo, fac, a, b), (a, b), tangents)
        return (x, info), (dx, _rules.float0_like(info))

    return solve


def potrs(a, b, T_A=None, mesh=None, in_specs=None, return_status=False, pad=True, *,
          donate=False, engine="auto"):
    """Solves A x = b for Hermitian positive definite A sharded by rows over several devices.

    The math: A = L L^H (Cholesky, in the 1D block-cyclic layout with tile ``T_A``), then
    x = L^-H L^-1 b. On GPUs this is cuSOLVERMg's ``potrf`` + ``potrs``; on CPU devices a
    distributed tiled Cholesky over LAPACK kernels.

    Args:
      a: N x N Hermitian positive definite matrix, sharded by rows (``P('x', None)``).
        Only Hermitian inputs are meaningful: which entries are read depends on the layout.
      b: right-hand side, N or N x k (any k), replicated (resharded if it is not).
      T_A: tile size; default: the largest divisor of the shard up to 256 (CPU), or on GPUs
        up to 2048 for shards of 4096 rows or more and 1024 below (measured fastest). A tile
        that does not divide the shard is padded when ``pad`` is True.
      mesh, in_specs: the mesh and ``(P(row_axes, None), P(None, None))`` as in the seeds;
        inferred from ``a.sharding`` when omitted. Mesh axes that do not shard the rows
        replicate the problem: each replica group solves it independently.
      return_status: also return LAPACK's ``info`` (int32 scalar): 0 on success, k > 0 when
        elimination broke down at the pivot of original row k (1-based); equal to the leading
        minor of LAPACK whenever the failure is caused by that row.
      pad: pad shards that ``T_A`` does not divide (identity padding), else raise.
      donate: let the call reuse the buffer of ``a`` (``a`` is deleted).
      engine: ``"auto"`` (default), ``"mg"`` (the distributed backend: cuSOLVERMg on GPUs,
        tiled LAPACK on CPU devices; O(N^2 / ndev) memory per device), ``"single"`` (the
        first device gathers what a Cholesky reads and solves alone with cuSOLVER / LAPACK,
        the others receive x; O(N^2) on that device) or ``"split"`` (2 devices only: a two-device Cholesky without a gather;
        opt-in, see docs/design.md). ``"auto"``: ``"mg"`` on CPU devices; on GPUs
        ``"single"`` when the matrix fits one device comfortably and either one device holds
        it or N is below the measured crossover (20480 for float64, 16384 float32, 12288
        complex64, 8192 complex128; ``_engine.POTRS_MG_MIN_N``), else ``"mg"``. On GPUs the
        single engine solves float32 problems with 8192 <= N <= 16384 in float64 (faster
        there on an H200; x is rounded to float32 once) when float64 is enabled.

    Returns:
      x with the shape of ``b``, replicated; ``(x, info)`` with ``return_status``. On a
      numerical failure x is NaN and info > 0, on every device.

    Differentiable w.r.t. ``a`` and ``b`` (forward and reverse, any order; as
    ``jnp.linalg.solve``: dx = A⁻¹(db − dA x), Ā = −b̄ xᵀ) with one factorization, and
    batched by ``vmap`` (one call per element). See docs/ops/potrs.md.
    """
    dtype = _core.check_matrix(a, "potrs")
    if not isinstance(a, jax.Array):
        a = jnp.asarray(a)  # a NumPy array runs on the default device
    n = a.shape[0]
    b2, vector = _core.check_rhs(b, n, dtype, "potrs", expand=False)
    place = _mesh.resolve(a, mesh, in_specs, "potrs")
    _core.check_split(n, place.ndev, "potrs")
    tile = _core.choose_tile(T_A, n // place.ndev, place.platform, pad, "potrs")
    _ffi.ensure_registered(place.platform)
    geo = Geometry(n, place.ndev, tile)
    a = _mesh.place(a, jax.sharding.NamedSharding(place.mesh, place.spec))
    b2 = _mesh.place(b2, jax.sharding.NamedSharding(place.mesh, jax.sharding.PartitionSpec()))
    eng = _engine.choose(engine, "potrs", place, n, dtype)
    fn = _differentiable(place, geo, bool(donate), _core.get_timeout(), eng)
    x, info = _core.run_entry(fn, bool(donate), (a, b2), vector=vector,
                               platform=place.platform)
    return (x, info) if return_status else x


def potrs_shardmap_ctx(a, b, T_A=None, pad=True, *, axis_name=None):
    """``potrs`` inside the caller's own ``jax.shard_map``.

    ``a`` is this device's shard (N/ndev x N) of the row-sharded matrix, ``b`` the replicated
    right-hand side (N or N x k). ``axis_name`` names the mesh axis (or tuple of axes) the
    rows are sharded over; it may be omitted when only one axis of the mesh has more than
    one device. Returns ``(x, status)`` with x replicated and status an int32 array of shape
    (1,) holding LAPACK's info. Use ``check_vma=False`` on the enclosing shard_map.
    """
    rows, groups, geo = _core.context_plan(a, T_A, pad, axis_name, "potrs")
    b2, vector = _core.check_rhs(b, geo.n, jnp.dtype(a.dtype), "potrs_shardmap_ctx")
    x, info = potrs_local(a, b2, geo, rows, groups)
    return (x[:, 0] if vector else x), info
