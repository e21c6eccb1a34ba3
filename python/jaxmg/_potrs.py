"""Cholesky solve: ``potrs`` (cuSOLVERMg ``cusolverMgPotrf`` + ``cusolverMgPotrs`` on GPUs, a
distributed tiled LAPACK Cholesky on CPU devices)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from . import _cholesky, _core, _engine, _ffi, _mesh, _rules, _split
from ._geometry import (
    Geometry, from_solver_rows, pad_shard, to_solver_rows, unpad_info, unpad_shard,
)


def potrs_local(a_loc, b, geo: Geometry, row_axes, group_axes, keep_factor=False):
    """Per-device body: returns (x, info[1]); x replicated, N x k. With ``keep_factor`` also
    the shard overwritten by the factor (an output that a donated ``a`` can alias)."""
    dtype = a_loc.dtype
    ids = _core.mesh_ids(row_axes, group_axes)
    a_p = pad_shard(a_loc, geo, ids[1])
    c = to_solver_rows(b, geo)
    # The shard read column-major is conj(A); solve conj(A) conj(x) = conj(b).
    if jnp.iscomplexobj(c):
        c = jnp.conj(c)
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
    y = xt.T
    if jnp.iscomplexobj(y):
        y = jnp.conj(y)
    x, info = from_solver_rows(y, geo), unpad_info(info, geo)
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


@functools.lru_cache(maxsize=256)
def _program(place: _mesh.Placement, geo: Geometry, donate: bool, timeout: float,
             engine: str = "mg"):
    del timeout  # part of the cache key: read by _core.call at trace time
    # A donated input is only reused when an output can alias it: with donate, the factor
    # comes out too (and is dropped), so the solver works in the caller's buffer.
    local = {"single": potrs_single, "split": _split.potrs_split}.get(engine, potrs_local)
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
      T_A: tile size; default: the largest divisor of the shard up to 256 (CPU) or 1024
        (GPU). A tile that does not divide the shard is padded when ``pad`` is True.
      mesh, in_specs: the mesh and ``(P(row_axes, None), P(None, None))`` as in the seeds;
        inferred from ``a.sharding`` when omitted. Mesh axes that do not shard the rows
        replicate the problem: each replica group solves it independently.
      return_status: also return LAPACK's ``info`` (int32 scalar): 0 on success, k > 0 when
        elimination broke down at the pivot of original row k (1-based); equal to the leading
        minor of LAPACK whenever the failure is caused by that row.
      pad: pad shards that ``T_A`` does not divide (identity padding), else raise.
      donate: let the call reuse the buffer of ``a`` (``a`` is deleted).
      engine: ``"auto"`` (default), ``"mg"`` (the distributed backend: cuSOLVERMg on GPUs,
        tiled LAPACK on CPU devices; O(N^2 / ndev) memory per device), ``"single"`` (gather
        the matrix and solve with XLA's single-device solver on every device; O(N^2) per
        device) or ``"split"`` (2 devices only: a two-device Cholesky without a gather;
        opt-in, see docs/design.md). ``"auto"``: ``"mg"`` on CPU devices; on GPUs
        ``"single"`` when the matrix fits one device comfortably and N < 24576 or one device,
        else ``"mg"``.

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
    b2, vector = _core.check_rhs(b, n, dtype, "potrs")
    place = _mesh.resolve(a, mesh, in_specs, "potrs")
    _core.check_split(n, place.ndev, "potrs")
    tile = _core.choose_tile(T_A, n // place.ndev, place.platform, pad, "potrs")
    _ffi.ensure_registered(place.platform)
    geo = Geometry(n, place.ndev, tile)
    a = _mesh.place(a, jax.sharding.NamedSharding(place.mesh, place.spec))
    b2 = _mesh.place(b2, jax.sharding.NamedSharding(place.mesh, jax.sharding.PartitionSpec()))
    eng = _engine.choose(engine, "potrs", place, n, dtype)
    fn = _differentiable(place, geo, bool(donate), _core.get_timeout(), eng)
    x, info = _core.run_entry(fn, bool(donate), (a, b2), squeeze=vector,
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
