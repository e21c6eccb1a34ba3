"""Products of row-sharded matrices for the derivative rules, without gathering a matrix.

Every function here is a per-device body, traced inside ``jax.shard_map`` (with the
varying-axes check on, so that JAX transposes the collectives exactly); ``axis`` names the
mesh axis (or tuple of axes) the rows are sharded over and ``ndev`` its size. A row-sharded
N x k matrix Y is held as ``y_loc``, rows [d n, (d+1) n) on the device at position d
(n = N / ndev).

- ``matmul``: (X Y) by a ring. The row blocks of Y travel around the devices (``ppermute``),
  each with its block index j; a device multiplies column block j of its own rows of X by
  the block it holds. ndev - 1 transfers of one block of Y per device.
- ``matmul_h``: (Xᴴ Y), which contracts over the sharded dimension: a ring reduce-scatter.
  A partial sum for one row block of the result travels around the ring, each device adding
  its contribution (its column block of X, conjugated and transposed, times its rows of Y);
  after ndev - 1 transfers every device holds the finished block of its own rows.
- ``conj_transpose``: the rows of Xᴴ (one ``all_to_all`` of the shard).
- ``matvec``: A x for a replicated x, gathered into a replicated N x k result.

A device never holds more than its shards, one block in transit and the accumulator (all
O(N² / ndev) for N x N operands). The products run at ``Precision.HIGHEST`` (as the JVP of
``jnp.linalg.eigh`` does), so float32 derivatives do not lose digits to TF32 on GPUs. All
the operations are linear in each operand and built from primitives JAX can transpose
(``ppermute`` transposes to the reverse shift, ``all_to_all`` to ``all_to_all``), so the
reverse mode of a rule written with them is JAX's transpose of the same ring.

For that reverse mode to stay O(N² / ndev) too, callers pass the tangent (or cotangent) as
the operand that travels (``y_loc`` of ``matmul``; ``matmul_h``'s partial sums are linear in
``y_loc``) and the primal matrix as ``x_loc``: the transpose of a ring in which a primal
block travels needs every travelled block again in reverse order, i.e. the whole matrix.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from . import _spmd

_HI = jax.lax.Precision.HIGHEST


def _dot(x, y):
    return jnp.matmul(x, y, precision=_HI)


def _conj(x):
    return jnp.conj(x) if jnp.iscomplexobj(x) else x


def _shift(x, axis, ndev: int, towards: int):
    """Each device sends ``x`` to position d + towards (mod ndev)."""
    perm = [(i, (i + towards) % ndev) for i in range(ndev)]
    return jax.lax.ppermute(x, _in_mesh_order(axis), perm)


def _in_mesh_order(axis):
    """A tuple of mesh axes in the mesh's own order: ppermute numbers the devices in that
    order anyway, and newer JAX refuses a tuple in another order. Every ring here carries
    its block indices, so any single cycle over the devices is right."""
    if not isinstance(axis, (tuple, list)) or len(axis) < 2:
        return axis
    try:
        names = tuple(jax.sharding.get_abstract_mesh().axis_names)
    except Exception:  # no abstract mesh in this JAX: keep the order given
        return tuple(axis)
    if not set(axis) <= set(names):
        return tuple(axis)
    return tuple(sorted(axis, key=names.index))


def _cols(x_loc, j, n: int):
    """Column block j (traced) of a shard, n columns wide."""
    return jax.lax.dynamic_slice_in_dim(x_loc, j * n, n, axis=1)


def _loop(step, init, count: int):
    """Runs ``step(carry, s)`` for s = 1 .. count - 1 as a scan, not unrolled: JAX transposes
    a scan into a scan in reverse, so the reverse mode of a ring is again one step at a time
    (an unrolled ring's transpose lets XLA compute every step's term before the first
    transfer, which holds ndev shard-sized blocks at once). The step is rematerialized, so
    the slices of the primal operand are cut again in the reverse pass instead of being
    saved for it."""
    body = jax.checkpoint(lambda c, s: (step(c, s), None), prevent_cse=False)
    return jax.lax.scan(body, init, jnp.arange(1, count, dtype=jnp.int32))[0]


def position(axis):
    """This device's block index: its position along the row axes in the sharding's order."""
    return jax.lax.axis_index(axis).astype(jnp.int32)


def matmul(x_loc, y_loc, axis, ndev: int):
    """This device's rows of X Y, for X (N x N) and Y (N x k) sharded by rows."""
    n = y_loc.shape[0]
    if ndev == 1:
        return _dot(x_loc, y_loc)
    # Each block travels with its index. JAX's ppermute over a tuple of mesh axes numbers
    # the devices in mesh order, not in the tuple's order as axis_index does (jax 0.10,
    # P(("T", "S"), None) on an ("S", "T") mesh); with the index carried along, any single
    # cycle over the devices gives the right product.
    # The product with the block in hand does not wait for the transfer of that block to
    # the next device, so the two can overlap.
    def pass_on(blk, j):
        return _shift(blk, axis, ndev, -1), _shift(j, axis, ndev, -1)

    def step(carry, s):
        del s
        acc, blk, j = carry
        return (acc + _dot(_cols(x_loc, j, n), blk),) + pass_on(blk, j)

    j = position(axis)
    carry = (_dot(_cols(x_loc, j, n), y_loc),) + pass_on(y_loc, j)
    acc, blk, j = _loop(step, carry, ndev - 1)
    return acc + _dot(_cols(x_loc, j, n), blk)


