"""Engine ``gather``: every device of the group gathers the matrix (one all-gather) and runs
XLA's own single-device solver on it (cuSOLVER on GPUs, LAPACK on CPU devices), computing
only the part of the output it keeps: its rows of the inverse or of V. The devices compute
redundantly rather than one computing and broadcasting: the same wall time, no broadcast.
Memory O(N²) per device. Works across processes (one per GPU), where ``one_device`` cannot.

LAPACK's info stays exact: when the Cholesky fails, every device learns it through a
``pmax`` and the distributed factorization recomputes the failing pivot (only on failure).
The eigensolver reports info = 1 when its eigenvalues are not finite (XLA's eigh returns no
count).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .._geometry import Geometry, axis_of
from . import _blockcyclic
from ._base import Engine, agree_failed, cholesky, conj, diag_failed, gather, my_rows, nan_where

_tri = jax.lax.linalg.triangular_solve


def potrs(a_loc, b, *, geo: Geometry, row_axes, group_axes, keep_factor=False):
    """(x, info[1]), x replicated; with ``keep_factor`` also ``a_loc`` (unchanged)."""
    L = cholesky(gather(a_loc, row_axes))
    failed = agree_failed(diag_failed(L), row_axes)
    y = _tri(L, b, left_side=True, lower=True)
    x = nan_where(failed, _tri(L, y, left_side=True, lower=True, transpose_a=True,
                               conjugate_a=True))
    info = _blockcyclic.exact_info(failed, a_loc, geo=geo, row_axes=row_axes,
                                   group_axes=group_axes)
    return (x, info, a_loc) if keep_factor else (x, info)


def potri_plan(n: int, nloc: int, ndev: int):
    """Static plan of ``potri``: (s, flips). Device j wants the identity columns
    [j nloc, (j+1) nloc); in the reversed matrix R A R they are [n - (j+1) nloc, n - j nloc).
    It takes the order in which they start later (flips[j]) and every device solves its first
    triangular system on rows [s, n) only, s = the smallest such start (the rows above it are
    zero for every device)."""
    starts = [max(j * nloc, n - (j + 1) * nloc) for j in range(ndev)]
    flips = tuple(j * nloc < n - (j + 1) * nloc for j in range(ndev))
    return min(starts), flips


def potri(a_loc, *, geo: Geometry, row_axes, group_axes):
    """Every device factors the gathered matrix and solves L Lᴴ Z = E for the identity
    columns of its own rows only; rows = conj(Z)ᵀ.

    Cost per device beyond the factorization: Y = L⁻¹ E is zero above the first identity
    column, so the first solve runs on the trailing rows [s, n) only; a device whose columns
    start early factors the reversed matrix R A R instead (inv(A) = R inv(R A R) R, the same
    Cholesky cost) so that its columns start late. On 2 devices that makes the first solve
    N³/8 instead of N³/2 per device; the second (Lᴴ Z = Y, full) stays N³/2."""
    rank = jax.lax.axis_index(axis_of(row_axes))
    n, nloc = geo.n, geo.nloc
    s, flips = potri_plan(n, nloc, geo.ndev)
    flip = jnp.asarray(flips)[rank]
    a = gather(a_loc, row_axes)
    if any(flips):
        a = jax.lax.cond(flip, lambda x: x[::-1, ::-1], lambda x: x, a)
    L = cholesky(a)
    failed = agree_failed(diag_failed(L), row_axes)
    j0 = jnp.where(flip, n - (rank + 1) * nloc, rank * nloc)  # my first column, this order
    rows_iota = jax.lax.broadcasted_iota(jnp.int32, (n - s, nloc), 0) + s
    cols_iota = jax.lax.broadcasted_iota(jnp.int32, (n - s, nloc), 1)
    e = (rows_iota == cols_iota + j0).astype(a.dtype)  # rows [s, n) of the identity columns
    y = _tri(L[s:, s:], e, left_side=True, lower=True)
    if s:
        y = jnp.concatenate([jnp.zeros((s, nloc), a.dtype), y], axis=0)
    z = _tri(L, y, left_side=True, lower=True, transpose_a=True, conjugate_a=True)
    if any(flips):
        z = jnp.where(flip, z[::-1, ::-1], z)  # columns of R inv(A) R back to those of inv(A)
    rows = nan_where(failed, conj(z).T)
    return rows, _blockcyclic.exact_info(failed, a_loc, geo=geo, row_axes=row_axes,
                                         group_axes=group_axes)


def syevd(a_loc, *, geo: Geometry, row_axes, group_axes, vectors: bool):
    """(w, rows of V or None, info[1]); every device keeps its rows of V."""
    v, w = jax.lax.linalg.eigh(gather(a_loc, row_axes), lower=True, symmetrize_input=False)
    failed = agree_failed(~jnp.all(jnp.isfinite(w)), row_axes)
    info = jnp.where(failed, 1, 0).astype(jnp.int32).reshape(1)
    w = jnp.where(failed, jnp.nan, w)
    if not vectors:
        return w, None, info
    rows = my_rows(v, geo.nloc, jax.lax.axis_index(axis_of(row_axes)))
    return w, nan_where(failed, rows), info


ENGINE = Engine(
    name="gather",
    platforms=("cpu", "gpu"),
    bodies={"potrs": potrs, "potri": potri, "syevd": syevd},
    summary="every device gathers the matrix and runs XLA's single-device solver",
)
