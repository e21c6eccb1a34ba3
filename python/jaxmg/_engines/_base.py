"""What every engine is: a name, the platforms it runs on, and one per-device body for each
op it implements. The registry (``jaxmg._engines``) builds the programs around the bodies
and chooses among the engines.

A body runs inside ``jax.shard_map`` over the call's mesh, once per device, with that
device's shard of the row-sharded matrix. Its signature is fixed by the op:

==========  ==================================================  ===========================
op          arguments                                           returns
==========  ==================================================  ===========================
potrs       a_loc, b (N x k, replicated); keep_factor           x, info[1] (+ a_out)
potri       a_loc                                               rows of inv(A), info[1]
syevd       a_loc; vectors                                      w, rows of V or None, info[1]
potrf       a_loc                                               factor shard, info[1]
solve       factor shard, b (N x k, replicated)                 x
inverse     factor shard                                        rows of inv(A)
logdet      factor shard                                        log det A (replicated)
getrs       a_loc (general A), b (N x k, replicated)            x, info[1]
getrs_t     a_loc (general A), b (N x k, replicated)            x of Aᵀ x = b, info[1]
==========  ==================================================  ===========================

and every body takes the keywords ``geo`` (the call's ``Geometry``), ``row_axes`` and
``group_axes`` (``Placement``). ``potrf``/``solve``/``inverse``/``logdet`` are the ops of a
Cholesky factor kept between calls (``jaxmg.linalg.cho_factor``) and of the derivative rules;
only the engines whose factor lives distributed implement them. ``getrs``/``getrs_t`` are the
general solve of ``linalg.solve(assume_a="gen")`` on an engine that distributes it.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable

import jax
import jax.numpy as jnp

from .._geometry import axis_of

OPS = ("potrs", "potri", "syevd", "potrf", "solve", "inverse", "logdet", "getrs", "getrs_t")


@dataclasses.dataclass(frozen=True)
class Engine:
    """One engine: ``bodies`` maps each op it implements to its per-device body.

    ``platforms``: the device platforms it runs on ("cpu", "gpu"). ``one_process``: it needs
    every device of the mesh in this process (it reads the other devices' memory directly),
    so meshes over several processes (``jax.distributed``) cannot use it. ``summary``: what
    it does, for messages and docs."""

    name: str
    platforms: tuple
    bodies: dict
    summary: str
    one_process: bool = False
    # platform -> devices along the row axes at most (platforms not listed: any number)
    max_devices: dict = dataclasses.field(default_factory=dict)
    # (op, nloc, T_A or None) -> the tile of the block-cyclic layout, for the engines that
    # lay the matrix out in tiles (None: the engine does not choose tiles).
    tile: Callable | None = None
    # (op, platform) -> extra keywords of the op's body (None: none).
    options: Callable | None = None
    # (op, place) -> why the engine cannot run there beyond the checks below, or None.
    check: Callable | None = None
    # (op, place, geo) -> extra keywords of the body, computed with the concrete mesh when
    # the program is built (the engine's set-up, e.g. communicators); None: nothing.
    prepare: Callable | None = None

    def refuses(self, op: str, place, in_this_process: bool) -> str | None:
        """Why this engine cannot run ``op`` on ``place``, or None when it can."""
        if place.platform not in self.platforms:
            return (f"engine '{self.name}' runs on {' and '.join(self.platforms)} devices, "
                    f"the mesh has {place.platform} devices")
        if op not in self.bodies:
            return (f"engine '{self.name}' does not implement {op} (it implements "
                    f"{', '.join(self.bodies)})")
        if self.one_process and not in_this_process:
            return (f"engine '{self.name}' needs every device of the mesh in this process; "
                    "this mesh spans several processes")
        most = self.max_devices.get(place.platform)
        if most is not None and place.ndev > most:
            return (f"engine '{self.name}' takes at most {most} {place.platform} devices along "
                    f"the row axes, the rows are sharded over {place.ndev}")
        return self.check(op, place) if self.check else None


# cuSOLVERMg's syevd refuses tiles above 1024, and the original JAXMg syevd enforced the same bound:
# a larger T_A is clamped to it on every engine, so a program's layout does not depend on
# the platform it runs on.
SYEVD_MAX_TILE = 1024


@functools.lru_cache(maxsize=1024)
def largest_tile(nloc: int, cap: int) -> int:
    """The largest tile up to ``cap`` that divides the shard, when that is at least cap / 4;
    else ``cap`` itself (the shard is then padded). Cached: every eager call asks."""
    if nloc <= cap:
        return nloc
    for d in range(cap, cap // 4 - 1, -1):
        if nloc % d == 0:
            return d
    return cap


def tile_rule(cap: Callable):
    """The tile rule of an engine that lays the matrix out in tiles: the user's ``T_A`` (at
    most the shard; for syevd at most ``SYEVD_MAX_TILE``), else the largest divisor of the
    shard up to ``cap(op, nloc)`` (``largest_tile``)."""

    def tile(op: str, nloc: int, T_A) -> int:
        if T_A is None:
            return largest_tile(nloc, cap(op, nloc))
        t = min(int(T_A), nloc)
        return min(t, SYEVD_MAX_TILE) if op == "syevd" else t

    return tile


# ---- pieces shared by the bodies ------------------------------------------------------------

def conj(x):
    """conj(x) for complex x, x itself for real (no op in the program)."""
    return jnp.conj(x) if jnp.iscomplexobj(x) else x


def gather(a_loc, row_axes):
    """The whole matrix on every device of the group (one all-gather)."""
    return jax.lax.all_gather(a_loc, axis_of(row_axes), axis=0, tiled=True)


def agree_failed(bad, row_axes):
    """True on every device when the computation failed on any (same branch everywhere)."""
    return jax.lax.pmax(bad.astype(jnp.int32), axis_of(row_axes)) > 0


def cholesky(a):
    """XLA's Cholesky of a whole matrix, lower, reading its lower triangle only."""
    return jax.lax.linalg.cholesky(a, symmetrize_input=False)


def diag_failed(L):
    """A factor whose diagonal is not finite: the factorization failed."""
    return ~jnp.all(jnp.isfinite(jnp.real(jnp.diagonal(L))))


def nan_where(failed, x):
    """x, or NaN of x's shape and dtype where ``failed``."""
    return jnp.where(failed, jnp.full_like(x, jnp.nan), x)


def my_rows(x, nloc, rank):
    """Rows [rank nloc, (rank + 1) nloc) of x."""
    return jax.lax.dynamic_slice_in_dim(x, rank * nloc, nloc, axis=0)


def transpose_rows(a_loc, axis, ndev: int):
    """This device's rows of Aᵀ for A (N x N) sharded by rows: column block d of A from every
    device (one all_to_all), transposed."""
    if ndev > 1:
        a_loc = jax.lax.all_to_all(a_loc, axis, split_axis=1, concat_axis=0, tiled=True)
    return a_loc.T
