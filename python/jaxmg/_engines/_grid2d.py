"""The 2D block-cyclic layout of ScaLAPACK and cuSOLVERMp, and the exchange between it and
the row-sharded matrices jaxmg's users hold: the index arithmetic in NumPy (descriptors,
tables, byte counts) and the exchange itself in JAX, one ``all_to_all`` inside
``shard_map`` each way (``rows_to_grid``, ``grid_to_rows``). The distributed engine over
cuSOLVERMp builds its data movement and its descriptors from it.

A p x q process grid holds an M x N matrix in blocks of mb x nb: global row i lies in grid
row (i // mb) mod p, global column j in grid column (j // nb) mod q (the first block on
process row and column 0, ScaLAPACK's RSRC = CSRC = 0). Each process stores its blocks
column-major, local rows in increasing global order, leading dimension
``max(1, numroc(M, mb, its row, p))``. Ranks map to grid positions column-major, as
cuSOLVERMp's ``CUSOLVERMP_GRID_MAPPING_COL_MAJOR`` (rank = row + col * p).

The users' layout: rank r holds the contiguous rows ``row_starts[r] .. row_starts[r+1]``
(all columns). Moving one into the other, rank s sends rank d the submatrix of its rows that
d's grid row owns, restricted to the columns d's grid column owns (``exchange``): with P
ranks each one keeps about 1/P of its shard and sends the rest, (1 - 1/P) M N / P elements
per rank, which no layout of the same blocks can avoid (every element a rank holds belongs,
in the 2D layout, to one of P ranks uniformly).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np


def numroc(n: int, nb: int, iproc: int, nprocs: int, isrc: int = 0) -> int:
    """Rows (or columns) of an n-long dimension in blocks of nb that process ``iproc`` of
    ``nprocs`` owns, the first block on ``isrc`` (ScaLAPACK's NUMROC)."""
    if n < 0 or nb < 1 or nprocs < 1 or not 0 <= iproc < nprocs:
        raise ValueError(f"numroc: bad arguments n={n} nb={nb} iproc={iproc} nprocs={nprocs}")
    dist = (iproc - isrc) % nprocs
    nblocks = n // nb
    count = (nblocks // nprocs) * nb
    extra = nblocks % nprocs
    if dist < extra:
        count += nb
    elif dist == extra:
        count += n % nb
    return count


def owner(i, nb: int, nprocs: int, isrc: int = 0):
    """The process (grid row or column) that owns global index ``i`` (scalar or array)."""
    return (np.asarray(i) // nb + isrc) % nprocs


def global_to_local(i, nb: int, nprocs: int):
    """The local index of global index ``i`` on its owner (ScaLAPACK's INDXG2L)."""
    i = np.asarray(i)
    return (i // (nb * nprocs)) * nb + i % nb


def local_to_global(l, nb: int, iproc: int, nprocs: int, isrc: int = 0):
    """The global index of local index ``l`` on process ``iproc`` (ScaLAPACK's INDXL2G)."""
    l = np.asarray(l)
    dist = (iproc - isrc) % nprocs
    return (l // nb) * nb * nprocs + dist * nb + l % nb


def owned(n: int, nb: int, iproc: int, nprocs: int) -> np.ndarray:
    """The global indices process ``iproc`` owns, in its local order."""
    return local_to_global(np.arange(numroc(n, nb, iproc, nprocs)), nb, iproc, nprocs)


def choose_grid(nprocs: int, override=None) -> tuple[int, int]:
    """The p x q grid for ``nprocs`` processes: the most nearly square factorization with
    p <= q (ScaLAPACK's advice for Cholesky and the eigensolvers: communication per process
    grows with p + q). ``override``, else the environment variable ``JAXMG_MP_GRID``
    ("PxQ"), names another; its product must be ``nprocs``."""
    if nprocs < 1:
        raise ValueError(f"jaxmg: a process grid needs at least one process, got {nprocs}")
    if override is None:
        override = os.environ.get("JAXMG_MP_GRID") or None
    if override is not None:
        if isinstance(override, str):
            try:
                p, q = (int(v) for v in override.lower().split("x"))
            except ValueError:
                raise ValueError(f"jaxmg: a process grid is written PxQ (e.g. 2x4), got "
                                 f"{override!r}") from None
        else:
            p, q = (int(v) for v in override)
        if p < 1 or q < 1 or p * q != nprocs:
            raise ValueError(f"jaxmg: a {p}x{q} process grid does not have the {nprocs} "
                             f"processes of the mesh")
        return p, q
    p = math.isqrt(nprocs)
    while nprocs % p:
        p -= 1
    return p, nprocs // p


def grid_position(rank: int, p: int, q: int) -> tuple[int, int]:
    """(grid row, grid column) of ``rank``, column-major as cuSOLVERMp's
    CUSOLVERMP_GRID_MAPPING_COL_MAJOR: rank = row + col * p."""
    if not 0 <= rank < p * q:
        raise ValueError(f"rank {rank} outside a {p}x{q} grid")
    return rank % p, rank // p


@dataclass(frozen=True)
class Layout:
    """An M x N matrix on a p x q grid in mb x nb blocks."""
    m: int
    n: int
    mb: int
    nb: int
    p: int
    q: int

    def __post_init__(self):
        if min(self.m, self.n) < 0 or min(self.mb, self.nb, self.p, self.q) < 1:
            raise ValueError(f"jaxmg: bad 2D block-cyclic layout {self}")

    @property
    def nprocs(self) -> int:
        return self.p * self.q

    def local_shape(self, rank: int) -> tuple[int, int]:
        """(local rows, local columns) of ``rank``."""
        r, c = grid_position(rank, self.p, self.q)
        return numroc(self.m, self.mb, r, self.p), numroc(self.n, self.nb, c, self.q)

    def lld(self, rank: int) -> int:
        """The local leading dimension (column-major storage)."""
        return max(1, self.local_shape(rank)[0])

    def rows(self, rank: int) -> np.ndarray:
        """Global rows ``rank`` holds, in local order."""
        return owned(self.m, self.mb, grid_position(rank, self.p, self.q)[0], self.p)

    def cols(self, rank: int) -> np.ndarray:
        """Global columns ``rank`` holds, in local order."""
        return owned(self.n, self.nb, grid_position(rank, self.p, self.q)[1], self.q)


def even_row_starts(m: int, nprocs: int) -> np.ndarray:
    """Row boundaries of an m-row matrix sharded by rows over ``nprocs`` ranks as JAX
    shards it (equal shares; m a multiple of nprocs), length nprocs + 1."""
    if m % nprocs:
        raise ValueError(f"jaxmg: {m} rows do not split evenly over {nprocs} ranks")
    return np.arange(nprocs + 1) * (m // nprocs)


@dataclass(frozen=True)
class Piece:
    """What rank ``src`` sends rank ``dst``: the rows ``src_rows`` of its shard (indices into
    the shard) restricted to the global columns ``cols``; they land at local rows
    ``dst_rows`` and local columns ``dst_cols`` of ``dst``'s block-cyclic matrix."""
    src: int
    dst: int
    src_rows: np.ndarray
    cols: np.ndarray
    dst_rows: np.ndarray
    dst_cols: np.ndarray

    @property
    def elements(self) -> int:
        return int(self.src_rows.size * self.cols.size)


def exchange(lay: Layout, row_starts) -> list[Piece]:
    """The pieces that take a row-sharded matrix (rank r holding global rows
    ``row_starts[r] .. row_starts[r+1]``, all columns) to ``lay``, and, read backwards,
    back. Every (src, dst) pair with something to send has one piece; a rank's piece to
    itself stays local."""
    starts = np.asarray(row_starts, dtype=np.int64)
    if starts.size != lay.nprocs + 1 or starts[0] != 0 or starts[-1] != lay.m or np.any(
            np.diff(starts) < 0):
        raise ValueError(f"jaxmg: row boundaries {starts.tolist()} do not cover the "
                         f"{lay.m} rows of {lay.nprocs} ranks")
    pieces = []
    for dst in range(lay.nprocs):
        rows, cols = lay.rows(dst), lay.cols(dst)
        if rows.size == 0 or cols.size == 0:
            continue
        src_of = np.searchsorted(starts, rows, side="right") - 1
        for src in np.unique(src_of):
            mine = np.nonzero(src_of == src)[0]
            pieces.append(Piece(int(src), dst, rows[mine] - starts[src], cols, mine,
                                np.arange(cols.size)))
    return pieces


def moved_elements(pieces: list[Piece], nprocs: int) -> np.ndarray:
    """Elements each rank sends to other ranks (its pieces to itself excluded)."""
    out = np.zeros(nprocs, dtype=np.int64)
    for pc in pieces:
        if pc.src != pc.dst:
            out[pc.src] += pc.elements
    return out


def to_block_cyclic(shards, lay: Layout, row_starts) -> list[np.ndarray]:
    """NumPy model of the exchange: the row shards to every rank's local block-cyclic
    matrix (lld x local columns; column-major storage is the transpose of this array)."""
    local = [np.zeros(lay.local_shape(r), dtype=np.asarray(shards[0]).dtype)
             for r in range(lay.nprocs)]
    for pc in exchange(lay, row_starts):
        local[pc.dst][np.ix_(pc.dst_rows, pc.dst_cols)] = \
            np.asarray(shards[pc.src])[np.ix_(pc.src_rows, pc.cols)]
    return local


def from_block_cyclic(local, lay: Layout, row_starts) -> list[np.ndarray]:
    """The inverse of ``to_block_cyclic``: the row shards from the local matrices."""
    starts = np.asarray(row_starts)
    shards = [np.zeros((starts[r + 1] - starts[r], lay.n), dtype=np.asarray(local[0]).dtype)
              for r in range(lay.nprocs)]
    for pc in exchange(lay, row_starts):
        shards[pc.src][np.ix_(pc.src_rows, pc.cols)] = \
            np.asarray(local[pc.dst])[np.ix_(pc.dst_rows, pc.dst_cols)]
    return shards


# ---- the exchange in JAX ------------------------------------------------------------------

@dataclass(frozen=True)
class Tables:
    """Index tables of ``exchange`` for one all_to_all: every piece padded to R rows and C
    columns (the largest piece). ``send_rows[s, d]``: rows of s's shard for d (padding:
    row 0); ``cols[d]``: the global columns d holds (padding: column 0);
    ``recv_rows[d, s]``: where s's rows land in d's local matrix (padding: ``mloc``, out of
    bounds, dropped); ``recv_cols[d]``: d's local columns (padding: ``nloc``)."""
    send_rows: np.ndarray  # (P, P, R)
    cols: np.ndarray       # (P, C)
    recv_rows: np.ndarray  # (P, P, R)
    recv_cols: np.ndarray  # (P, C)
    mloc: int              # the local matrix every rank holds in JAX: mloc x nloc (max over
    nloc: int              # ranks; a rank's own is its top-left numroc x numroc corner)

    @property
    def padded_elements(self) -> int:
        """Elements each rank sends and receives in the all_to_all (its own piece included)."""
        P, _, R = self.send_rows.shape
        return P * R * self.cols.shape[1]


def tables(lay: Layout, row_starts) -> Tables:
    P = lay.nprocs
    pieces = exchange(lay, row_starts)
    R = max([pc.src_rows.size for pc in pieces] + [1])
    C = max([lay.local_shape(d)[1] for d in range(P)] + [1])
    mloc = max([lay.local_shape(d)[0] for d in range(P)] + [1])
    nloc = max([lay.local_shape(d)[1] for d in range(P)] + [1])
    send = np.zeros((P, P, R), np.int32)
    recv = np.full((P, P, R), mloc, np.int32)
    cols = np.zeros((P, C), np.int32)
    rcols = np.full((P, C), nloc, np.int32)
    for d in range(P):
        c = lay.cols(d)
        cols[d, :c.size] = c
        rcols[d, :c.size] = np.arange(c.size)
    for pc in pieces:
        send[pc.src, pc.dst, :pc.src_rows.size] = pc.src_rows
        recv[pc.dst, pc.src, :pc.dst_rows.size] = pc.dst_rows
    return Tables(send, cols, recv, rcols, mloc, nloc)


def rows_to_grid(x, tb: Tables, axis):
    """Inside ``shard_map``: this rank's row shard ``x`` (rows x N) to its local matrix of
    the 2D block-cyclic layout, (``tb.mloc`` x ``tb.nloc``; a rank with fewer local rows or
    columns holds zeros past them). One all_to_all over ``axis`` (a name or tuple of names,
    rank = the flattened axis index)."""
    me = jax.lax.axis_index(axis)
    send = jnp.asarray(tb.send_rows)[me]                      # (P, R)
    cols = jnp.asarray(tb.cols)                                # (P, C)
    out = x[send[:, :, None], cols[:, None, :]]                # (P, R, C)
    got = jax.lax.all_to_all(out, axis, 0, 0, tiled=False)     # got[s]: s's piece for me
    rows = jnp.asarray(tb.recv_rows)[me]                       # (P, R)
    rcols = jnp.asarray(tb.recv_cols)[me]                      # (C,)
    local = jnp.zeros((tb.mloc, tb.nloc), x.dtype)
    return local.at[rows[:, :, None], rcols[None, None, :]].set(got, mode="drop")


def grid_to_rows(y, tb: Tables, axis, shard_rows: int, n: int):
    """The inverse of ``rows_to_grid``: this rank's local block-cyclic matrix ``y`` back to
    its row shard (``shard_rows`` x ``n``)."""
    me = jax.lax.axis_index(axis)
    mine = jnp.asarray(tb.recv_rows)[me]                       # (P, R): where s's rows sit
    rcols = jnp.asarray(tb.recv_cols)[me]                      # (C,)
    yp = jnp.pad(y, ((0, 1), (0, 1)))                          # padding reads the zero corner
    out = yp[jnp.minimum(mine, tb.mloc)[:, :, None], jnp.minimum(rcols, tb.nloc)[None, None, :]]
    got = jax.lax.all_to_all(out, axis, 0, 0, tiled=False)     # got[d]: d's piece of my rows
    send = jnp.asarray(tb.send_rows)[me]                       # (P, R): my rows for d
    valid = jnp.asarray(tb.recv_rows)[:, me] < tb.mloc         # (P, R): rows for d
    cols = jnp.asarray(tb.cols)                                # (P, C)
    cvalid = jnp.asarray(tb.recv_cols) < tb.nloc               # (P, C)
    r_idx = jnp.where(valid, send, shard_rows)[:, :, None]
    c_idx = jnp.where(cvalid, cols, n)[:, None, :]
    shard = jnp.zeros((shard_rows, n), y.dtype)
    return shard.at[r_idx, c_idx].set(got, mode="drop")
