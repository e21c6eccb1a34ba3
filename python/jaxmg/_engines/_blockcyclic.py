"""Per-device bodies over the block-cyclic FFI ops (``jaxmg_potrf``, ``jaxmg_potrs``,
``jaxmg_solve``, ``jaxmg_potri``, ``jaxmg_syevd``, ``jaxmg_syevd_n``): the distributed
solvers, cuSOLVERMg on GPUs and the tiled LAPACK backend on CPU devices, which XLA picks by
the platform the program is compiled for.

Device d holds rows [d n, (d+1) n) of A, row-major; read column-major that is conj(A)'s
columns, so the solver factors M = Pᵀ conj(A) P after the local block permutation the
backend applies (docs/design.md, "Layout"). The right-hand side is replicated: putting it
into solver order and the solution back are local gathers (``to_solver_rows``); complex
problems solve conj(A) conj(x) = conj(b). Shards that the tile does not divide are padded
(identity on the diagonal for the Cholesky ops, a shift above the spectrum for syevd).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .. import _call
from .._geometry import (
    Geometry, axis_of, from_solver_rows, pad_shard, to_solver_rows, unpad_info, unpad_shard,
)
from ._base import conj, nan_where, transpose_rows

_INFO = jax.ShapeDtypeStruct((1,), jnp.int32)


def _rank(row_axes):
    return jax.lax.axis_index(axis_of(row_axes))


# ---- Cholesky ---------------------------------------------------------------------------

def potrs(a_loc, b, *, geo: Geometry, row_axes, group_axes, keep_factor=False):
    """Factor and solve in one call: (x, info[1]), x replicated N x k. With ``keep_factor``
    also the shard overwritten by the factor (an output that a donated ``a`` can alias)."""
    a_p = pad_shard(a_loc, geo, _rank(row_axes))
    c = conj(to_solver_rows(b, geo))
    a_out, xt, info = _call.call(
        "jaxmg_potrs",
        (jax.ShapeDtypeStruct(a_p.shape, a_loc.dtype),
         jax.ShapeDtypeStruct((b.shape[1], geo.n_pad), a_loc.dtype), _INFO),
        (a_p, c.T), geo, row_axes, group_axes, aliases={0: 0},
    )
    x, info = from_solver_rows(conj(xt.T), geo), unpad_info(info, geo)
    return (x, info, unpad_shard(a_out, geo)) if keep_factor else (x, info)


def potrf(a_loc, *, geo: Geometry, row_axes, group_axes):
    """This device's padded shard of the factor (in the solver's layout), and info[1]."""
    a_p = pad_shard(a_loc, geo, _rank(row_axes))
    f, info = _call.call(
        "jaxmg_potrf", (jax.ShapeDtypeStruct(a_p.shape, a_loc.dtype), _INFO), (a_p,), geo,
        row_axes, group_axes, aliases={0: 0},
    )
    return f, unpad_info(info, geo)


def solve(f_loc, b, *, geo: Geometry, row_axes, group_axes):
    """The replicated solution (N x k) of A x = b from the factor of A."""
    c = conj(to_solver_rows(b, geo))
    xt, _ = _call.call(
        "jaxmg_solve",
        (jax.ShapeDtypeStruct((b.shape[1], geo.n_pad), b.dtype), _INFO),
        (f_loc, c.T), geo, row_axes, group_axes,
    )
    return from_solver_rows(conj(xt.T), geo)


def inverse(f_loc, *, geo: Geometry, row_axes, group_axes):
    """This device's rows of inv(A) from the factor of A (no new factorization). ndev solves,
    one per row block j, each with the nloc identity columns of block j as right-hand sides;
    A⁻¹ is Hermitian, so the solution (column block j) read conjugate-transposed is row
    block j, which device j keeps. A loop, so that only one N x nloc block of right-hand
    sides and solutions lives at a time."""
    n, nloc = geo.n, geo.nloc
    rank = _rank(row_axes)
    rows = jnp.arange(n, dtype=jnp.int32)[:, None]

    def block(j, x_loc):
        e = (rows == j * nloc + jnp.arange(nloc, dtype=jnp.int32)[None, :]).astype(f_loc.dtype)
        y = solve(f_loc, e, geo=geo, row_axes=row_axes, group_axes=group_axes)
        return jnp.where(rank == j, conj(y).T, x_loc)

    return jax.lax.fori_loop(0, geo.ndev, block, jnp.zeros((nloc, n), f_loc.dtype))


def logdet(f_loc, *, geo: Geometry, row_axes, group_axes):
    """log det A = 2 sum log diag(L), from this device's shard of the factor.

    Local row c of device d is solver column g = ((c/T) ndev + d) T + c mod T; its diagonal
    entry is element g of that row. Each diagonal entry lives on exactly one device; padding
    rows hold 1 there (log 1 = 0)."""
    d = _rank(row_axes)
    c = jnp.arange(geo.nloc_pad, dtype=jnp.int32)
    g = ((c // geo.tile) * geo.ndev + d) * geo.tile + c % geo.tile
    diag = jnp.take_along_axis(f_loc, g[:, None], axis=1)[:, 0]
    return 2 * jax.lax.psum(jnp.sum(jnp.log(jnp.real(diag))), axis_of(row_axes))


def exact_info(failed, a_loc, *, geo: Geometry, row_axes, group_axes):
    """LAPACK's info for an engine whose own Cholesky reports only that it failed: 0, or on
    failure (``failed`` agreed on by every device, so all take the same branch) the exact
    failing pivot from the distributed factorization."""
    return jax.lax.cond(
        failed,
        lambda a: potrf(a, geo=geo, row_axes=row_axes, group_axes=group_axes)[1],
        lambda a: jnp.zeros((1,), jnp.int32),
        a_loc,
    )


# ---- inverse ----------------------------------------------------------------------------

def potri(a_loc, *, geo: Geometry, row_axes, group_axes):
    """The inverse in one call (``jaxmg_potri``): this device's rows of inv(A), info[1]. The
    backend leaves each shard holding its own rows of inv(A) in the original order
    (inv(M) = Pᵀ conj(inv(A)) P read column-major, rows put back): no conjugation here.
    Identity padding: inv(A ⊕ I) = inv(A) ⊕ I."""
    a_p = pad_shard(a_loc, geo, _rank(row_axes))
    inv, info = _call.call(
        "jaxmg_potri", (jax.ShapeDtypeStruct(a_p.shape, a_loc.dtype), _INFO), (a_p,), geo,
        row_axes, group_axes, aliases={0: 0},
    )
    return unpad_shard(inv, geo), unpad_info(info, geo)


def potri_by_solves(a_loc, *, geo: Geometry, row_axes, group_axes):
    """The inverse from one distributed factorization and one distributed solve per device
    of the group, for the identity columns of that device's rows (the inverse is Hermitian:
    rows = conj(columns)ᵀ), each device keeping its own; memory O(N² / ndev) per device.
    cuSOLVERMg's own potri returns wrong inverses on 2 GPUs (docs/design.md), so this is the
    GPU's distributed inverse."""
    f, info = potrf(a_loc, geo=geo, row_axes=row_axes, group_axes=group_axes)
    rows = inverse(f, geo=geo, row_axes=row_axes, group_axes=group_axes)
    return nan_where(info[0] != 0, rows), info


