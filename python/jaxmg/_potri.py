"""Inverse of a Hermitian positive definite matrix: ``potri`` (cuSOLVERMg ``cusolverMgPotrf`` +
``cusolverMgPotri`` on GPUs, a distributed tiled LAPACK Cholesky and solve on CPU devices)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P

from . import _core, _mesh, _rules
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
    )
    return unpad_shard(inv, geo), unpad_info(info, geo)


@functools.lru_cache(maxsize=256)
def _program(place: _mesh.Placement, geo: Geometry, donate: bool, timeout: float):
    del timeout  # part of the cache key: read by _core.call at trace time
    body = functools.partial(
        potri_local, geo=geo, row_axes=place.row_axes, group_axes=place.group_axes
    )
    fn = _core.shard_map(body, place.mesh, in_specs=(place.spec,), out_specs=(place.spec, P()))
    return jax.jit(fn, donate_argnums=(0,) if donate else ())


@functools.lru_cache(maxsize=256)
def _differentiable(place: _mesh.Placement, geo: Geometry, donate: bool, timeout: float):
    """``a -> (inv(A), info[1])``, differentiable (forward and reverse, any order).

    Undifferentiated, the fused program. Its JVP is d(A⁻¹) = −X dA X with X = A⁻¹ from the
    same call (two ring products, ``_rules.inverse_tangent``); the reverse mode is the
    transpose of those rings, Ā = −Xᵀ X̄ Xᵀ. One factorization either way."""

    @jax.custom_jvp
    def inverse(a):
        x, info = _program(place, geo, donate, timeout)(a)
        return x, info

    @inverse.defjvp
    def _jvp(primals, tangents):
        (a,), (da,) = primals, tangents
        # The rule's primal through the non-donating twin: its result is differentiable
        # again (second derivatives), and the rule never consumes the caller's buffer.
        x, info = _differentiable(place, geo, False, timeout)(a)
        return (x, info), (_rules.inverse_tangent(place, x, da), _rules.float0_like(info))

    return inverse


def potri(a, T_A=None, mesh=None, in_specs=None, return_status=False, pad=True, *,
          donate=False):
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
      T_A: tile size; default: the largest divisor of the shard up to 256 (CPU) or 1024
        (GPU). A tile that does not divide the shard is padded when ``pad`` is True.
      mesh, in_specs: the mesh and ``P(row_axes, None)`` (or ``(P(row_axes, None),)``) as in
        the seeds; inferred from ``a.sharding`` when omitted. Mesh axes that do not shard the
        rows replicate the problem.
      return_status: also return LAPACK's ``info`` (int32 scalar): 0 on success, k > 0 when
        the Cholesky factorization broke down at the pivot of original row k (1-based).
      pad: pad shards that ``T_A`` does not divide (identity padding), else raise.
      donate: let the call reuse the buffer of ``a`` (``a`` is deleted).

    Returns:
      inv(A), N x N, sharded by rows like ``a``; ``(inv(A), info)`` with ``return_status``.
      When A is not positive definite, inv(A) is NaN and info > 0, on every device.

    Differentiable (forward and reverse, any order; d(A⁻¹) = −X dA X by distributed ring
    products, no matrix gathered) and batched by ``vmap``. See docs/ops/potri.md.
    """
    _, place, geo = _core.plan(a, T_A, mesh, in_specs, pad, "potri")
    out, info = _differentiable(place, geo, bool(donate), _core.get_timeout())(a)
    return (out, info[0]) if return_status else out


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
