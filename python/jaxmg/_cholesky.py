"""The Cholesky factor as an array of its own: ``potrf`` alone (target ``jaxmg_potrf``), solves
with a kept factor (``jaxmg_solve``), log det from its diagonal, and the inverse from the
factor. Shared by ``jaxmg.linalg`` and by the derivative rules, which reuse the primal's
factorization for the tangents."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P

from . import _core, _mesh
from ._dist import axis_of
from ._geometry import Geometry, from_solver_rows, pad_shard, to_solver_rows, unpad_info


def potrf_local(a_loc, geo: Geometry, row_axes, group_axes):
    """Per-device body: (this device's padded shard of the factor, info[1])."""
    ids = _core.mesh_ids(row_axes, group_axes)
    a_p = pad_shard(a_loc, geo, ids[1])
    f, info = _core.call(
        "jaxmg_potrf",
        (jax.ShapeDtypeStruct(a_p.shape, a_loc.dtype), jax.ShapeDtypeStruct((1,), jnp.int32)),
        (a_p, ids),
        geo,
        aliases={0: 0},
        axes=(row_axes, group_axes),
    )
    return f, unpad_info(info, geo)


def solve_local(f_loc, b, geo: Geometry, row_axes, group_axes):
    """Per-device body: the replicated solution (N x k) of A x = b from the factor of A."""
    ids = _core.mesh_ids(row_axes, group_axes)
    c = to_solver_rows(b, geo)
    if jnp.iscomplexobj(c):  # the shards read column-major hold conj(A)
        c = jnp.conj(c)
    xt, _ = _core.call(
        "jaxmg_solve",
        (
            jax.ShapeDtypeStruct((b.shape[1], geo.n_pad), b.dtype),
            jax.ShapeDtypeStruct((1,), jnp.int32),
        ),
        (f_loc, c.T, ids),
        geo,
        axes=(row_axes, group_axes),
    )
    y = xt.T
    if jnp.iscomplexobj(y):
        y = jnp.conj(y)
    return from_solver_rows(y, geo)


def inverse_local(f_loc, geo: Geometry, row_axes, group_axes):
    """Per-device body: this device's rows of inv(A) from the factor of A (no new
    factorization). ndev solves, one per row block j, each with the nloc identity columns of
    block j as right-hand sides; A⁻¹ is Hermitian, so the solution (column block j) read
    conjugate-transposed is row block j, which device j keeps. A loop, so that only one
    N x nloc block of right-hand sides and solutions lives at a time."""
    n, nloc = geo.n, geo.nloc
    rank = jax.lax.axis_index(axis_of(row_axes))
    rows = jnp.arange(n)[:, None]

    def block(j, x_loc):
        e = (rows == j * nloc + jnp.arange(nloc)[None, :]).astype(f_loc.dtype)
        y = solve_local(f_loc, e, geo, row_axes, group_axes)
        y = jnp.conj(y).T if jnp.iscomplexobj(y) else y.T
        return jnp.where(rank == j, y, x_loc)

    return jax.lax.fori_loop(0, geo.ndev, block, jnp.zeros((nloc, n), f_loc.dtype))


def diag_log_local(f_loc, geo: Geometry, row_axes):
    """sum over the whole matrix of log(diag(L)), from this device's shard of the factor.

    Local row c of device d is solver column g = ((c/T) ndev + d) T + c mod T; its diagonal
    entry is element g of that row. Each diagonal entry lives on exactly one device."""
    axis = axis_of(row_axes)
    d = jax.lax.axis_index(axis)
    c = jnp.arange(geo.nloc_pad)
    g = ((c // geo.tile) * geo.ndev + d) * geo.tile + c % geo.tile
    diag = jnp.take_along_axis(f_loc, g[:, None], axis=1)[:, 0]
    # Padding rows hold 1 on the diagonal of the factor: log 1 = 0.
    part = jnp.sum(jnp.log(jnp.real(diag)))
    return jax.lax.psum(part, axis)


@functools.lru_cache(maxsize=256)
def factor_program(place: _mesh.Placement, geo: Geometry, donate: bool, timeout: float):
    del timeout  # part of the cache key: read by _core.call at trace time
    body = functools.partial(
        potrf_local, geo=geo, row_axes=place.row_axes, group_axes=place.group_axes
    )
    fn = _core.shard_map(body, place.mesh, in_specs=(place.spec,), out_specs=(place.spec, P()))
    return jax.jit(fn, donate_argnums=(0,) if donate else ())


@functools.lru_cache(maxsize=256)
def solve_program(place: _mesh.Placement, geo: Geometry, timeout: float):
    del timeout
    body = functools.partial(
        solve_local, geo=geo, row_axes=place.row_axes, group_axes=place.group_axes
    )
    fn = _core.shard_map(body, place.mesh, in_specs=(place.spec, P()), out_specs=P())
    return jax.jit(fn)


def columns_vmap(fn, n: int):
    """``fn(m, b)`` (m: a matrix or factor, b: N x k) made to batch a batch of right-hand sides
    with one matrix as one call, the batch as columns (one factorization, or one solve call,
    instead of one per element); a batch of matrices runs one call per element, in a loop
    (as ``vmap_method="sequential"`` would). ``fn`` returns ``x`` or ``(x, info)``."""

    @jax.custom_batching.custom_vmap
    def batched(m, b):
        return fn(m, b)

    @batched.def_vmap
    def _rule(axis_size, in_batched, m, b):
        m_batched, b_batched = in_batched
        if not m_batched:
            k = b.shape[-1]
            out = batched(m, jnp.moveaxis(b, 0, 1).reshape(n, axis_size * k))
            x, rest = (out[0], out[1:]) if isinstance(out, tuple) else (out, None)
            x = jnp.moveaxis(x.reshape(n, axis_size, k), 1, 0)
            if rest is None:
                return x, True
            return (x, *rest), (True,) + (False,) * len(rest)
        if not b_batched:
            b = jnp.broadcast_to(b, (axis_size,) + b.shape)
        out = jax.lax.map(lambda mb: batched(*mb), (m, b))
        return out, (jax.tree_util.tree_map(lambda _: True, out))

    return batched


@functools.lru_cache(maxsize=256)
def solver(place: _mesh.Placement, geo: Geometry, timeout: float):
    """``solve_program`` batching a batch of right-hand sides into one call (``columns_vmap``):
    ``jax.jacfwd``/``jacrev`` of a solve, or ``vmap`` over right-hand sides, cost one solve."""
    return columns_vmap(solve_program(place, geo, timeout), geo.n)


@functools.lru_cache(maxsize=256)
def inverse_program(place: _mesh.Placement, geo: Geometry, timeout: float):
    del timeout
    body = functools.partial(
        inverse_local, geo=geo, row_axes=place.row_axes, group_axes=place.group_axes
    )
    fn = _core.shard_map(body, place.mesh, in_specs=(place.spec,), out_specs=place.spec)
    return jax.jit(fn)


@functools.lru_cache(maxsize=256)
def logdet_program(place: _mesh.Placement, geo: Geometry):
    """2 sum log diag(L) = log det A (real, replicated) from the factor."""
    body = functools.partial(diag_log_local, geo=geo, row_axes=place.row_axes)
    fn = _core.shard_map(body, place.mesh, in_specs=(place.spec,), out_specs=P())
    return jax.jit(lambda f: 2 * fn(f))
