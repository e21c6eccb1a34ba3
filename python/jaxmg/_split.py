"""The "split" engine of ``potrs``: a two-device Cholesky solve with no all-gather.

The matrix is row-sharded over exactly two devices, h = N / 2 rows each::

    device 0: [A11 A12]        A = [A11 A12] = [L11  0 ] [L11^H   U  ]
    device 1: [A21 A22]            [A21 A22]   [U^H L22] [ 0   L22^H]

with U = L11^-1 A12 (so L21 = U^H) and L22 L22^H = S = A22 - U^H U. Device 0 factors A11 and
computes U by blocked forward substitution, in ``chunks`` row blocks, together with
y1 = L11^-1 b1 (the right-hand side rides along as extra columns: W_i = [U_i | y1_i], kept
transposed); each W_i is sent to device 1 (``ppermute``) as soon as it exists, and device 1
folds it into S -= U_i^H U_i (only the upper block triangle of S, which is all its Cholesky
reads, in ``blocks`` block rows) and c2 = b2 - U^H y1 -= U_i^H y1_i, so that the transfer of
U (N^2 / 4 elements, half of what the single engine gathers) can overlap device 0's
substitution and device 1's updates. Then device 1 factors S and solves L22 L22^H x2 = c2,
sends x2 back, device 0 finishes x1 = L11^-H (y1 - U x2), and x = [x1; x2] is gathered on
both (N x k elements).

Each device runs only its own part: the parts are ``lax.cond`` branches on the position along
the row axis (the other device takes a branch that returns zeros of the same shape); the
collectives are outside the branches, so both devices execute the same sequence of them.

``info`` follows the other engines: the devices agree on failure through a ``pmax`` of "a
non-finite diagonal in L11 (device 0) or L22 (device 1)"; only then the distributed
factorization recomputes the exact failing pivot (``_potrs.exact_info``), and x is NaN.
Reads only the upper triangle of A (A11's and A22's upper triangles and A12; A21 is not
read): the Cholesky solver takes column-major operands, and the transpose of a row block of
the row-major shard is one with no relayout (see ``start0`` and ``init1``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from . import _engine
from ._geometry import Geometry

# Every product at full precision: XLA would otherwise use TF32 for float32 on GPUs.
_HI = jax.lax.Precision.HIGHEST
CHUNKS = 4   # row blocks of U sent one by one
BLOCKS = 4   # block rows of S: only its upper block triangle is formed


def _bounds(n: int, parts: int):
    parts = max(1, min(int(parts), n))
    return [(i * n) // parts for i in range(parts + 1)]


def _conj(x):
    return jnp.conj(x) if jnp.iscomplexobj(x) else x


def _nt(x, y):
    """x y^T (contracting the columns of both) without materializing a transpose."""
    return jax.lax.dot_general(x, y, (((1,), (1,)), ((), ())), precision=_HI)


def check_geometry(geo: Geometry) -> None:
    if geo.ndev != 2 or 2 * geo.nloc != geo.n:
        raise ValueError(
            f"jaxmg.potrs: engine='split' needs the rows sharded over exactly 2 devices, got "
            f"{geo.ndev}"
        )


def potrs_split(a_loc, b, geo: Geometry, row_axes, group_axes, keep_factor=False,
                chunks=CHUNKS, blocks=BLOCKS):
    """Per-device body of the split engine (see the module docstring): (x, info[1]), x
    replicated N x k; with ``keep_factor`` also ``a_loc`` (unchanged, as the single engine)."""
    from ._potrs import exact_info  # _potrs imports this module

    check_geometry(geo)
    h, k, dtype = geo.nloc, b.shape[1], a_loc.dtype
    axis = _engine._axis(row_axes)
    rank = jax.lax.axis_index(axis)
    first, second = rank == 0, rank == 1
    cb, rb = _bounds(h, chunks), _bounds(h, blocks)
    nchunks = len(cb) - 1
    tri = jax.lax.linalg.triangular_solve

    def zeros(*shape):
        return jnp.zeros(shape, dtype)

    def zeros_like(tree):
        return jax.tree_util.tree_map(jnp.zeros_like, tree)

    # ---- device 0: V_i = W_i^T, W_i = L11[ii]^-1 ([A12 | b1][i] - sum_j<i L11[i, j] W_j) ---
    # Transposed, so that the triangular solve (which takes column-major operands on CPU and
    # GPU alike) reads the rows of the row-major shard as they are: the solve is
    # V_i L11[ii]^T = R_i^T, with R_i^T a transposed view of a row block (no relayout of the
    # whole shard, which XLA inserts when a row block itself feeds the solve).
    def chunk(L, a, b1, prev, i):
        r0, r1 = cb[i], cb[i + 1]
        acc = jnp.concatenate([a[r0:r1, h:], b1[r0:r1]], axis=1).T
        for j, v in enumerate(prev):
            acc = acc - jnp.matmul(v, L[r0:r1, cb[j]:cb[j + 1]].T, precision=_HI)
        return tri(L[r0:r1, r0:r1], acc, left_side=False, lower=True, transpose_a=True)

    def start0(a, b1):
        # The Cholesky solver takes a column-major operand: A11^T is a row-major block of the
        # shard read column-major (a slice, no relayout of the whole shard). A11^T = conj(A11)
        # for Hermitian A, whose factor is conj(L11); its lower triangle is A11's upper one.
        L = _conj(_engine.cholesky(a[:, :h].T))
        return L, _engine.diag_failed(L), chunk(L, a, b1, [], 0)

    b1, b2 = b[:h], b[h:]
    shapes0 = jax.eval_shape(start0, a_loc, b1)
    L11, bad11, v = jax.lax.cond(
        first, start0, lambda a, b1: zeros_like(shapes0), a_loc, b1)
    vs = [v]

    # ---- device 1: the upper block rows Y of S = A22 - U^H U, and c2 = b2 - U^H y1 ----------
    # Read column-major, Y is S^T = conj(S) with S's upper triangle as its lower one (the
    # factor of that is conj(L22), see finish1). With V_i = [U_i | y1_i]^T:
    # (U_i^H U_i)[r, c] = conj(V_i[r]) . V_i[c], U_i^H y1_i likewise.
    def fold(Y, c2, v):
        u, y = v[:h], v[h:]
        Y = [t - _nt(_conj(u[rb[p]:rb[p + 1]]), u[rb[p]:]) for p, t in enumerate(Y)]
        return Y, c2 - _nt(_conj(u), y)

    def init1(a, b2, v):
        Y = [a[rb[p]:rb[p + 1], h + rb[p]:] for p in range(len(rb) - 1)]
        return fold(Y, b2, v)

    recv = jax.lax.ppermute(v, axis, [(0, 1)])
    shapes1 = jax.eval_shape(init1, a_loc, b2, recv)
    Y, c2 = jax.lax.cond(
        second, init1, lambda a, b2, v: zeros_like(shapes1), a_loc, b2, recv)

    for i in range(1, nchunks):
        v = jax.lax.cond(
            first,
            lambda L, a, b1, prev, i=i: chunk(L, a, b1, prev, i),
            lambda L, a, b1, prev, i=i: zeros(h + k, cb[i + 1] - cb[i]),
            L11, a_loc, b1, vs)
        vs.append(v)
        recv = jax.lax.ppermute(v, axis, [(0, 1)])
        Y, c2 = jax.lax.cond(
            second, fold, lambda Y, c2, v: (Y, c2), Y, c2, recv)

    # ---- device 1: L22 = chol(S), x2 = L22^-H L22^-1 c2 -----------------------------------
    def finish1(Y, c2):
        full = jnp.concatenate(
            [jnp.pad(t, ((0, 0), (h - t.shape[1], 0))) for t in Y], axis=0)
        L = _conj(_engine.cholesky(full.T))
        y = tri(L, c2, left_side=True, lower=True)
        x = tri(L, y, left_side=True, lower=True, transpose_a=True, conjugate_a=True)
        return x, _engine.diag_failed(L)

    x2, bad22 = jax.lax.cond(
        second, finish1, lambda Y, c2: (zeros(h, k), jnp.zeros((), bool)), Y, c2)
    failed = _engine.agree_failed(bad11 | bad22, row_axes)

    # ---- device 0: x1 = L11^-H (y1 - U x2) ------------------------------------------------
    def finish0(L, vs, x2):
        t = jnp.concatenate(
            [v[h:].T - jnp.matmul(v[:h].T, x2, precision=_HI) for v in vs], axis=0)
        return tri(L, t, left_side=True, lower=True, transpose_a=True, conjugate_a=True)

    x2_on0 = jax.lax.ppermute(x2, axis, [(1, 0)])
    x1 = jax.lax.cond(
        first, finish0, lambda L, vs, x2: zeros(h, k), L11, vs, x2_on0)

    x = _engine.gather(jnp.where(first, x1, x2), row_axes)
    x = jnp.where(failed, jnp.full_like(x, jnp.nan), x)
    info = exact_info(failed, a_loc, geo, row_axes, group_axes)
    return (x, info, a_loc) if keep_factor else (x, info)
