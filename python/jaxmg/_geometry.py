"""Static geometry of one distributed call: where it runs (the placement: mesh, row axes,
replica groups) and how the matrix is cut (sizes, tile, padding, the block-cyclic index maps).

The index maps are implemented in C too (``jaxmg_layout_*`` in ``include/jaxmg/jaxmg.h``); the
tests check that both agree. Here they build the static gathers that put the replicated
right-hand side into the solver's order and the solution back.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, PartitionSpec as P

# JAX's private module behind the concrete context mesh: optional, private modules move.
try:
    from jax._src import mesh as _jax_mesh
except ImportError:  # pragma: no cover
    _jax_mesh = None


def concrete_context_mesh():
    """The concrete mesh of ``jax.set_mesh`` / ``use_mesh`` (also while tracing inside it),
    or None."""
    try:
        mesh = _jax_mesh.get_concrete_mesh()
    except Exception:  # pragma: no cover - private API moved
        return None
    if mesh is None or getattr(mesh, "devices", None) is None or not mesh.size:
        return None
    return mesh


def abstract_of(mesh):
    """The AbstractMesh of a Mesh (an AbstractMesh itself otherwise)."""
    return getattr(mesh, "abstract_mesh", mesh)


def axis_of(row_axes):
    """The axis name (or tuple of names) of ``row_axes`` as collectives take it."""
    return row_axes if len(row_axes) > 1 else row_axes[0]


@dataclasses.dataclass(frozen=True)
class Placement:
    """Where a call runs. The participants are the devices along ``row_axes``, in mesh order
    (whatever their device ids); the other axes (``group_axes``) replicate the matrix, and
    each replica group solves the same problem independently. ``mesh`` is a Mesh, or inside
    ``jit`` the AbstractMesh of an array's type when no concrete mesh is known."""

    mesh: Mesh
    row_axes: tuple
    group_axes: tuple

    @property
    def ndev(self) -> int:
        return math.prod(self.mesh.shape[ax] for ax in self.row_axes)

    @functools.cached_property
    def platform(self) -> str:
        if isinstance(self.mesh, Mesh):
            return self.mesh.devices.flat[0].platform
        platform = self.mesh.abstract_device.platform  # an AbstractMesh, inside jit
        return "gpu" if platform in ("cuda", "rocm") else platform

    @functools.cached_property
    def device(self):
        """A device of the mesh (of its kind, for an AbstractMesh)."""
        if isinstance(self.mesh, Mesh):
            return self.mesh.devices.flat[0]
        return jax.devices(self.platform)[0]

    @property
    def axis(self):
        return axis_of(self.row_axes)

    @property
    def spec(self) -> P:
        return P(self.axis, None)


@dataclasses.dataclass(frozen=True)
class Geometry:
    n: int      # order of the user's matrix
    ndev: int   # devices along the sharded axis
    tile: int   # T_A

    @property
    def nloc(self) -> int:
        return self.n // self.ndev

    @property
    def nloc_pad(self) -> int:
        return -(-self.nloc // self.tile) * self.tile

    @property
    def n_pad(self) -> int:
        return self.nloc_pad * self.ndev

    @property
    def padded(self) -> bool:
        return self.nloc_pad != self.nloc

    @property
    def identity_layout(self) -> bool:
        return self.ndev == 1 or self.nloc_pad == self.tile

    @property
    def whole(self) -> "Geometry":
        """The same matrix with one tile per shard (the identity layout, no padding): what
        the single engine's one-call bodies run with."""
        return Geometry(self.n, self.ndev, self.nloc)

    @functools.cached_property
    def src(self) -> np.ndarray:
        """src[g]: padded original index stored at solver index g."""
        g = np.arange(self.n_pad, dtype=np.int64)
        t = g // self.tile
        d = t % self.ndev
        c = (t // self.ndev) * self.tile + g % self.tile
        return d * self.nloc_pad + c

    @functools.cached_property
    def dst(self) -> np.ndarray:
        """dst[j]: solver index of padded original index j (inverse of src)."""
        out = np.empty(self.n_pad, dtype=np.int64)
        out[self.src] = np.arange(self.n_pad, dtype=np.int64)
        return out

    @functools.cached_property
    def pad_index(self) -> np.ndarray:
        """Padded index of each original index 0..n-1."""
        j = np.arange(self.n, dtype=np.int64)
        return (j // self.nloc) * self.nloc_pad + j % self.nloc


# ---- per-device pieces, traced inside shard_map -------------------------------------------

def pad_shard(a_loc: jax.Array, geo: Geometry, rank, diag=1) -> jax.Array:
    """Pads this device's nloc x N shard to nloc_pad x N_pad: zeros off the diagonal and
    ``diag`` (default 1: identity padding; a scalar, possibly traced) on it."""
    if not geo.padded:
        return a_loc
    p = geo.nloc_pad - geo.nloc
    a3 = a_loc.reshape(geo.nloc, geo.ndev, geo.nloc)
    a3 = jnp.pad(a3, ((0, p), (0, 0), (0, p)))
    a_pad = a3.reshape(geo.nloc_pad, geo.n_pad)
    rows = jnp.arange(geo.nloc, geo.nloc_pad, dtype=jnp.int32)
    return a_pad.at[rows, rank * geo.nloc_pad + rows].set(jnp.asarray(diag).astype(a_loc.dtype))


def unpad_shard(a_pad: jax.Array, geo: Geometry) -> jax.Array:
    """Inverse of pad_shard (drops padded rows and columns)."""
    if not geo.padded:
        return a_pad
    a3 = a_pad.reshape(geo.nloc_pad, geo.ndev, geo.nloc_pad)[: geo.nloc, :, : geo.nloc]
    return a3.reshape(geo.nloc, geo.n)


def to_solver_rows(b: jax.Array, geo: Geometry) -> jax.Array:
    """Replicated N x k right-hand side -> padded, in the solver's row order."""
    if geo.padded:
        b = jnp.zeros((geo.n_pad,) + b.shape[1:], b.dtype).at[geo.pad_index].set(b)
    if not geo.identity_layout:
        b = b[geo.src]
    return b


def from_solver_rows(y: jax.Array, geo: Geometry) -> jax.Array:
    """Inverse of to_solver_rows."""
    if not geo.identity_layout:
        y = y[geo.dst]
    if geo.padded:
        y = y[geo.pad_index]
    return y


def unpad_info(info: jax.Array, geo: Geometry) -> jax.Array:
    """Maps a 1-based pivot index of the padded problem to the user's index."""
    if not geo.padded:
        return info
    p = jnp.maximum(info - 1, 0)
    orig = (p // geo.nloc_pad) * geo.nloc + p % geo.nloc_pad + 1
    return jnp.where(info > 0, orig, info).astype(info.dtype)
