"""The FFI call layer: one jaxmg custom call from a per-device body, the bottom of every op.

Each call carries the static attributes the native layer decodes by name (src/common/ops.h):
``tile``, ``nparts`` (devices along the row axes), ``site`` (a call-site id unique to this
trace) and ``timeout_ms``; with a mesh over several processes also ``mp_procs`` (``_mpmd``).
Its ``ids`` operand is this device's (replica group, position along the row axes), computed
with ``jax.lax.axis_index`` so that the participants are mesh positions, whatever the device
ids and their order (docs/design.md, "One op, many devices: the call").
"""

from __future__ import annotations

import itertools
import threading

import jax
import jax.numpy as jnp
import numpy as np

from . import _config, _mpmd
from ._geometry import Geometry, axis_of

_SITES = itertools.count(1)
_SITE_LOCK = threading.Lock()


def mesh_ids(row_axes: tuple, group_axes: tuple) -> jax.Array:
    """int32[2] (replica group, position along the row axes) of this device, in shard_map."""
    rank = jax.lax.axis_index(axis_of(row_axes))
    group = jax.lax.axis_index(axis_of(group_axes)) if group_axes else jnp.zeros((), jnp.int32)
    return jnp.stack([group, rank]).astype(jnp.int32)


def call(target: str, results, operands, geo: Geometry, row_axes, group_axes, aliases=None):
    """One jaxmg FFI call of ``target`` with ``operands`` (the ids operand appended here),
    returning ``results`` (ShapeDtypeStructs).

    Under ``vmap`` the call runs once per batch element in a loop (``sequential``): every
    device executes the same loop, and the k-th execution of a call meets the k-th
    executions of the other devices. Where JAX places this trace several times into one
    program (the same site id more than once), the copies are told apart by the instance XLA
    gives each custom call on CPU (docs/design.md, "Rendezvous"). When the mesh holds devices
    of several processes, the call also carries the process of each position and a site id
    that every process computes alike (``_mpmd``)."""
    timeout = _config.get_timeout()
    operands = (*operands, mesh_ids(row_axes, group_axes))
    extra, site = _mpmd.call_attrs(target, geo, operands, (row_axes, group_axes), target, timeout)
    if site is None:
        with _SITE_LOCK:
            site = next(_SITES)
    return jax.ffi.ffi_call(
        target, results, input_output_aliases=aliases, vmap_method="sequential"
    )(
        *operands,
        tile=np.int64(geo.tile),
        nparts=np.int64(geo.ndev),
        site=np.int64(site),
        timeout_ms=np.int64(max(1, int(timeout * 1000))),
        **extra,
    )