# ---- Hermitian eigendecomposition -------------------------------------------------------

def padding_shift(a_loc, row_axes):
    """A value strictly above every eigenvalue of A: 2 ||A||_inf (1 for A = 0).

    Padding with it keeps the padded spectrum that of A plus (n_pad - n) copies of the
    shift at the top, so the padding eigenpairs are the last ones and are dropped. Identity
    padding would add eigenvalue 1, which may fall inside (or repeat) A's spectrum. No
    constant is added to the norm, so a tiny A keeps its relative accuracy."""
    rows = jnp.sum(jnp.abs(a_loc), axis=1)
    norm = jax.lax.pmax(jnp.max(rows), axis_of(row_axes))
    return jnp.where(norm > 0, 2 * norm, jnp.ones_like(norm))


def eigvec_rows(s_loc, geo: Geometry, row_axes):
    """This device's rows of V (nloc x n) from the backend's output.

    Row c of device d's padded shard holds conj(v_e) for the eigenvector index
    e = dst(d * nloc_pad + c), its components in the padded original order. Stacked, the
    shards form S with S[src[e]] = conj(v_e), so V = conj(S[src]).T: one all-to-all (each
    device gets the columns of S that are its rows of V), then a local gather + transpose.
    """
    t = s_loc
    if geo.ndev > 1:
        # (nloc_pad, n_pad) -> (n_pad, nloc_pad): column block d of S, from every device.
        t = jax.lax.all_to_all(t, axis_of(row_axes), split_axis=1, concat_axis=0, tiled=True)
    e = geo.src[: geo.n] if not geo.identity_layout else slice(0, geo.n)
    return conj(t[e, : geo.nloc]).T


def syevd(a_loc, *, geo: Geometry, row_axes, group_axes, vectors: bool):
    """(w, rows of V or None, info[1]); w replicated."""
    if geo.padded:
        a_p = pad_shard(a_loc, geo, _rank(row_axes), diag=padding_shift(a_loc, row_axes))
    else:
        a_p = a_loc
    real = jnp.finfo(a_loc.dtype).dtype
    s, w, info = _call.call(
        "jaxmg_syevd" if vectors else "jaxmg_syevd_n",
        (jax.ShapeDtypeStruct(a_p.shape, a_loc.dtype),
         jax.ShapeDtypeStruct((geo.n_pad,), real), _INFO),
        (a_p,), geo, row_axes, group_axes, aliases={0: 0},
    )
    w = w[: geo.n]
    v = eigvec_rows(s, geo, row_axes) if vectors else None
    return w, v, info


# The ops of the distributed engines, by body; each engine chooses its potri.
BODIES = {
    "potrs": potrs,
    "syevd": syevd,
    "potrf": potrf,
    "solve": solve,
    "inverse": inverse,
    "logdet": logdet,
}


# ---- general matrices ---------------------------------------------------------------------


def getrs(a_loc, b, *, geo: Geometry, row_axes, group_axes, transposed=False):
    """x (replicated N x k) of A x = b for a general A (``transposed``: Aᵀ x = b), and
    info[1] (> 0: singular; x NaN). The solver reads the shards column-major, so it is
    handed the rows of Aᵀ (one all_to_all of the shard) to see A itself, or A's own rows
    to see Aᵀ; b goes in solver order as is (no conjugation: nothing is Hermitian here)."""
    at = a_loc if transposed else transpose_rows(a_loc, axis_of(row_axes), geo.ndev)
    a_p = pad_shard(at, geo, _rank(row_axes))
    _, xt, info = _call.call(
        "jaxmg_getrs",
        (jax.ShapeDtypeStruct(a_p.shape, a_loc.dtype),
         jax.ShapeDtypeStruct((b.shape[1], geo.n_pad), b.dtype), _INFO),
        (a_p, to_solver_rows(b, geo).T), geo, row_axes, group_axes, aliases={0: 0},
    )
    info = unpad_info(info, geo)
    return nan_where(info[0] != 0, from_solver_rows(xt.T, geo)), info
