"""Inverse of a Hermitian positive definite matrix: ``potri`` (cuSOLVERMg ``cusolverMgPotrf`` +
``cusolverMgPotri`` on GPUs, a distributed tiled LAPACK Cholesky and solve on CPU devices)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P

from . import _core, _engine, _mesh, _rules
from ._potrs import exact_info, potrf_local, solve_local
from ._geometry import Geometry, pad_shard, unpad_info, unpad_shard


def potri_local(a_loc, geo: Geometry, row_axes, group_axes):
    """Per-device body: (this device's rows of inv(A), info[1])."""
    ids = _core.mesh_ids(row_axes, group_axes)
    a_p = pad_shard(a_loc, geo, ids[1])  # identity padding: inv(A (+) I) = inv(A) (+) I
    # The backend leaves each shard holding its own rows of inv(A) in the original order
    # (inv(M) = P^T conj(inv(A)) P read column-major, rows put back): no conjugation here.
    inv, info = _core.call(
        "jaxmg_potri",
        (jax.ShapeDtypeStruct(a_p.shape, a_loc.dtype), jax.ShapeDtypeStruct((1,), jnp.int32)),
        (a_p, ids),
        geo,
        aliases={0: 0},
        axes=(row_axes, group_axes),
    )
    return unpad_shard(inv, geo), unpad_info(info, geo)


def potri_by_solves(a_loc, geo: Geometry, row_axes, group_axes):
    """Per-device body of the distributed inverse on GPUs: one distributed factorization,
    then one distributed solve per device of the group for the identity columns of that
    device's rows (the inverse is Hermitian: rows = conj(columns)^T), each device keeping its
    own. The path through cusolverMgPotri and the completion of its triangle gave wrong
    inverses on 2 GPUs (docs/benchmarks.md), so the GPU path uses only cuSOLVERMg's
    potrf/potrs, which are tested; memory stays O(N^2 / ndev) per device."""
    rank = jax.lax.axis_index(_engine._axis(row_axes))
    f, info = potrf_local(a_loc, geo, row_axes, group_axes)

    def step(rows, j):
        e = jax.lax.dynamic_slice_in_dim(jnp.eye(geo.n, dtype=a_loc.dtype), j * geo.nloc,
                                         geo.nloc, axis=1)
        x = solve_local(f, e, geo, row_axes, group_axes)  # inv(A)[:, rows of device j]
        mine = jnp.conj(x).T if jnp.iscomplexobj(x) else x.T
        return jnp.where(rank == j, mine, rows), None

    rows, _ = jax.lax.scan(step, jnp.zeros_like(a_loc), jnp.arange(geo.ndev))
    rows = jnp.where(info[0] != 0, jnp.full_like(rows, jnp.nan), rows)
    return rows, info


def single_geometry(n: int, nloc: int, ndev: int):
    """Static plan of potri_single: (s, flips). Device j wants the identity columns
    [j*nloc, (j+1)*nloc); in the reversed matrix R A R they are [n - (j+1)*nloc, n - j*nloc).
    It takes the order in which they start later (flips[j]) and every device solves its first
    triangular system on rows [s, n) only, s = the smallest such start (the rows above it are
    zero for every device)."""
    starts = [max(j * nloc, n - (j + 1) * nloc) for j in range(ndev)]
    flips = tuple(j * nloc < n - (j + 1) * nloc for j in range(ndev))
    return min(starts), flips


def potri_single(a_loc, geo: Geometry, row_axes, group_axes):
    """Per-device body of the single engine (see _engine.py): every device factors the
    gathered matrix and solves L L^H Z = E for the identity columns of its own rows only;
    rows = conj(Z)^T.

    Cost per device beyond the factorization: Y = L^-1 E is zero above the first identity
    column, so the first solve runs on the trailing rows [s, n) only; a device whose columns
    start early factors the reversed matrix R A R instead (inv(A) = R inv(R A R) R, the same
    Cholesky cost) so that its columns start late. On 2 devices that makes the first solve
    N^3/8 instead of N^3/2 per device; the second (L^H Z = Y, full) stays N^3/2."""
    rank = jax.lax.axis_index(_engine._axis(row_axes))
    n, nloc = geo.n, geo.nloc
    s, flips = single_geometry(n, nloc, geo.ndev)
    flip = jnp.asarray(flips)[rank]
    a = _engine.gather(a_loc, row_axes)
    if any(flips):
        a = jax.lax.cond(flip, lambda x: x[::-1, ::-1], lambda x: x, a)
    L = _engine.cholesky(a)
    failed = _engine.agree_failed(_engine.diag_failed(L), row_axes)
    j0 = jnp.where(flip, n - (rank + 1) * nloc, rank * nloc)  # my first column, this order
    rows_iota = jax.lax.broadcasted_iota(jnp.int32, (n - s, nloc), 0) + s
    cols_iota = jax.lax.broadcasted_iota(jnp.int32, (n - s, nloc), 1)
    e = (rows_iota == cols_iota + j0).astype(a.dtype)  # rows [s, n) of the identity columns
    tri = jax.lax.linalg.triangular_solve
    y = tri(L[s:, s:], e, left_side=True, lower=True)
    if s:
        y = jnp.concatenate([jnp.zeros((s, nloc), a.dtype), y], axis=0)
    z = tri(L, y, left_side=True, lower=True, transpose_a=True, conjugate_a=True)
    if any(flips):
        z = jnp.where(flip, z[::-1, ::-1], z)  # columns of R inv(A) R back to those of inv(A)
    rows = jnp.conj(z).T if jnp.iscomplexobj(z) else z.T
    rows = jnp.where(failed, jnp.full_like(rows, jnp.nan), rows)
    return rows, exact_info(failed, a_loc, geo, row_axes, group_axes)


@functools.lru_cache(maxsize=256)
def _program(place: _mesh.Placement, geo: Geometry, donate: bool, timeout: float,
             engine: str = "mg"):
    del timeout  # part of the cache key: read by _core.call at trace time
    local = {"single": potri_single, "solves": potri_by_solves}.get(engine, potri_local)
    body = functools.partial(local, geo=geo, row_axes=place.row_axes, group_axes=place.group_axes)
    fn = _core.shard_map(body, place.mesh, in_specs=(place.spec,), out_specs=(place.spec, P()))
    return jax.jit(fn, donate_argnums=(0,) if donate else ())


@functools.lru_cache(maxsize=256)
def _differentiable(place: _mesh.Placement, geo: Geometry, donate: bool, timeout: float,
                    engine: str = "mg"):
    """``a -> (inv(A), info[1])``, differentiable (forward and reverse, any order).

    Undifferentiated, the fused program. Its JVP is d(A⁻¹) = −X dA X with X = A⁻¹ from the
    same call (two ring products, ``_rules.inverse_tangent``); the reverse mode is the
    transpose of those rings, Ā = −Xᵀ X̄ Xᵀ. One factorization either way."""

    @jax.custom_jvp
    def inverse(a):
        x, info = _program(place, geo, donate, timeout, engine)(a)
        return x, info

    @inverse.defjvp
    def _jvp(primals, tangents):
        (a,), (da,) = primals, tangents
        # The rule's primal through the non-donating twin: its result is differentiable
        # again (second derivatives), and the rule never consumes the caller's buffer.
        x, info = _differentiable(place, geo, False, timeout, engine)(a)
        return (x, info), (_rules.inverse_tangent(place, x, da), _rules.float0_like(info))

    return inverse


def potri(a, T_A=None, mesh=None, in_specs=None, return_status=False, pad=True, *,
          donate=False, engine="auto"):
    """Inverse of a Hermitian positive definite matrix sharded by rows over several devices.

    The math: A = L L^H (Cholesky in the 1D block-cyclic layout with tile ``T_A``), then
    inv(A) = L^-H L^-1. On GPUs this is cuSOLVERMg's ``potrf`` + ``potri``; on CPU devices a
    distributed tiled Cholesky, then each device solves for the identity columns of its own
    rows of the inverse.

    Unlike the original JAXMg, which returned one triangle and symmetrized it afterwards,
    the result is the full Hermitian inverse; ``potri_symmetrize`` is not needed.

    Args:
      a: N x N Hermitian positive definite matrix, sharded by rows (``P('x', None)``).
        Only Hermitian inputs are meaningful: which entries are read depends on the layout.
      T_A: tile size; default: the largest divisor of the shard up to 256 (CPU), or on GPUs
        up to 2048 for shards of 4096 rows or more and 1024 below (measured fastest). A tile
        that does not divide the shard is padded when ``pad`` is True.
      mesh, in_specs: the mesh and ``P(row_axes, None)`` (or ``(P(row_axes, None),)``) as in
        the seeds; inferred from ``a.sharding`` when omitted. Mesh axes that do not shard the
        rows replicate the problem.
      return_status: also return LAPACK's ``info`` (int32 scalar): 0 on success, k > 0 when
        the Cholesky factorization broke down at the pivot of original row k (1-based).
      pad: pad shards that ``T_A`` does not divide (identity padding), else raise.
      donate: let the call reuse the buffer of ``a`` (``a`` is deleted).
      engine: ``"auto"`` (default), ``"mg"`` (distributed: on GPUs cuSOLVERMg's potrf plus
        distributed solves, O(N^2 / ndev) memory per device) or ``"single"`` (gather the
        matrix; every device factors it and solves for its own rows of the inverse; O(N^2)
        per device). ``"auto"``: ``"mg"`` on CPU devices; on GPUs ``"single"`` when the
        matrix fits one device comfortably, else ``"mg"``.

    Returns:
      inv(A), N x N, sharded by rows like ``a``; ``(inv(A), info)`` with ``return_status``.
      When A is not positive definite, inv(A) is NaN and info > 0, on every device.

    Differentiable (forward and reverse, any order; d(A⁻¹) = −X dA X by distributed ring
    products, no matrix gathered) and batched by ``vmap``. See docs/ops/potri.md.
    """
    dtype, place, geo = _core.plan(a, T_A, mesh, in_specs, pad, "potri")
    a = _mesh.place(a, jax.sharding.NamedSharding(place.mesh, place.spec))
    eng = _engine.choose(engine, "potri", place, geo.n, dtype)
    if eng == "mg" and place.platform != "cpu":
        eng = "solves"  # cuSOLVERMg's potri is not used: see potri_by_solves
    fn = _differentiable(place, geo, bool(donate), _core.get_timeout(), eng)
    out, info = _core.run_entry(fn, bool(donate), (a,), platform=place.platform)
    return (out, info) if return_status else out


def potri_shardmap_ctx(a, T_A=None, pad=True, *, axis_name=None):
    """``potri`` inside the caller's own ``jax.shard_map``.

    ``a`` is this device's shard (N/ndev x N) of the row-sharded Hermitian positive definite
    matrix; ``axis_name`` names the mesh axis (or tuple of axes) the rows are sharded over
    and may be omitted when only one axis of the mesh has more than one device. Returns
    ``(inv_local, status)``: this device's rows of the full inverse (same shape as ``a``,
    so ``out_specs=P(axis, None)`` assembles inv(A); no symmetrization needed) and an int32
    array of shape (1,) holding LAPACK's info. Use ``check_vma=False`` on the enclosing
    shard_map.
    """
    rows, groups, geo = _core.context_plan(a, T_A, pad, axis_name, "potri")
    return potri_local(a, geo, rows, groups)


@jax.jit
def _symmetrize(a):
    upper = jnp.triu(a, 1)
    d = jnp.diagonal(a)
    if jnp.iscomplexobj(a):
        d = jnp.real(d).astype(a.dtype)
    return upper + jnp.conj(upper).T + jnp.diag(d)


def potri_symmetrize(a):
    """The Hermitian matrix whose upper triangle is that of ``a`` (the real part of the
    diagonal is kept): the seeds' helper for the triangle that cuSOLVERMg's potri fills.

    jaxmg's ``potri`` and ``potri_shardmap_ctx`` already return the full inverse, so this is
    only needed for code written against the original JAXMg; on a Hermitian input it returns
    the input. Unlike the original, it does not donate (delete) its argument.
    """
    shape = getattr(a, "shape", None)
    if shape is None or len(shape) != 2 or shape[0] != shape[1]:
        raise ValueError(f"jaxmg.potri_symmetrize: 'a' must be a square matrix, got shape {shape}")
    return _symmetrize(a)
