"""``jax.shard_map`` as jaxmg's programs use it: inputs conformed to their specs on meshes
with Explicit axes, and the mesh being traced made known to the FFI call layer (which needs
the concrete devices of a call to build its process table, ``_mpmd``)."""

from __future__ import annotations

import contextlib
import contextvars

import jax
from jax.sharding import NamedSharding, PartitionSpec as P

_MESH = contextvars.ContextVar("jaxmg_mesh", default=None)


@contextlib.contextmanager
def tracing(mesh):
    """Makes ``mesh`` the one ``tracing_mesh`` reports while a shard_map body over it is
    traced."""
    tok = _MESH.set(mesh)
    try:
        yield
    finally:
        _MESH.reset(tok)


def tracing_mesh():
    """The concrete mesh of the jaxmg shard_map being traced, or None."""
    return _MESH.get()


def explicit_axes(mesh) -> set:
    """The axes of ``mesh`` of type Explicit (``jax.make_mesh``'s default in recent JAX)."""
    kind = getattr(getattr(jax.sharding, "AxisType", None), "Explicit", None)
    types = getattr(mesh, "axis_types", None) or ()
    if kind is None:
        return set()
    return {ax for ax, t in zip(mesh.axis_names, types) if t == kind}


def _spec_axes(spec) -> set:
    out = set()
    for entry in spec:
        if entry is None:
            continue
        out.update(entry if isinstance(entry, (tuple, list)) else (entry,))
    return out


def conform(x, mesh, spec):
    """``x`` resharded to ``spec`` on a mesh with Explicit axes, where shard_map refuses an
    input whose sharding differs from its in_spec (an unsharded matrix, a column-sharded
    right-hand side). Auto meshes need nothing: the shard_map reshards by itself. Works on
    tracers and arrays alike."""
    explicit = explicit_axes(mesh)
    if not explicit or not _spec_axes(spec) <= explicit:
        return x
    reshard = getattr(jax.sharding, "reshard", None)
    if reshard is None:  # pragma: no cover - JAX versions without explicit sharding
        return x
    return reshard(x, NamedSharding(mesh, spec))


def cut(x, n: int, mesh):
    """The leading n x n block of a square matrix (the user's N of a problem padded to split
    evenly). N rows do not split evenly over the devices, so on a mesh with Explicit axes,
    where JAX refuses a slice of a sharded dimension that does not, the block comes back
    replicated; on an Auto mesh XLA lays it out."""
    if explicit_axes(mesh):
        x = conform(x, mesh, P())
    return x[:n, :n]


def shard_map(fn, mesh, in_specs, out_specs, check_vma: bool = False):
    """``jax.shard_map(fn)`` over ``mesh`` with its inputs first conformed to ``in_specs``.

    ``check_vma=False`` for bodies with FFI calls (XLA's custom calls carry no varying-axes
    types); the derivative rules' ring products keep the check on, so that JAX transposes
    their collectives exactly."""

    def traced(*args):
        with tracing(mesh):
            return fn(*args)

    inner = jax.shard_map(traced, mesh=mesh, in_specs=in_specs, out_specs=out_specs,
                          check_vma=check_vma)
    specs = in_specs if isinstance(in_specs, tuple) else (in_specs,)

    def run(*args):
        return inner(*(conform(x, mesh, s) for x, s in zip(args, specs)))

    return run