def matmul_h(x_loc, y_loc, axis, ndev: int):
    """This device's rows of Xᴴ Y, for X (N x N) and Y (N x k) sharded by rows."""
    n = x_loc.shape[0]
    if ndev == 1:
        return _dot(_conj(x_loc).T, y_loc)

    def term(j):
        return _dot(_conj(_cols(x_loc, j, n)).T, y_loc)

    # A partial sum travels with the index of the row block it is for. It starts here
    # destined for the device that sends to this one (whose index arrives by one shift)
    # and reaches it after ndev - 1 shifts, done.
    def step(carry, s):
        del s
        acc, j = carry
        j = _shift(j, axis, ndev, 1)
        return _shift(acc, axis, ndev, 1) + term(j), j

    j0 = _shift(position(axis), axis, ndev, 1)
    return _loop(step, (term(j0), j0), ndev)[0]


def conj_transpose(x_loc, axis, ndev: int):
    """This device's rows of Xᴴ for X (N x N) sharded by rows."""
    t = x_loc
    if ndev > 1:
        # Column block d of X, gathered from every device: (N, n).
        t = jax.lax.all_to_all(t, axis, split_axis=1, concat_axis=0, tiled=True)
    return _conj(t).T


def hermitian_part(x_loc, axis, ndev: int):
    """This device's rows of (X + Xᴴ) / 2."""
    return (x_loc + conj_transpose(x_loc, axis, ndev)) / 2


def from_triangle(x_loc, axis, ndev: int, lower: bool):
    """This device's rows of the Hermitian matrix whose lower (or upper) triangle is X's:
    X's entries on that side of the diagonal, the real part of its diagonal (what LAPACK
    reads of a Hermitian matrix's diagonal), the conjugate transpose of that triangle on the
    other side."""
    n, big_n = x_loc.shape
    t = conj_transpose(x_loc, axis, ndev)
    i = (position(axis) * n + jnp.arange(n, dtype=jnp.int32))[:, None]
    j = jnp.arange(big_n, dtype=jnp.int32)[None, :]
    own = i > j if lower else i < j
    diag = jnp.real(x_loc).astype(x_loc.dtype) if jnp.iscomplexobj(x_loc) else x_loc
    return jnp.where(own, x_loc, jnp.where(i == j, diag, t))


def matvec(a_loc, x, axis):
    """A x for A sharded by rows and x (N x k) replicated: the replicated N x k product."""
    y = _dot(a_loc, x)
    return jax.lax.all_gather(y, axis, tiled=True, to="invarying")


def shard_map(fn, place, in_specs, out_specs):
    """``jax.shard_map`` over a placement's mesh with the varying-axes check on (exact
    transposes of the collectives), its inputs conformed to ``in_specs`` on Explicit
    meshes like the ops' own programs. Jitted, so that eager derivatives (``jax.grad``
    outside ``jit``) run compiled rings instead of op-by-op dispatch."""
    return jax.jit(_spmd.shard_map(fn, place.mesh, in_specs, out_specs, check_vma=True))
